/**
 * The session record and its id rule.
 */
import * as Schema from "effect/Schema"

/** Ids name URLs, so they are restricted to URL-safe characters; `stream` would shadow `/sessions/stream`. */
export const SessionIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

export const SessionId = Schema.String.pipe(
  Schema.filter((s) =>
    !SessionIdPattern.test(s)
      ? `session id must match ${SessionIdPattern.source}`
      : s === "stream"
      ? "session id \"stream\" is reserved"
      : true
  ),
  Schema.brand("SessionId")
)
export type SessionId = typeof SessionId.Type

export type SessionStatus = "bootstrapping" | "live" | "idle" | "disconnected"

export interface Session {
  readonly id: string
  readonly status: SessionStatus
  readonly summary: string | null
  readonly project: string | null
  readonly createdAt: number
  readonly lastHeartbeat: number
}

/** The fields whose change is broadcast as `session_updated`. */
export interface SessionFields {
  readonly status?: SessionStatus
  readonly summary?: string | null
}

export const CreateSessionBody = Schema.Struct({
  // Session fields are plain text columns, and PostgreSQL's cannot hold NUL.
  project: Schema.optional(Schema.NullOr(Schema.String.pipe(
    Schema.maxLength(256),
    Schema.filter((s) => !s.includes("\u0000") || "must not contain NUL (\\u0000) characters")
  )))
})
