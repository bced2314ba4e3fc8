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
import { type Decision, optionForDecision } from "./Domain/Command.js"
import type { Event, PermissionOption, PermissionOptionKind } from "./Domain/Event.js"
import { InvalidInput, PermissionConflict } from "./Domain/Errors.js"
import type { Session, SessionFields, SessionStatus, Usage } from "./Domain/Session.js"
import type { OpenDelta, Turn, UsageRef } from "./Domain/Turn.js"

export type { Turn }

interface Ref {
  readonly seq: number
}
interface ToolCallRef extends Ref {
  /** Still `pending` or `running`: a cancelled turn ends it, and only then may an update set its status. */
  readonly running: boolean
}
interface PermissionRef extends Ref {
  readonly answered: boolean
  /** The options it offered (null: none), which a reply's `optionId` must be one of. */
  readonly options: ReadonlyArray<PermissionOption> | null
}

/** What the reducer must remember between events; persistent maps keep a failed batch free of side effects. */
export interface ReducerState {
  readonly nextSeq: number
  /** The delta artifact without `partId` that the next delta of its kind extends. */
  readonly open: OpenDelta | null
  readonly parts: HashMap.HashMap<string, number>
  readonly toolCalls: HashMap.HashMap<string, ToolCallRef>
  readonly permissions: HashMap.HashMap<string, PermissionRef>
  /** How many of `permissions` are unanswered: the session's `pendingPermissions`. */
  readonly pending: number
  /** The session's one `agent` artifact, once an `agent` event created it. */
  readonly agent: number | null
  /** The session's one `changes` artifact (its worktree's diff), once a `changes` event created it. */
  readonly changes: number | null
  readonly turnPlan: number | null
  readonly turnUsage: UsageRef | null
}

/** A permission reply as a command states it: a decision, an option, or both. */
export interface Reply {
  readonly requestId: string
  readonly decision?: Decision | undefined
  readonly optionId?: string | undefined
}

/** Inputs that come from commands rather than the sandbox. */
export type Input =
  | Event
  /** A prompt: recorded as a `user_message`, and it makes an idle session live. */
  | { readonly type: "prompt"; readonly text: string }
  | ({ readonly type: "permission_decision" } & Reply)

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
  pending: 0,
  agent: null,
  changes: null,
  turnPlan: null,
  turnUsage: null
}

const partKey = (kind: string, partId: string) => `${kind}\u0000${partId}`

export const turnOf = (state: ReducerState): Turn => ({
  open: state.open,
  turnPlan: state.turnPlan,
  turnUsage: state.turnUsage
})

const decisionOf = (kind: PermissionOptionKind): Decision =>
  kind === "allow_once" ? "allow_once" : kind === "allow_always" ? "allow_always" : "reject"

/** In order of preference, the option kinds a bare decision stands for. */
/**
 * A reply completed against its request: `decision` from the chosen option's kind, or the first
 * option whose kind the decision stands for (`optionId` null when none does, or the request
 * offered no options). An unknown request or one already answered conflicts; an `optionId` that
 * is not one of the request's options, or a decision the option contradicts, is invalid.
 */
export const completeReply = (
  state: ReducerState,
  reply: Reply
): Either.Either<{ readonly decision: Decision; readonly optionId: string | null }, InvalidInput | PermissionConflict> => {
  const ref = HashMap.get(state.permissions, reply.requestId)
  if (Option.isNone(ref)) return Either.left(new PermissionConflict({ requestId: reply.requestId, reason: "unknown" }))
  if (ref.value.answered) return Either.left(new PermissionConflict({ requestId: reply.requestId, reason: "answered" }))
  const options = ref.value.options ?? []
  if (reply.optionId !== undefined) {
    const option = options.find((o) => o.optionId === reply.optionId)
    if (option === undefined) {
      return Either.left(
        new InvalidInput({
          message: `optionId: "${reply.optionId.slice(0, 64)}" is not an option of permission request ${reply.requestId}` +
            (options.length === 0 ? " (it offers none)" : ` (expected one of ${options.map((o) => `"${o.optionId}"`).join(", ")})`)
        })
      )
    }
    const decision = decisionOf(option.kind)
    if (reply.decision !== undefined && reply.decision !== decision) {
      return Either.left(
        new InvalidInput({ message: `decision: ${reply.decision} contradicts option "${option.optionId}", which is ${option.kind}` })
      )
    }
    return Either.right({ decision, optionId: option.optionId })
  }
  const decision = reply.decision
  if (decision === undefined) return Either.left(new InvalidInput({ message: "decision: one of decision or optionId is required" }))
  return Either.right({ decision, optionId: optionForDecision(options, decision) ?? null })
}

const optionKinds: ReadonlySet<unknown> = new Set(["allow_once", "allow_always", "reject_once", "reject_always"])

/** The options a stored permission offered; entries of another shape (stored before options were typed) offer nothing. */
const storedOptions = (u: unknown): ReadonlyArray<PermissionOption> | null => {
  if (!Array.isArray(u)) return null
  return u.filter((o): o is PermissionOption =>
    typeof o === "object" && o !== null && typeof o.optionId === "string" && typeof o.name === "string" &&
    optionKinds.has(o.kind)
  )
}

const unfinished = (status: unknown) => status === "running" || status === "pending"

/** What one stored artifact tells the state. */
const learn = (state: ReducerState, a: Artifact): ReducerState => {
  state = { ...state, nextSeq: Math.max(state.nextSeq, a.seq + 1) }
  if ((a.kind === "text" || a.kind === "reasoning") && typeof a.partId === "string") {
    return { ...state, parts: HashMap.set(state.parts, partKey(a.kind, a.partId), a.seq) }
  } else if (a.kind === "tool_call" && typeof a.toolCallId === "string") {
    return { ...state, toolCalls: HashMap.set(state.toolCalls, a.toolCallId, { seq: a.seq, running: unfinished(a.status) }) }
  } else if (a.kind === "permission" && typeof a.requestId === "string") {
    const answered = a.decision !== null && a.decision !== undefined
    return {
      ...state,
      permissions: HashMap.set(state.permissions, a.requestId, { seq: a.seq, answered, options: storedOptions(a.options) }),
      pending: state.pending + (answered ? 0 : 1)
    }
  } else if (a.kind === "agent") {
    return { ...state, agent: a.seq }
  } else if (a.kind === "changes") {
    return { ...state, changes: a.seq }
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
          state = { ...state, toolCalls: HashMap.set(state.toolCalls, id, { seq: ref.seq, running: unfinished(c.set) }) }
          break
        }
      }
    } else if (c.field === "decision" && c.append === undefined) {
      for (const [id, ref] of state.permissions) {
        if (ref.seq === c.seq) {
          const answered = c.set !== null
          state = {
            ...state,
            permissions: HashMap.set(state.permissions, id, { ...ref, answered }),
            pending: state.pending + (answered === ref.answered ? 0 : answered ? -1 : 1)
          }
          break
        }
      }
    }
  }
  return turn === undefined ? state : { ...state, ...turn }
}

/**
 * Reduce a batch of inputs, all or nothing: on the first invalid input the
 * whole batch fails and the caller keeps its old state. `record` is the session as it stands,
 * which the batch's record fields (status, usage totals) continue from.
 */
export const reduce = (
  start: ReducerState,
  record: Pick<Session, "status" | "usage"> & { readonly summary?: string | null | undefined },
  inputs: ReadonlyArray<Input>,
  now: number
): Either.Either<Reduction, InvalidInput | PermissionConflict> => {
  let state = start
  let currentStatus = record.status
  const session: { -readonly [K in keyof SessionFields]: SessionFields[K] } = {}
  let usage: Usage = record.usage
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
  // Sessions must be told apart though most agents never post a summary: until one does,
  // the first prompt (shortened) stands in.
  let summary = record.summary
  const promptSummary = (text: string) => {
    if (summary !== null || session.summary !== undefined) return
    const short = shorten(text)
    if (short !== "") summary = session.summary = short
  }
  const endTurn = () => {
    state = { ...state, turnPlan: null, turnUsage: null }
  }

  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i]!
    const where = inputs.length > 1 ? `[${i}].` : ""
    // A delta artifact without partId stays open until something of the transcript's flow
    // arrives; metadata (agent, usage, summary, ...) sent mid-reply must not split the reply.
    if (state.open !== null && endsOpenDelta(input, state)) {
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
          title: input.title ?? null,
          // `kind` names the artifact's kind; the tool's is `toolKind`.
          toolKind: input.kind ?? null,
          locations: input.locations ?? null,
          input: input.input ?? "",
          output: null,
          status: "running"
        })
        state = { ...state, toolCalls: HashMap.set(state.toolCalls, input.toolCallId, { seq, running: true }) }
        break
      }
      case "tool_call_input_delta":
      case "tool_call_update":
      case "tool_call_end": {
        const ref = HashMap.get(state.toolCalls, input.toolCallId)
        if (Option.isNone(ref)) {
          return Either.left(new InvalidInput({ message: `${where}toolCallId: unknown tool call ${input.toolCallId}` }))
        }
        if (input.type === "tool_call_input_delta") {
          append(ref.value.seq, "input", input.delta)
        } else if (input.type === "tool_call_update") {
          const seq = ref.value.seq
          if (input.title !== undefined) set(seq, "title", input.title)
          if (input.kind !== undefined) set(seq, "toolKind", input.kind)
          if (input.locations !== undefined) set(seq, "locations", input.locations)
          if (input.input !== undefined) set(seq, "input", input.input)
          if (input.output !== undefined) set(seq, "output", input.output)
          // Late updates of an ended call are welcome, but never re-open it.
          if (input.status !== undefined && ref.value.running) set(seq, "status", input.status)
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
        // The same order for every agent, so the first button always means the same.
        const options = input.options === undefined ? null : sortOptions(input.options)
        const seq = create("permission", {
          requestId: input.requestId,
          toolCallId: input.toolCallId ?? null,
          title: input.title,
          options,
          diff: input.diff ?? null,
          decision: null,
          optionId: null
        })
        state = {
          ...state,
          permissions: HashMap.set(state.permissions, input.requestId, { seq, answered: false, options }),
          pending: state.pending + 1
        }
        break
      }
      case "permission_decision": {
        const reply = completeReply(state, input)
        if (Either.isLeft(reply)) return reply as Either.Either<never, InvalidInput | PermissionConflict>
        const ref = HashMap.unsafeGet(state.permissions, input.requestId)
        set(ref.seq, "decision", reply.right.decision)
        if (reply.right.optionId !== null) set(ref.seq, "optionId", reply.right.optionId)
        state = {
          ...state,
          permissions: HashMap.set(state.permissions, input.requestId, { ...ref, answered: true }),
          pending: state.pending - 1
        }
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
        create("error", { message: input.message, code: input.code ?? null, ...(input.fatal === true && { fatal: true }) })
        // The agent is gone: someone is needed, as after a turn that ended in an error.
        if (input.fatal === true) session.lastStopReason = "error"
        break
      case "usage": {
        usage = {
          inputTokens: usage.inputTokens + input.inputTokens,
          outputTokens: usage.outputTokens + input.outputTokens,
          costUsd: input.costUsd === undefined ? usage.costUsd : (usage.costUsd ?? 0) + input.costUsd
        }
        session.usage = usage
        const u = state.turnUsage
        if (u === null) {
          const costUsd = input.costUsd ?? null
          const seq = create("usage", { inputTokens: input.inputTokens, outputTokens: input.outputTokens, costUsd, context: null })
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
      case "context": {
        const context = { used: input.used, size: input.size }
        if (state.turnUsage !== null) set(state.turnUsage.seq, "context", context)
        else {
          const seq = create("usage", { inputTokens: 0, outputTokens: 0, costUsd: null, context })
          state = { ...state, turnUsage: { seq, inputTokens: 0, outputTokens: 0, costUsd: null } }
        }
        break
      }
      case "agent": {
        const fields: Record<string, unknown> = {}
        if (input.name !== undefined) fields.name = input.name
        if (input.version !== undefined) fields.version = input.version
        if (input.commands !== undefined) fields.commands = input.commands
        if (input.modes !== undefined) fields.modes = input.modes
        if (input.currentModeId !== undefined) fields.currentModeId = input.currentModeId
        if (state.agent === null) {
          const seq = create("agent", { name: null, version: null, commands: [], modes: [], currentModeId: null, ...fields })
          state = { ...state, agent: seq }
        } else {
          for (const [field, value] of Object.entries(fields)) set(state.agent, field, value)
        }
        // A started agent clears what a crashed one left: no turn has ended since.
        if (input.started === true) session.lastStopReason = null
        break
      }
      case "summary":
        session.summary = input.text
        break
      case "workspace":
        session.workspace = { repo: input.repo, path: input.path, branch: input.branch, baseRef: input.baseRef }
        break
      case "changes": {
        const truncated = input.truncated === true
        if (state.changes === null) {
          const seq = create("changes", { diff: input.diff, truncated })
          state = { ...state, changes: seq }
        } else {
          set(state.changes, "diff", input.diff)
          set(state.changes, "truncated", truncated)
        }
        break
      }
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
        // However the turn ended (cancelled, or the agent died mid-question: "error"), nobody will
        // read an answer now: no client may go on showing the question, nor count it as waiting.
        for (const [id, ref] of state.permissions) {
          if (ref.answered) continue
          set(ref.seq, "decision", "cancelled")
          state = {
            ...state,
            permissions: HashMap.set(state.permissions, id, { ...ref, answered: true }),
            pending: state.pending - 1
          }
        }
        // A stopped turn says so in the transcript, where its reply ends.
        if (input.stopReason === "cancelled") create("turn_stopped", { stopReason: "cancelled" })
        session.lastStopReason = input.stopReason ?? null
        if (currentStatus === "live") setStatus("idle")
        endTurn()
        break
      }
      case "heartbeat":
        break
      case "custom":
        create("custom", { name: input.name, data: input.data ?? null })
        break
      case "prompt":
        create("user_message", { text: input.text })
        promptSummary(input.text)
        if (currentStatus === "idle") setStatus("live")
        break
      case "user_message":
        create("user_message", { text: input.text })
        promptSummary(input.text)
        break
    }
  }
  if (state.pending !== start.pending) session.pendingPermissions = state.pending
  return Either.right({ state, changes, session })
}

const kindOfDelta = (type: string): "text" | "reasoning" => type === "text_delta" ? "text" : "reasoning"

/**
 * Whether `input` ends the open delta artifact: a delta of the other kind, or an event that puts
 * something new in the transcript's flow. Metadata (agent, usage, context, summary, heartbeat,
 * custom) and updates of earlier artifacts do not.
 */
const endsOpenDelta = (input: Input, state: ReducerState): boolean => {
  switch (input.type) {
    case "text_delta":
    case "reasoning_delta":
      return kindOfDelta(input.type) !== state.open?.kind
    case "plan":
      return state.turnPlan === null
    case "tool_call_start":
    case "permission_request":
    case "file_change":
    case "error":
    case "turn_start":
    case "turn_end":
    case "prompt":
    case "user_message":
      return true
    default:
      return false
  }
}

const optionRank: Record<PermissionOptionKind, number> = { allow_once: 0, allow_always: 1, reject_once: 2, reject_always: 3 }

/** Allow once, allow always, reject once, reject always; an agent's own order within a kind. */
const sortOptions = (options: ReadonlyArray<PermissionOption>): Array<PermissionOption> =>
  options.map((o, i) => ({ o, i })).sort((a, b) => optionRank[a.o.kind] - optionRank[b.o.kind] || a.i - b.i).map(({ o }) => o)

/** The first line of a prompt, whitespace collapsed, at most 80 characters. */
const shorten = (text: string): string => {
  const line = text.trim().split("\n")[0]!.replace(/\s+/g, " ").trim()
  return line.length <= 80 ? line : `${line.slice(0, 79).trimEnd()}…`
}

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
