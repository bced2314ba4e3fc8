/**
 * The Reducer: pure (state, events) -> changes. No services, no clock (time
 * is passed in), so it is trivially testable and property-testable.
 */
import * as Context from "effect/Context"
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Artifact, ArtifactChange, ArtifactKind } from "./Domain/Artifact.js"
import type { Event } from "./Domain/Event.js"
import { InvalidInput, PermissionConflict } from "./Domain/Errors.js"
import type { SessionFields, SessionStatus } from "./Domain/Session.js"

interface Ref {
  readonly seq: number
}
interface ToolCallRef extends Ref {
  readonly running: boolean
}
interface PermissionRef extends Ref {
  readonly answered: boolean
}
interface UsageRef extends Ref {
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number | null
}

/** What the reducer must remember between events; persistent maps keep a failed batch free of side effects. */
export interface ReducerState {
  readonly nextSeq: number
  /** The delta artifact without `partId` that the next delta of its kind extends. */
  readonly open: { readonly seq: number; readonly kind: "text" | "reasoning" } | null
  readonly parts: HashMap.HashMap<string, number>
  readonly toolCalls: HashMap.HashMap<string, ToolCallRef>
  readonly permissions: HashMap.HashMap<string, PermissionRef>
  readonly turnPlan: number | null
  readonly turnUsage: UsageRef | null
}

/** Inputs that come from commands rather than the sandbox. */
export type Input =
  | Event
  | { readonly type: "user_message"; readonly text: string }
  | { readonly type: "permission_decision"; readonly requestId: string; readonly decision: string }

export interface Reduction {
  readonly state: ReducerState
  readonly changes: ReadonlyArray<ArtifactChange>
  readonly session: SessionFields
}

export const initial: ReducerState = {
  nextSeq: 1,
  open: null,
  parts: HashMap.empty(),
  toolCalls: HashMap.empty(),
  permissions: HashMap.empty(),
  turnPlan: null,
  turnUsage: null
}

const partKey = (kind: string, partId: string) => `${kind}\u0000${partId}`

/** The part of the state that artifacts do not record: the open delta and the turn's plan and usage. */
export interface Turn {
  readonly open: ReducerState["open"]
  readonly turnPlan: number | null
  readonly turnUsage: UsageRef | null
}

export const turnOf = (state: ReducerState): Turn => ({
  open: state.open,
  turnPlan: state.turnPlan,
  turnUsage: state.turnUsage
})

/** What one stored artifact tells the state. */
const learn = (state: ReducerState, a: Artifact): ReducerState => {
  state = { ...state, nextSeq: Math.max(state.nextSeq, a.seq + 1) }
  if ((a.kind === "text" || a.kind === "reasoning") && typeof a.partId === "string") {
    return { ...state, parts: HashMap.set(state.parts, partKey(a.kind, a.partId), a.seq) }
  } else if (a.kind === "tool_call" && typeof a.toolCallId === "string") {
    return { ...state, toolCalls: HashMap.set(state.toolCalls, a.toolCallId, { seq: a.seq, running: a.status === "running" }) }
  } else if (a.kind === "permission" && typeof a.requestId === "string") {
    return {
      ...state,
      permissions: HashMap.set(state.permissions, a.requestId, { seq: a.seq, answered: a.decision !== null })
    }
  }
  return state
}

/**
 * Rebuild the state from stored artifacts (after a restart, or in another instance). Without
 * `turn`, the open delta and the turn's plan/usage are not carried over: a restart ends them.
 */
export const fromArtifacts = (artifacts: ReadonlyArray<Artifact>, turn?: Turn): ReducerState => {
  let state = initial
  for (const a of artifacts) state = learn(state, a)
  return turn === undefined ? state : { ...state, ...turn }
}

/**
 * The state after changes someone else reduced (another instance), given the turn they ended
 * with: exactly the state their reduction produced.
 */
export const follow = (start: ReducerState, changes: ReadonlyArray<ArtifactChange>, turn?: Turn): ReducerState => {
  let state = start
  for (const c of changes) {
    if (c._tag === "created") {
      state = learn(state, c.artifact)
    } else if (c.field === "status" && c.append === undefined) {
      for (const [id, ref] of state.toolCalls) {
        if (ref.seq === c.seq) {
          state = { ...state, toolCalls: HashMap.set(state.toolCalls, id, { seq: ref.seq, running: c.set === "running" }) }
          break
        }
      }
    } else if (c.field === "decision" && c.append === undefined) {
      for (const [id, ref] of state.permissions) {
        if (ref.seq === c.seq) {
          state = { ...state, permissions: HashMap.set(state.permissions, id, { seq: ref.seq, answered: c.set !== null }) }
          break
        }
      }
    }
  }
  return turn === undefined ? state : { ...state, ...turn }
}

/**
 * Reduce a batch of inputs, all or nothing: on the first invalid input the
 * whole batch fails and the caller keeps its old state.
 */
export const reduce = (
  start: ReducerState,
  status: SessionStatus,
  inputs: ReadonlyArray<Input>,
  now: number
): Either.Either<Reduction, InvalidInput | PermissionConflict> => {
  let state = start
  let currentStatus = status
  const session: { status?: SessionStatus; summary?: string | null } = {}
  const changes: Array<ArtifactChange> = []

  const create = (kind: ArtifactKind, fields: Record<string, unknown>): number => {
    const seq = state.nextSeq
    state = { ...state, nextSeq: seq + 1 }
    changes.push({ _tag: "created", artifact: { seq, kind, ...fields, createdAt: now, updatedAt: now } })
    return seq
  }
  const append = (seq: number, field: string, text: string) => {
    if (text !== "") changes.push({ _tag: "updated", seq, field, append: text, at: now })
  }
  const set = (seq: number, field: string, value: unknown) => {
    changes.push({ _tag: "updated", seq, field, set: value, at: now })
  }
  const setStatus = (to: SessionStatus) => {
    if (to !== currentStatus) {
      currentStatus = to
      session.status = to
    }
  }
  const endTurn = () => {
    state = { ...state, turnPlan: null, turnUsage: null }
  }

  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!
    const where = inputs.length > 1 ? `[${i}].` : ""
    // A delta artifact without partId stays open until an event of another type arrives.
    const sameType = (input.type === "text_delta" || input.type === "reasoning_delta") &&
      state.open !== null && kindOfDelta(input.type) === state.open.kind
    if (state.open !== null && !sameType) {
      state = { ...state, open: null }
    }
    switch (input.type) {
      case "text_delta":
      case "reasoning_delta": {
        const kind = kindOfDelta(input.type)
        if (input.partId !== undefined) {
          const key = partKey(kind, input.partId)
          const existing = HashMap.get(state.parts, key)
          if (Option.isSome(existing)) append(existing.value, "text", input.delta)
          else {
            const seq = create(kind, { text: input.delta, partId: input.partId })
            state = { ...state, parts: HashMap.set(state.parts, key, seq) }
          }
        } else if (state.open !== null) {
          append(state.open.seq, "text", input.delta)
        } else {
          const seq = create(kind, { text: input.delta })
          state = { ...state, open: { seq, kind } }
        }
        break
      }
      case "tool_call_start": {
        if (HashMap.has(state.toolCalls, input.toolCallId)) {
          return Either.left(new InvalidInput({ message: `${where}toolCallId: tool call ${input.toolCallId} already started` }))
        }
        const seq = create("tool_call", {
          toolCallId: input.toolCallId,
          name: input.name,
          input: input.input ?? "",
          output: null,
          status: "running"
        })
        state = { ...state, toolCalls: HashMap.set(state.toolCalls, input.toolCallId, { seq, running: true }) }
        break
      }
      case "tool_call_input_delta":
      case "tool_call_end": {
        const ref = HashMap.get(state.toolCalls, input.toolCallId)
        if (Option.isNone(ref)) {
          return Either.left(new InvalidInput({ message: `${where}toolCallId: unknown tool call ${input.toolCallId}` }))
        }
        if (input.type === "tool_call_input_delta") {
          append(ref.value.seq, "input", input.delta)
        } else {
          if (input.output !== undefined) set(ref.value.seq, "output", input.output)
          set(ref.value.seq, "status", input.isError === true ? "error" : "done")
          state = {
            ...state,
            toolCalls: HashMap.set(state.toolCalls, input.toolCallId, { seq: ref.value.seq, running: false })
          }
        }
        break
      }
      case "permission_request": {
        if (HashMap.has(state.permissions, input.requestId)) {
          return Either.left(new InvalidInput({ message: `${where}requestId: permission request ${input.requestId} already exists` }))
        }
        const seq = create("permission", {
          requestId: input.requestId,
          toolCallId: input.toolCallId ?? null,
          title: input.title,
          options: input.options ?? null,
          decision: null
        })
        state = { ...state, permissions: HashMap.set(state.permissions, input.requestId, { seq, answered: false }) }
        break
      }
      case "permission_decision": {
        const ref = HashMap.get(state.permissions, input.requestId)
        if (Option.isNone(ref)) return Either.left(new PermissionConflict({ requestId: input.requestId, reason: "unknown" }))
        if (ref.value.answered) return Either.left(new PermissionConflict({ requestId: input.requestId, reason: "answered" }))
        set(ref.value.seq, "decision", input.decision)
        state = { ...state, permissions: HashMap.set(state.permissions, input.requestId, { seq: ref.value.seq, answered: true }) }
        break
      }
      case "plan": {
        if (state.turnPlan !== null) set(state.turnPlan, "entries", input.entries)
        else {
          const seq = create("plan", { entries: input.entries })
          state = { ...state, turnPlan: seq }
        }
        break
      }
      case "file_change":
        create("file_change", { path: input.path, action: input.action, diff: input.diff ?? null })
        break
      case "error":
        create("error", { message: input.message, code: input.code ?? null })
        break
      case "usage": {
        const u = state.turnUsage
        if (u === null) {
          const costUsd = input.costUsd ?? null
          const seq = create("usage", { inputTokens: input.inputTokens, outputTokens: input.outputTokens, costUsd })
          state = { ...state, turnUsage: { seq, inputTokens: input.inputTokens, outputTokens: input.outputTokens, costUsd } }
        } else {
          const next: UsageRef = {
            seq: u.seq,
            inputTokens: u.inputTokens + input.inputTokens,
            outputTokens: u.outputTokens + input.outputTokens,
            costUsd: input.costUsd === undefined ? u.costUsd : (u.costUsd ?? 0) + input.costUsd
          }
          if (input.inputTokens !== 0) set(u.seq, "inputTokens", next.inputTokens)
          if (input.outputTokens !== 0) set(u.seq, "outputTokens", next.outputTokens)
          if (next.costUsd !== u.costUsd) set(u.seq, "costUsd", next.costUsd)
          state = { ...state, turnUsage: next }
        }
        break
      }
      case "summary":
        session.summary = input.text
        break
      case "turn_start":
        if (currentStatus === "idle") setStatus("live")
        endTurn()
        break
      case "turn_end": {
        if (input.stopReason === "cancelled") {
          for (const [id, ref] of state.toolCalls) {
            if (!ref.running) continue
            set(ref.seq, "status", "cancelled")
            state = { ...state, toolCalls: HashMap.set(state.toolCalls, id, { seq: ref.seq, running: false }) }
          }
        }
        if (currentStatus === "live") setStatus("idle")
        endTurn()
        break
      }
      case "heartbeat":
        break
      case "custom":
        create("custom", { name: input.name, data: input.data ?? null })
        break
      case "user_message":
        create("user_message", { text: input.text })
        if (currentStatus === "idle") setStatus("live")
        break
    }
  }
  return Either.right({ state, changes, session })
}

const kindOfDelta = (type: string): "text" | "reasoning" => type === "text_delta" ? "text" : "reasoning"

/**
 * The Reducer as a service, so programs can swap or wrap it; the default
 * layer is the pure functions above.
 */
export class Reducer extends Context.Tag("@rein-ai/server/Reducer")<Reducer, {
  readonly initial: ReducerState
  readonly fromArtifacts: typeof fromArtifacts
  readonly follow: typeof follow
  readonly reduce: typeof reduce
}>() {}

export const layer: Layer.Layer<Reducer> = Layer.succeed(Reducer, Reducer.of({ initial, fromArtifacts, follow, reduce }))
