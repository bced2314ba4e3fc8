/**
 * The sandbox → server event vocabulary (docs/protocol.md, "Events") and its decoder.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { InvalidInput } from "./Errors.js"

const Str = Schema.String
const OptStr = Schema.optional(Schema.String)
const NonNegative = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
/** Token counts add up over a turn: whole, and small enough that sums stay exact. */
const TokenCount = Schema.Number.pipe(Schema.int(), Schema.between(0, 2 ** 40))

/** Whole numbers that are counts or positions: non-negative and exact. */
const Count = Schema.Number.pipe(Schema.int(), Schema.between(0, Number.MAX_SAFE_INTEGER))

export const PlanEntry = Schema.Struct({
  content: Str,
  status: Schema.Literal("pending", "in_progress", "completed"),
  priority: Schema.optional(Schema.Literal("high", "medium", "low"))
})
export type PlanEntry = typeof PlanEntry.Type

export const StopReason = Schema.Literal("end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled", "error")

/** What a tool call does (ACP's `ToolKind`): lets a client pick an icon or a way to show it. */
export const ToolKind = Schema.Literal("read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other")
export type ToolKind = typeof ToolKind.Type

/** A file a tool call touches, and optionally the line (ACP's `ToolCallLocation`). */
export const Location = Schema.Struct({ path: Str, line: Schema.optional(Count) })
export type Location = typeof Location.Type

/** The status a tool call may be given while it is unfinished; it ends by `tool_call_end` or a cancelled turn. */
export const ToolCallProgress = Schema.Literal("pending", "running")

export const PermissionOptionKind = Schema.Literal("allow_once", "allow_always", "reject_once", "reject_always")
export type PermissionOptionKind = typeof PermissionOptionKind.Type

/** One answer a permission request offers (ACP's `PermissionOption`). */
export const PermissionOption = Schema.Struct({ optionId: Str, name: Str, kind: PermissionOptionKind })
export type PermissionOption = typeof PermissionOption.Type

const PermissionOptions = Schema.Array(PermissionOption).pipe(
  Schema.filter((options) => {
    const seen = new Set<string>()
    for (let i = 0; i < options.length; i++) {
      const id = options[i]!.optionId
      if (seen.has(id)) return { path: [i, "optionId"], message: `"${id.slice(0, 64)}" is already an option of this request` }
      seen.add(id)
    }
    return true
  })
)

export const AgentCommand = Schema.Struct({ name: Str, description: OptStr })
export type AgentCommand = typeof AgentCommand.Type
export const AgentMode = Schema.Struct({ id: Str, name: Str, description: OptStr })
export type AgentMode = typeof AgentMode.Type

const ev = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F) =>
  Schema.Struct({ type: Schema.Literal(type), ...fields })

export const TextDelta = ev("text_delta", { delta: Str, partId: OptStr })
export const ReasoningDelta = ev("reasoning_delta", { delta: Str, partId: OptStr })
export const ToolCallStart = ev("tool_call_start", {
  toolCallId: Str,
  name: Str,
  input: OptStr,
  title: OptStr,
  kind: Schema.optional(ToolKind),
  locations: Schema.optional(Schema.Array(Location))
})
/** Fields it carries replace the tool call's (also `input`); `status` only while the call is unfinished. */
export const ToolCallUpdate = ev("tool_call_update", {
  toolCallId: Str,
  title: OptStr,
  kind: Schema.optional(ToolKind),
  status: Schema.optional(ToolCallProgress),
  input: OptStr,
  output: OptStr,
  locations: Schema.optional(Schema.Array(Location))
})
export const ToolCallInputDelta = ev("tool_call_input_delta", { toolCallId: Str, delta: Str })
export const ToolCallEnd = ev("tool_call_end", {
  toolCallId: Str,
  output: OptStr,
  isError: Schema.optional(Schema.Boolean)
})
export const PermissionRequest = ev("permission_request", {
  requestId: Str,
  toolCallId: OptStr,
  title: Str,
  options: Schema.optional(PermissionOptions),
  /** A unified diff of what approving lets the tool call change, so people see what they approve. */
  diff: OptStr
})
export const Plan = ev("plan", { entries: Schema.Array(PlanEntry) })
export const FileChange = ev("file_change", {
  path: Str,
  action: Schema.Literal("create", "modify", "delete"),
  diff: OptStr
})
/** `fatal`: the agent died or could not start; the session needs someone until an agent starts again. */
export const ErrorEvent = ev("error", {
  message: Str,
  code: Schema.optional(Schema.Union(Str, Schema.Number)),
  fatal: Schema.optional(Schema.Boolean)
})
export const Usage = ev("usage", {
  inputTokens: TokenCount,
  outputTokens: TokenCount,
  costUsd: Schema.optional(NonNegative.pipe(Schema.lessThanOrEqualTo(1e9)))
})
/** Session fields are plain text columns, and PostgreSQL's cannot hold NUL. */
const NoNul = Schema.String.pipe(Schema.filter((s) => !s.includes("\u0000") || "must not contain NUL (\\u0000) characters"))

export const Summary = ev("summary", { text: NoNul })
export const TurnStart = ev("turn_start", {})
export const TurnEnd = ev("turn_end", { stopReason: Schema.optional(StopReason) })
export const Heartbeat = ev("heartbeat", {})
export const Custom = ev("custom", { name: Str, data: Schema.optional(Schema.Unknown) })
/** The agent's context window: tokens in use of its size. */
export const Context = ev("context", { used: Count, size: Count })
/** Who the agent is and what it offers; each field it carries replaces the session's `agent` artifact's. */
export const Agent = ev("agent", {
  name: OptStr,
  version: OptStr,
  commands: Schema.optional(Schema.Array(AgentCommand)),
  modes: Schema.optional(Schema.Array(AgentMode)),
  currentModeId: Schema.optional(Schema.NullOr(Str)),
  /** Sent once the agent has started a session: clears what a fatal `error` left. */
  started: Schema.optional(Schema.Boolean)
})
/** Where a hub-started agent works (a runner posts it once the worktree exists): the session's `workspace`. */
export const WorkspaceEvent = ev("workspace", { repo: NoNul, path: NoNul, branch: NoNul, baseRef: NoNul })
/** The worktree's diff against its base, committed and uncommitted (a runner posts it at each turn's end). */
export const Changes = ev("changes", { diff: Str, truncated: Schema.optional(Schema.Boolean) })
/** A user message the sandbox reports (e.g. replayed history), recorded as a prompt is. */
export const UserMessage = ev("user_message", { text: Str })

const members = {
  text_delta: TextDelta,
  reasoning_delta: ReasoningDelta,
  tool_call_start: ToolCallStart,
  tool_call_input_delta: ToolCallInputDelta,
  tool_call_update: ToolCallUpdate,
  tool_call_end: ToolCallEnd,
  permission_request: PermissionRequest,
  plan: Plan,
  file_change: FileChange,
  error: ErrorEvent,
  usage: Usage,
  summary: Summary,
  turn_start: TurnStart,
  turn_end: TurnEnd,
  heartbeat: Heartbeat,
  custom: Custom,
  context: Context,
  agent: Agent,
  user_message: UserMessage,
  workspace: WorkspaceEvent,
  changes: Changes
} as const

export const Event = Schema.Union(...Object.values(members))
export type Event = typeof Event.Type
export type EventType = Event["type"]
export const eventTypes = Object.keys(members) as ReadonlyArray<EventType>

/** Decoders compiled once: decoding is on the ingest hot path. */
const decoders = Object.fromEntries(
  Object.entries(members).map(([type, schema]) => [type, Schema.decodeUnknownEither(schema as Schema.Schema<any, any>)])
) as Record<EventType, (u: unknown) => Either.Either<Event, ParseResult.ParseError>>

/** `a.b[2]: Expected string, actual 5`: the field first, so the message names it. */
export const formatParseError = (error: ParseResult.ParseError, prefix = ""): string => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  if (issue === undefined) return `${prefix || "body"}: invalid`
  const path = formatPath(prefix, issue.path)
  // The message quotes the offending value; a huge one must not make a huge error.
  const message = issue.message.length > 200 ? `${issue.message.slice(0, 200)}…` : issue.message
  return `${path || "body"}: ${message}`
}

export const formatPath = (prefix: string, path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    prefix
  )

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

export const decodeEvent = (u: unknown, prefix = ""): Either.Either<Event, InvalidInput> => {
  const where = prefix === "" ? "event" : prefix
  if (!isRecord(u)) return Either.left(new InvalidInput({ message: `${where} must be a JSON object` }))
  const type = u.type
  if (typeof type !== "string") {
    return Either.left(new InvalidInput({ message: `${formatPath(prefix, ["type"])}: must be a string, one of ${eventTypes.join(", ")}` }))
  }
  const decode = Object.hasOwn(decoders, type) ? decoders[type as EventType] : undefined
  if (decode === undefined) {
    return Either.left(
      new InvalidInput({ message: `${formatPath(prefix, ["type"])}: unknown event type "${type.slice(0, 64)}", expected one of ${eventTypes.join(", ")}` })
    )
  }
  return Either.mapLeft(decode(u), (e) => new InvalidInput({ message: formatParseError(e, prefix) }))
}

/** A body is one event or a non-empty array of them (a batch, all or nothing). */
export const decodeEvents = (u: unknown, maxBatch = 10_000): Either.Either<ReadonlyArray<Event>, InvalidInput> => {
  if (!Array.isArray(u)) return Either.map(decodeEvent(u), (e) => [e])
  if (u.length === 0) return Either.left(new InvalidInput({ message: "batch must contain at least one event" }))
  if (u.length > maxBatch) return Either.left(new InvalidInput({ message: `batch has ${u.length} events, at most ${maxBatch} allowed` }))
  const out: Array<Event> = []
  for (let i = 0; i < u.length; i++) {
    const r = decodeEvent(u[i], `[${i}]`)
    if (Either.isLeft(r)) return r as Either.Either<never, InvalidInput>
    out.push(r.right)
  }
  return Either.right(out)
}
