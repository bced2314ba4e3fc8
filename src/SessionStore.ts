/**
 * The SessionStore: where sessions and artifacts persist. One interface, two
 * layers: `layerMemory` (pure, for tests) and `SessionStore/Sqlite`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type Artifact, applyChange, type CommittedChange } from "./Domain/Artifact.js"
import { SessionExists, StaleSession, type StoreError } from "./Domain/Errors.js"
import type { Session, SessionStatus, Usage, Workspace } from "./Domain/Session.js"
import type { StoredRunner } from "./Domain/Runner.js"
import type { Turn } from "./Domain/Turn.js"

/** How many recent `Idempotency-Key`s a session remembers. */
export const idempotencyWindow = 10_000

export interface StoredSession {
  readonly session: Session
  /** The session's revision counter: the rev of its last committed change. */
  readonly rev: number
  /** SHA-256 (hex) of the session's sandbox token, when auth issued one. */
  readonly sandboxTokenHash: string | null
  /** Clustered stores: the reducer's turn state as of `rev`. */
  readonly turn?: Turn | undefined
}

/** Everything one ingest writes, applied in one transaction. */
export interface Commit {
  readonly rev: number
  /**
   * The rev the writer last saw. When given, the commit fails with StaleSession if the stored
   * rev differs (another instance wrote first): the compare-and-set that keeps seq gap-free
   * across instances.
   */
  readonly expectedRev?: number
  /**
   * With `expectedRev`: the session's `createdAt` as the writer knows it. A session removed and
   * created again under the same id is another session, whatever its rev.
   */
  readonly createdAt?: number
  /** Unchanged when omitted (a status change alone). */
  readonly lastHeartbeat?: number
  readonly status?: SessionStatus
  readonly summary?: string | null
  readonly pendingPermissions?: number
  readonly usage?: Usage
  readonly lastStopReason?: string | null
  readonly workspace?: Workspace | null
  readonly changes: ReadonlyArray<CommittedChange>
  readonly idempotencyKey?: string | undefined
  /** Clustered: the reducer's turn state after this commit, logged for the other instances. */
  readonly turn?: Turn | undefined
}

/** A consistent read: the artifacts as of revision `rev`. */
export interface Snapshot {
  readonly rev: number
  readonly artifacts: ReadonlyArray<Artifact>
}

/** Which page of a session's artifacts: the `limit` just before `before`, just after `after`, or the newest. */
export interface PageQuery {
  readonly before?: number | undefined
  readonly after?: number | undefined
  readonly limit: number
}

/** A page of artifacts in seq order, and whether more lie beyond it (older when paging back, newer forward). */
export interface Page {
  readonly artifacts: ReadonlyArray<Artifact>
  readonly more: boolean
}

/**
 * Kinds whose last artifact a tail carries however old: the open text or reasoning delta, the
 * turn's plan and usage, the agent (its modes) and the worktree's changes are extended or
 * replaced later.
 */
export const lastOfKinds = ["text", "reasoning", "plan", "usage", "agent", "changes"] as const

/** An artifact whose later changes are still to come: a tool call not finished, a permission not answered. */
export const isUnfinished = (a: Artifact): boolean =>
  (a.kind === "tool_call" && (a.status === "pending" || a.status === "running")) ||
  (a.kind === "permission" && (a.decision === null || a.decision === undefined))

/**
 * What a tail of `n` holds out of `artifacts` (all of a session's, in seq order): the last `n`,
 * and before them every unfinished one and the last of each of `lastOfKinds`.
 */
export const tailOf = (artifacts: ReadonlyArray<Artifact>, n: number): ReadonlyArray<Artifact> => {
  const from = Math.max(0, artifacts.length - n)
  const keep = new Set<number>()
  const seen = new Set<string>()
  for (let i = from - 1; i >= 0; i--) {
    const a = artifacts[i]!
    if ((lastOfKinds as ReadonlyArray<string>).includes(a.kind) && !seen.has(a.kind)) {
      seen.add(a.kind)
      keep.add(i)
    } else if (isUnfinished(a)) keep.add(i)
  }
  return artifacts.filter((_, i) => i >= from || keep.has(i))
}

export interface SessionPatch {
  readonly status?: SessionStatus
  readonly summary?: string | null
  readonly lastHeartbeat?: number
}

export class SessionStore extends Context.Tag("@rein-ai/server/SessionStore")<SessionStore, {
  /** Every session, oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<StoredSession>, StoreError>
  readonly create: (session: Session, sandboxTokenHash?: string | null) => Effect.Effect<void, SessionExists | StoreError>
  /** The session as stored now. */
  readonly get: (id: string) => Effect.Effect<StoredSession | undefined, StoreError>
  /** Removes the session with its artifacts and keys; with `expected`, only that session at that rev. */
  readonly remove: (
    id: string,
    expected?: { readonly rev: number; readonly createdAt: number }
  ) => Effect.Effect<void, StoreError | StaleSession>
  readonly update: (id: string, patch: SessionPatch) => Effect.Effect<void, StoreError>
  readonly commit: (id: string, commit: Commit) => Effect.Effect<void, StoreError | StaleSession>
  /**
   * All artifacts in seq order or, with `resumeFrom: N` naming a known seq,
   * those with seq >= N or changed after artifact N was created.
   */
  readonly artifacts: (id: string, resumeFrom?: number) => Effect.Effect<Snapshot, StoreError>
  /**
   * One page: the last `limit` artifacts with seq < `before` (or of all, with neither bound), or
   * the first `limit` with seq > `after`; in seq order, with appendable text whole.
   */
  readonly page: (id: string, query: PageQuery) => Effect.Effect<Page, StoreError>
  /**
   * The last `n` artifacts and the older ones still changing (`tailOf`), in seq order, as of one
   * rev: what a stream opened with `?tail=n` starts from.
   */
  readonly tail: (id: string, n: number) => Effect.Effect<Snapshot, StoreError>
  readonly hasIdempotencyKey: (id: string, key: string) => Effect.Effect<boolean, StoreError>
  /** Answers when the store is usable (for health checks). */
  readonly ping: Effect.Effect<void, StoreError>
  /** Registered runners (`POST /runners`), oldest first; only their tokens' hashes. */
  readonly runners: {
    readonly list: Effect.Effect<ReadonlyArray<StoredRunner>, StoreError>
    readonly create: (runner: StoredRunner) => Effect.Effect<void, StoreError>
    /** False when there was no such runner. */
    readonly remove: (id: string) => Effect.Effect<boolean, StoreError>
  }
}>() {}

interface MemoryArtifact {
  artifact: Artifact
  readonly createdRev: number
  updatedRev: number
}

interface MemorySession {
  session: Session
  rev: number
  readonly sandboxTokenHash: string | null
  readonly artifacts: Array<MemoryArtifact>
  readonly keys: Set<string>
  readonly keyOrder: Array<string>
}

/** A pure in-memory store: nothing survives the process. */
export const makeMemory = Effect.sync(() => {
  const sessions = new Map<string, MemorySession>()
  const runners = new Map<string, StoredRunner>()

  const resume = (s: MemorySession, from: number | undefined): ReadonlyArray<Artifact> => {
    const anchor = from === undefined ? undefined : s.artifacts[from - 1]
    if (anchor === undefined) return s.artifacts.map((a) => a.artifact)
    return s.artifacts
      .filter((a) => a.artifact.seq >= anchor.artifact.seq || a.updatedRev > anchor.createdRev)
      .map((a) => a.artifact)
  }

  return SessionStore.of({
    list: Effect.sync(() =>
      Array.from(sessions.values(), (s) => ({ session: s.session, rev: s.rev, sandboxTokenHash: s.sandboxTokenHash }))
        // Oldest first; a stable sort keeps ties in creation order.
        .sort((a, b) => a.session.createdAt - b.session.createdAt)
    ),
    create: (session, sandboxTokenHash = null) =>
      Effect.suspend(() => {
        if (sessions.has(session.id)) return Effect.fail(new SessionExists({ id: session.id }))
        sessions.set(session.id, { session, rev: 0, sandboxTokenHash, artifacts: [], keys: new Set(), keyOrder: [] })
        return Effect.void
      }),
    get: (id) =>
      Effect.sync(() => {
        const s = sessions.get(id)
        return s && { session: s.session, rev: s.rev, sandboxTokenHash: s.sandboxTokenHash }
      }),
    remove: (id, expected) =>
      Effect.suspend(() => {
        const s = sessions.get(id)
        if (expected !== undefined && (s?.rev !== expected.rev || s.session.createdAt !== expected.createdAt)) {
          return Effect.fail(new StaleSession({ id }))
        }
        sessions.delete(id)
        return Effect.void
      }),
    update: (id, patch) =>
      Effect.sync(() => {
        const s = sessions.get(id)
        if (s !== undefined) s.session = { ...s.session, ...patch }
      }),
    commit: (id, commit) =>
      Effect.suspend(() => {
        const s = sessions.get(id)
        if (
          commit.expectedRev !== undefined &&
          (s?.rev !== commit.expectedRev || (commit.createdAt !== undefined && s.session.createdAt !== commit.createdAt))
        ) return Effect.fail(new StaleSession({ id }))
        if (s === undefined) return Effect.void
        const { changes, createdAt: ___, expectedRev: _, idempotencyKey, lastHeartbeat, rev, turn: __, ...patch } = commit
        s.session = { ...s.session, ...patch, ...(lastHeartbeat !== undefined && { lastHeartbeat }) }
        s.rev = rev
        for (const change of changes) {
          if (change._tag === "created") {
            s.artifacts.push({ artifact: change.artifact, createdRev: change.rev, updatedRev: change.rev })
          } else {
            const a = s.artifacts[change.seq - 1]!
            a.artifact = applyChange(a.artifact, change)
            a.updatedRev = change.rev
          }
        }
        if (idempotencyKey !== undefined) {
          s.keys.add(idempotencyKey)
          s.keyOrder.push(idempotencyKey)
          if (s.keyOrder.length > idempotencyWindow) s.keys.delete(s.keyOrder.shift()!)
        }
        return Effect.void
      }),
    artifacts: (id, from) =>
      Effect.sync(() => {
        const s = sessions.get(id)
        return s === undefined ? { rev: 0, artifacts: [] } : { rev: s.rev, artifacts: resume(s, from) }
      }),
    page: (id, { after, before, limit }) =>
      Effect.sync(() => {
        const all = sessions.get(id)?.artifacts ?? []
        // seq n is at index n - 1 (gap-free from 1).
        if (after !== undefined) {
          const page = all.slice(after, after + limit)
          return { artifacts: page.map((a) => a.artifact), more: after + limit < all.length }
        }
        const end = before === undefined ? all.length : Math.min(all.length, before - 1)
        const start = Math.max(0, end - limit)
        return { artifacts: all.slice(start, end).map((a) => a.artifact), more: start > 0 }
      }),
    tail: (id, n) =>
      Effect.sync(() => {
        const s = sessions.get(id)
        return s === undefined ? { rev: 0, artifacts: [] } : { rev: s.rev, artifacts: tailOf(s.artifacts.map((a) => a.artifact), n) }
      }),
    hasIdempotencyKey: (id, key) => Effect.sync(() => sessions.get(id)?.keys.has(key) ?? false),
    ping: Effect.void,
    runners: {
      list: Effect.sync(() => [...runners.values()]),
      create: (runner) => Effect.sync(() => void runners.set(runner.id, runner)),
      remove: (id) => Effect.sync(() => runners.delete(id))
    }
  })
})

export const layerMemory: Layer.Layer<SessionStore> = Layer.effect(SessionStore, makeMemory)
