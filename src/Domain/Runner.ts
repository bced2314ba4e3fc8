/**
 * Runners (issue 20): what a runner offers the hub, the jobs the hub sends it, and the list the
 * hub shows. A runner starts and supervises agents, each in its own git worktree; it connects out
 * to the server and holds a job stream, as a sandbox holds its command stream.
 */
import * as Schema from "effect/Schema"

const Name = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(128),
  Schema.filter((s) => !s.includes("\u0000") || "must not contain NUL (\\u0000) characters")
)

export const RunnerAgent = Schema.Struct({ id: Name, name: Name })
export type RunnerAgent = typeof RunnerAgent.Type

/** What a runner says it can do (`PUT /runners/:id/offer`), again whenever it changes. */
export const RunnerOffer = Schema.Struct({
  agents: Schema.Array(RunnerAgent).pipe(Schema.maxItems(256)),
  repos: Schema.Array(Schema.String.pipe(Schema.minLength(1), Schema.maxLength(4096))).pipe(Schema.maxItems(1024)),
  /** Sessions whose agent it runs now. */
  sessions: Schema.Number.pipe(Schema.int(), Schema.nonNegative()),
  /** Their ids: should the runner vanish, these sessions lost their agent. */
  running: Schema.optionalWith(Schema.Array(Schema.String.pipe(Schema.maxLength(128))).pipe(Schema.maxItems(10_000)), {
    default: () => []
  }),
  maxSessions: Schema.NullOr(Schema.Number.pipe(Schema.int(), Schema.positive())),
  /** Bytes free where its worktrees go (null: unknown). */
  freeDisk: Schema.NullOr(Schema.Number.pipe(Schema.nonNegative()))
})
export type RunnerOffer = typeof RunnerOffer.Type

export const CreateRunnerBody = Schema.Struct({ name: Name })

/** A runner as `GET /runners` lists it. */
export interface RunnerInfo {
  readonly id: string
  readonly name: string
  readonly online: boolean
  /** Started by the server for its own machine (not registered; gone when the server stops). */
  readonly embedded: boolean
  readonly agents: ReadonlyArray<RunnerAgent>
  readonly repos: ReadonlyArray<string>
  readonly sessions: number
  readonly maxSessions: number | null
  readonly freeDisk: number | null
}

/** What the hub asks of a runner, on its job stream (`event: job`). */
export type Job =
  | {
    readonly type: "start"
    readonly sessionId: string
    readonly agent: string
    readonly repo: string
    readonly baseRef: string | null
    /** The first prompt, sent once the agent is ready. */
    readonly prompt: string | null
    /** The session's sandbox token (null: the server runs without auth). */
    readonly sandboxToken: string | null
    /** Started again (`POST /sessions/:id/start`): the worktree exists already. */
    readonly restart: boolean
  }
  /** Stop the session's agent and everything it started; the worktree stays. */
  | { readonly type: "stop"; readonly sessionId: string }
  /** The session was deleted: stop its agent, remove its worktree (kept when it has uncommitted changes). */
  | { readonly type: "remove"; readonly sessionId: string }

/** A registered runner as the store keeps it: its token only as a hash. */
export interface StoredRunner {
  readonly id: string
  readonly name: string
  readonly tokenHash: string
  readonly createdAt: number
}
