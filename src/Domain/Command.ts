/**
 * The client → sandbox command vocabulary (PROTOCOL.md, "Commands").
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { InvalidInput } from "./Errors.js"
import { formatParseError } from "./Event.js"

export const Prompt = Schema.Struct({ type: Schema.Literal("prompt"), text: Schema.String })
export const Abort = Schema.Struct({ type: Schema.Literal("abort") })
export const PermissionReply = Schema.Struct({
  type: Schema.Literal("permission_reply"),
  requestId: Schema.String,
  decision: Schema.Literal("allow_once", "allow_always", "reject")
})

const members = { prompt: Prompt, abort: Abort, permission_reply: PermissionReply } as const
export const Command = Schema.Union(Prompt, Abort, PermissionReply)
export type Command = typeof Command.Type
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
