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

/** Tokens and cost summed over a session's turns; `costUsd` is null until a turn reports one. */
export interface Usage {
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number | null
}

export const noUsage: Usage = { inputTokens: 0, outputTokens: 0, costUsd: null }

/**
 * Where a hub-started agent works: a git worktree of `repo` on `branch`, made from `baseRef`.
 * `path` is null (and `baseRef` may be) until the runner has made it and said where.
 */
export interface Workspace {
  readonly repo: string
  readonly path: string | null
  readonly branch: string
  readonly baseRef: string | null
}

export interface Session {
  readonly id: string
  readonly status: SessionStatus
  readonly summary: string | null
  readonly project: string | null
  readonly createdAt: number
  readonly lastHeartbeat: number
  /** Permission artifacts nobody has answered yet. */
  readonly pendingPermissions: number
  readonly usage: Usage
  /** The `stopReason` of the session's last `turn_end` (null: none yet, or it gave none). */
  readonly lastStopReason: string | null
  /** The agent profile a runner starts for it (null: its sandbox connects by itself). */
  readonly agent: string | null
  /** The runner that starts its agent (null: none). */
  readonly runner: string | null
  /** Its worktree, once the runner made it (null: none). */
  readonly workspace: Workspace | null
}

/** What the hub starts for a session: the agent profile, on which runner, in which repository. */
export interface Launch {
  readonly agent: string
  readonly runner: string
  readonly repo: string
  readonly baseRef: string | null
}

/** The branch a session's worktree is made on. */
export const branchOf = (id: string): string => `rein/${id}`

/** A session as it is created: waiting for its sandbox, nothing asked, nothing spent. */
export const newSession = (id: string, project: string | null, now: number, launch?: Launch): Session => ({
  id,
  status: "bootstrapping",
  summary: null,
  project,
  createdAt: now,
  lastHeartbeat: now,
  pendingPermissions: 0,
  usage: noUsage,
  lastStopReason: null,
  agent: launch?.agent ?? null,
  runner: launch?.runner ?? null,
  workspace: launch === undefined ? null : { repo: launch.repo, path: null, branch: branchOf(id), baseRef: launch.baseRef }
})

/** The fields whose change is broadcast as `session_updated`. */
export interface SessionFields {
  readonly status?: SessionStatus
  readonly summary?: string | null
  readonly pendingPermissions?: number
  readonly usage?: Usage
  readonly lastStopReason?: string | null
  readonly workspace?: Workspace | null
}

/** The fields of `fields` whose value differs from `session`'s (undefined: none). */
export const changedFields = (session: Session, fields: SessionFields): SessionFields | undefined => {
  const out: { -readonly [K in keyof SessionFields]: SessionFields[K] } = {}
  if (fields.status !== undefined && fields.status !== session.status) out.status = fields.status
  if (fields.summary !== undefined && fields.summary !== session.summary) out.summary = fields.summary
  if (fields.pendingPermissions !== undefined && fields.pendingPermissions !== session.pendingPermissions) {
    out.pendingPermissions = fields.pendingPermissions
  }
  const u = fields.usage
  if (
    u !== undefined &&
    (u.inputTokens !== session.usage.inputTokens || u.outputTokens !== session.usage.outputTokens ||
      u.costUsd !== session.usage.costUsd)
  ) out.usage = u
  if (fields.lastStopReason !== undefined && fields.lastStopReason !== session.lastStopReason) {
    out.lastStopReason = fields.lastStopReason
  }
  if (fields.workspace !== undefined && JSON.stringify(fields.workspace) !== JSON.stringify(session.workspace)) {
    out.workspace = fields.workspace
  }
  return Object.keys(out).length === 0 ? undefined : out
}

/** Whether someone is needed: a permission waits for an answer, or the last turn ended in an error. */
export const needsAttention = (s: Pick<Session, "pendingPermissions" | "lastStopReason">): boolean =>
  s.pendingPermissions > 0 || s.lastStopReason === "error"

// Session fields are plain text columns, and PostgreSQL's cannot hold NUL.
const Text = (max: number) =>
  Schema.String.pipe(
    Schema.maxLength(max),
    Schema.filter((s) => !s.includes("\u0000") || "must not contain NUL (\\u0000) characters")
  )

export const CreateSessionBody = Schema.Struct({
  project: Schema.optional(Schema.NullOr(Text(256))),
  /** An agent profile: a runner starts it for the session. */
  agent: Schema.optional(Text(128).pipe(Schema.minLength(1))),
  /** With `agent`: the repository (a path the runner serves) to make the session's worktree of. */
  repo: Schema.optional(Text(4096).pipe(Schema.minLength(1))),
  /** With `agent`: the commit, branch or tag the worktree starts from (default the repository's HEAD). */
  baseRef: Schema.optional(Text(256).pipe(Schema.minLength(1))),
  /** With `agent`: the first prompt, sent once the agent is ready. */
  prompt: Schema.optional(Text(100_000).pipe(Schema.minLength(1))),
  /** With `agent`: the runner (id or name) to use; default any online runner that can. */
  runner: Schema.optional(Text(128).pipe(Schema.minLength(1)))
})
