/**
 * The client → sandbox command vocabulary (docs/protocol.md, "Commands").
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { InvalidInput } from "./Errors.js"
import { formatParseError } from "./Event.js"

export const Prompt = Schema.Struct({ type: Schema.Literal("prompt"), text: Schema.String })
export const Abort = Schema.Struct({ type: Schema.Literal("abort") })
export const Decision = Schema.Literal("allow_once", "allow_always", "reject")
export type Decision = typeof Decision.Type

/** The first option a decision stands for: its own kind (a reject prefers `reject_once`). */
export const optionForDecision = (
  options: ReadonlyArray<{ readonly optionId: string; readonly kind: string }>,
  decision: Decision
): string | undefined => {
  for (const kind of decision === "reject" ? ["reject_once", "reject_always"] : [decision]) {
    const found = options.find((o) => o.kind === kind)
    if (found !== undefined) return found.optionId
  }
  return undefined
}

/**
 * A reply names a `decision`, an `optionId` of the request, or both. The server completes it
 * (see `Reducer.completeReply`) before the sandbox receives it as `PermissionReplyDelivered`.
 */
export const PermissionReply = Schema.Struct({
  type: Schema.Literal("permission_reply"),
  requestId: Schema.String,
  decision: Schema.optional(Decision),
  optionId: Schema.optional(Schema.String)
}).pipe(
  Schema.filter((r) =>
    r.decision !== undefined || r.optionId !== undefined ||
    { path: ["decision"], message: "one of decision or optionId is required" })
)
export const SetMode = Schema.Struct({ type: Schema.Literal("set_mode"), modeId: Schema.String })

const members = { prompt: Prompt, abort: Abort, permission_reply: PermissionReply, set_mode: SetMode } as const
export const Command = Schema.Union(Prompt, Abort, PermissionReply, SetMode)
export type Command = typeof Command.Type

/** A permission reply as the sandbox receives it: completed, `optionId` null when the request had none to match. */
export interface PermissionReplyDelivered {
  readonly type: "permission_reply"
  readonly requestId: string
  readonly decision: Decision
  readonly optionId: string | null
}

/** What the command stream carries to the sandbox. */
export type SandboxCommand = Exclude<Command, { readonly type: "permission_reply" }> | PermissionReplyDelivered
export const commandTypes = Object.keys(members)

const decoders = Object.fromEntries(
  Object.entries(members).map(([type, schema]) => [type, Schema.decodeUnknownEither(schema as Schema.Schema<any, any>)])
) as Record<string, (u: unknown) => Either.Either<Command, any>>

export const decodeCommand = (u: unknown): Either.Either<Command, InvalidInput> => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) {
    return Either.left(new InvalidInput({ message: "command must be a JSON object" }))
  }
  const type = (u as Record<string, unknown>).type
  if (typeof type !== "string" || !Object.hasOwn(decoders, type)) {
    return Either.left(
      new InvalidInput({
        message: typeof type === "string"
          ? `type: unknown command type "${type.slice(0, 64)}", expected one of ${commandTypes.join(", ")}`
          : `type: must be a string, one of ${commandTypes.join(", ")}`
      })
    )
  }
  return Either.mapLeft(decoders[type]!(u), (e) => new InvalidInput({ message: formatParseError(e) }))
}
