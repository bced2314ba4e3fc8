/**
 * ACP `session/update` notifications -> Rein events. Deterministic and free
 * of I/O: an `UpdateMapper` keeps only what a faithful mapping needs to
 * remember between updates (the tool calls it has seen, their diffs and
 * terminals until they complete, the last cumulative cost, the turn's edits
 * reported so far), so the same updates always give the same events.
 *
 * One edit is one `file_change`: an agent that writes through
 * `fs/write_text_file` and also shows the edit as a tool call's `diff` (Gemini
 * CLI, Qwen Code) describes it twice; `claimEdit` matches the two by path and
 * resulting content within the turn, so only the first is reported.
 *
 * Updates arrive through a lenient parser (see Acp.ts), so every field is
 * checked here before it is used; whatever does not fit a Rein event is
 * passed on whole as `custom {name: "acp.<sessionUpdate>"}`, never dropped.
 */
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from "diff"
import { isAbsolute, relative, resolve, sep } from "node:path"
import type { Event, Location, PermissionOption, PlanEntry, ToolKind } from "../Domain/Event.js"

type Json = Record<string, unknown>

const isRecord = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)
const str = (u: unknown): string | undefined => typeof u === "string" ? u : undefined

const toolKinds: ReadonlySet<string> = new Set<ToolKind>([
  "read",
  "edit",
  "delete",
  "move",
  "search",
  "execute",
  "think",
  "fetch",
  "switch_mode",
  "other"
])
const kindOf = (u: unknown): ToolKind | undefined => typeof u === "string" && toolKinds.has(u) ? u as ToolKind : undefined

/** A JSON value as Rein's `input`/`output` string: strings as they are, anything else as JSON. */
export const jsonText = (u: unknown): string | undefined => {
  if (u === undefined || u === null) return undefined
  if (typeof u === "string") return u
  try {
    return JSON.stringify(u)
  } catch {
    return String(u)
  }
}

const locationsOf = (u: unknown): Array<Location> | undefined => {
  if (!Array.isArray(u)) return undefined
  const out: Array<Location> = []
  for (const l of u) {
    if (!isRecord(l) || typeof l.path !== "string") continue
    const line = l.line
    out.push(typeof line === "number" && Number.isInteger(line) && line >= 0 ? { path: l.path, line } : { path: l.path })
  }
  return out
}

const planStatuses = new Set(["pending", "in_progress", "completed"])
const priorities = new Set(["high", "medium", "low"])
const planOf = (u: unknown): Array<PlanEntry> | undefined => {
  if (!Array.isArray(u)) return undefined
  const out: Array<PlanEntry> = []
  for (const e of u) {
    if (!isRecord(e) || typeof e.content !== "string" || typeof e.status !== "string" || !planStatuses.has(e.status)) {
      return undefined
    }
    const status = e.status as PlanEntry["status"]
    out.push(
      typeof e.priority === "string" && priorities.has(e.priority)
        ? { content: e.content, status, priority: e.priority as NonNullable<PlanEntry["priority"]> }
        : { content: e.content, status }
    )
  }
  return out
}

const optionKinds = new Set(["allow_once", "allow_always", "reject_once", "reject_always"])
/** ACP permission options as Rein's; undefined when one is malformed or an id repeats (the server would refuse them). */
export const permissionOptionsOf = (u: unknown): Array<PermissionOption> | undefined => {
  if (!Array.isArray(u)) return undefined
  const out: Array<PermissionOption> = []
  const seen = new Set<string>()
  for (const o of u) {
    if (!isRecord(o) || typeof o.optionId !== "string" || typeof o.name !== "string") return undefined
    if (typeof o.kind !== "string" || !optionKinds.has(o.kind) || seen.has(o.optionId)) return undefined
    seen.add(o.optionId)
    out.push({ optionId: o.optionId, name: o.name, kind: o.kind as PermissionOption["kind"] })
  }
  return out
}

/** The text of a content block, when it has one (text, or an embedded text resource). */
const blockText = (block: unknown): string | undefined => {
  if (!isRecord(block)) return undefined
  if (block.type === "text") return str(block.text)
  if (block.type === "resource" && isRecord(block.resource)) return str(block.resource.text)
  return undefined
}

interface Diff {
  readonly path: string
  /** null: a new file (ACP's `null`, or Qwen Code's `""`). */
  readonly oldText: string | null
  readonly newText: string
}

interface ToolCallState {
  /** What the call's content holds now: ACP's `content` is replaced by each update that carries it. */
  diffs: Array<Diff>
  terminals: Array<string>
  texts: Array<string>
  rawOutput: unknown
  title: string | undefined
  ended: boolean
}

export interface MapperOptions {
  /** The agent's working directory: file changes inside it are named relative to it. */
  readonly cwd: string
  /** A terminal's output so far (Terminals.ts), for tool calls that embed one. */
  readonly terminalOutput?: (terminalId: string) => string | undefined
}

/** A file change's name for people: relative to the working directory when inside it. */
export const displayPath = (cwd: string, path: string): string => {
  if (!isAbsolute(path)) return path
  const rel = relative(cwd, path)
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel.split(sep).join("/") : path
}

/** The exact unified diff of `oldText` (null: a new file) to `newText`, the file named by `name`. */
const unifiedDiff = (name: string, oldText: string | null, newText: string): string =>
  createTwoFilesPatch(
    oldText === null ? "/dev/null" : `a/${name}`,
    `b/${name}`,
    oldText ?? "",
    newText,
    undefined,
    undefined,
    { context: 3, headerOptions: FILE_HEADERS_ONLY }
  )

/** A Rein `file_change` with an exact unified diff of `oldText` (null: a new file) to `newText`. */
export const fileChange = (cwd: string, path: string, oldText: string | null, newText: string): Event => {
  const name = displayPath(cwd, path)
  return { type: "file_change", path: name, action: oldText === null ? "create" : "modify", diff: unifiedDiff(name, oldText, newText) }
}

export class UpdateMapper {
  private readonly options: MapperOptions
  private readonly toolCalls = new Map<string, ToolCallState>()
  /** The session's cumulative cost in USD as last reported; Rein's `usage.costUsd` adds up deltas. */
  private costUsd = 0
  /**
   * This turn's edits reported by one source and not yet matched by the other, as counts per
   * `path NUL content`: `fs` for writes through `fs/write_text_file`, `diff` for completed diffs.
   */
  private readonly edits = { fs: new Map<string, number>(), diff: new Map<string, number>() }

  constructor(options: MapperOptions) {
    this.options = options
  }

  /** Whether a tool call with this id was started (so a permission request may name it). */
  hasToolCall(toolCallId: string): boolean {
    return this.toolCalls.has(toolCallId)
  }

  /** The call's latest title, if it has one. */
  titleOf(toolCallId: string): string | undefined {
    return this.toolCalls.get(toolCallId)?.title
  }

  /** A turn starts: edits are matched within one turn. */
  newTurn(): void {
    this.edits.fs.clear()
    this.edits.diff.clear()
  }

  /**
   * Whether a write of `content` to `path` through `fs/write_text_file` is news: false when a
   * completed tool call's diff of this turn already reported the same result for that file (the
   * match is used up). When it is news, it is remembered, so the diff reporting it later is not.
   */
  claimEdit(path: string, content: string): boolean {
    return this.claim("fs", path, content)
  }

  private claim(source: "fs" | "diff", path: string, content: string): boolean {
    const key = `${resolve(this.options.cwd, path)}\u0000${content}`
    const other = this.edits[source === "fs" ? "diff" : "fs"]
    const matched = other.get(key) ?? 0
    if (matched > 0) {
      if (matched === 1) other.delete(key)
      else other.set(key, matched - 1)
      return false
    }
    const own = this.edits[source]
    own.set(key, (own.get(key) ?? 0) + 1)
    return true
  }

  /** One `session/update`'s `update` -> the Rein events that say the same, in order. */
  map(update: unknown): Array<Event> {
    if (!isRecord(update) || typeof update.sessionUpdate !== "string") {
      return [{ type: "custom", name: "acp.unknown", data: update }]
    }
    const custom = (): Array<Event> => [{ type: "custom", name: `acp.${update.sessionUpdate}`, data: update }]
    switch (update.sessionUpdate) {
      case "agent_message_chunk":
      case "agent_thought_chunk": {
        const text = isRecord(update.content) && update.content.type === "text" ? str(update.content.text) : undefined
        if (text === undefined) return custom()
        const partId = str(update.messageId)
        const type = update.sessionUpdate === "agent_message_chunk" ? "text_delta" : "reasoning_delta"
        return [partId === undefined ? { type, delta: text } : { type, delta: text, partId }]
      }
      case "user_message_chunk": {
        const text = blockText(update.content)
        return text === undefined ? custom() : [{ type: "user_message", text }]
      }
      case "tool_call":
        return typeof update.toolCallId === "string" ? this.toolCall(update.toolCallId, update, true) : custom()
      case "tool_call_update":
        return typeof update.toolCallId === "string" ? this.toolCall(update.toolCallId, update, false) : custom()
      case "plan": {
        const entries = planOf(update.entries)
        return entries === undefined ? custom() : [{ type: "plan", entries }]
      }
      case "available_commands_update": {
        if (!Array.isArray(update.availableCommands)) return custom()
        const commands = update.availableCommands.flatMap((c) =>
          isRecord(c) && typeof c.name === "string"
            ? [typeof c.description === "string" ? { name: c.name, description: c.description } : { name: c.name }]
            : []
        )
        return [{ type: "agent", commands }]
      }
      case "current_mode_update": {
        const id = str(update.currentModeId)
        return id === undefined ? custom() : [{ type: "agent", currentModeId: id }]
      }
      case "usage_update":
        return this.usage(update)
      case "session_info_update": {
        // The agent's title for the session is what Rein calls its summary (PostgreSQL text holds no NUL).
        const title = str(update.title)?.replace(/\u0000/g, "").trim()
        return title === undefined || title === "" ? custom() : [{ type: "summary", text: title }]
      }
      default:
        return custom()
    }
  }

  /**
   * ACP's `usage_update` is the context window (`used` of `size`) and the
   * session's cumulative cost: Rein gets `context`, and the cost's growth
   * since the last report as a `usage` delta (so nothing counts twice). A
   * cost in another currency than USD cannot be added to `costUsd`; it and
   * anything malformed stay visible as `custom`.
   */
  private usage(update: Json): Array<Event> {
    const out: Array<Event> = []
    const count = (u: unknown) => typeof u === "number" && Number.isSafeInteger(u) && u >= 0
    if (count(update.used) && count(update.size)) out.push({ type: "context", used: update.used as number, size: update.size as number })
    const cost = update.cost
    let costMapped = cost === undefined || cost === null
    if (isRecord(cost) && typeof cost.amount === "number" && Number.isFinite(cost.amount) && cost.currency === "USD") {
      costMapped = true
      if (cost.amount > this.costUsd) {
        // Rounded to a micro-dollar so that float noise in the subtraction never shows.
        const delta = Math.round((cost.amount - this.costUsd) * 1e6) / 1e6
        this.costUsd = cost.amount
        if (delta > 0) out.push({ type: "usage", inputTokens: 0, outputTokens: 0, costUsd: delta })
      }
    }
    if (out.length === 0 || !costMapped) out.push({ type: "custom", name: "acp.usage_update", data: update })
    return out
  }

  private toolCall(id: string, u: Json, isStart: boolean): Array<Event> {
    const out: Array<Event> = []
    let state = this.toolCalls.get(id)
    const title = str(u.title)
    const kind = kindOf(u.kind)
    const input = jsonText(u.rawInput)
    const locations = locationsOf(u.locations)
    if (state !== undefined && title !== undefined) state.title = title
    if (state === undefined) {
      // A `tool_call`, or an update for a call never announced (tolerated: it starts the call).
      state = { diffs: [], terminals: [], texts: [], rawOutput: undefined, title: undefined, ended: false }
      state.title = title
      this.toolCalls.set(id, state)
      // Claude's adapter names the tool in `_meta.claudeCode.toolName`, Qwen Code in `_meta.toolName`.
      const meta = isRecord(u._meta) ? u._meta : undefined
      const claude = isRecord(meta?.claudeCode) ? meta.claudeCode : undefined
      const name = str(u.name) ?? str(claude?.toolName) ?? str(meta?.toolName) ?? kind ?? title ?? "tool"
      out.push({
        type: "tool_call_start",
        toolCallId: id,
        name,
        ...(input !== undefined ? { input } : {}),
        ...(title !== undefined ? { title } : {}),
        ...(kind !== undefined ? { kind } : {}),
        ...(locations !== undefined ? { locations } : {})
      })
      this.takeContent(state, u)
      // ACP's default status is pending; Rein's tool call starts running.
      const status = u.status ?? (isStart ? "pending" : undefined)
      if (status === "pending") out.push({ type: "tool_call_update", toolCallId: id, status: "pending" })
    } else {
      const output = this.takeContent(state, u) ? this.outputOf(state) : undefined
      const status: "pending" | "running" | undefined = state.ended
        ? undefined
        : u.status === "pending"
        ? "pending"
        : u.status === "in_progress"
        ? "running"
        : undefined
      const fields = {
        ...(title !== undefined ? { title } : {}),
        ...(kind !== undefined ? { kind } : {}),
        ...(status !== undefined ? { status } : {}),
        ...(input !== undefined ? { input } : {}),
        ...(output !== undefined && !(u.status === "completed" || u.status === "failed") ? { output } : {}),
        ...(locations !== undefined ? { locations } : {})
      } as const
      if (Object.keys(fields).length > 0) out.push({ type: "tool_call_update", toolCallId: id, ...fields })
    }
    if ((u.status === "completed" || u.status === "failed") && !state.ended) {
      state.ended = true
      const output = this.outputOf(state)
      const failed = u.status === "failed"
      out.push({ type: "tool_call_end", toolCallId: id, ...(output !== undefined ? { output } : {}), ...(failed ? { isError: true } : {}) })
      // A diff becomes a file change only once the call succeeded: until then the edit may be refused.
      // An edit the agent also wrote through fs/* was reported then (see claimEdit).
      if (!failed) {
        for (const d of state.diffs) {
          if (this.claim("diff", d.path, d.newText)) out.push(fileChange(this.options.cwd, d.path, d.oldText, d.newText))
        }
      }
      state.diffs = []
    }
    return out
  }

  /**
   * What a tool call proposes to change (its `diff` content, not yet applied) as one unified
   * diff, for the permission request that guards it; undefined when it carries none.
   */
  proposedDiff(toolCallId: string): string | undefined {
    const state = this.toolCalls.get(toolCallId)
    if (state === undefined || state.diffs.length === 0) return undefined
    return state.diffs.map((d) => unifiedDiff(displayPath(this.options.cwd, d.path), d.oldText, d.newText)).join("")
  }

  /** Takes `content` and `rawOutput` from an update into the state; says whether it carried either. */
  private takeContent(state: ToolCallState, u: Json): boolean {
    let carried = false
    if (u.rawOutput !== undefined && u.rawOutput !== null) {
      state.rawOutput = u.rawOutput
      carried = true
    }
    if (Array.isArray(u.content)) {
      carried = true
      state.diffs = []
      state.terminals = []
      state.texts = []
      for (const c of u.content) {
        if (!isRecord(c)) continue
        if (c.type === "diff" && typeof c.path === "string" && typeof c.newText === "string") {
          // A new file's `oldText` is null (ACP) or "" (Qwen Code): both are a create.
          const oldText = typeof c.oldText === "string" && c.oldText !== "" ? c.oldText : null
          state.diffs.push({ path: c.path, oldText, newText: c.newText })
        } else if (c.type === "terminal" && typeof c.terminalId === "string") {
          state.terminals.push(c.terminalId)
        } else if (c.type === "content") {
          const text = blockText(c.content)
          if (text !== undefined) state.texts.push(text)
        }
      }
    }
    return carried
  }

  /** What the call said: its text content and terminal output; its raw output when it said nothing else. */
  private outputOf(state: ToolCallState): string | undefined {
    const parts = [...state.texts]
    for (const t of state.terminals) {
      const output = this.options.terminalOutput?.(t)
      if (output !== undefined && output !== "") parts.push(output)
    }
    if (parts.length > 0) return parts.join("\n")
    return jsonText(state.rawOutput)
  }
}
