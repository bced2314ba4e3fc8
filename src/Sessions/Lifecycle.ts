/**
 * Lifecycle: a session's birth and death (create, remove, removed by its bootstrap timer when
 * no sandbox came in time) and the service's own: start-up (memory filled from the store) and
 * shutdown (every sandbox stream ended first).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { SessionExists } from "../Domain/Errors.js"
import { type Launch, newSession, type Session } from "../Domain/Session.js"
import type { Reducer } from "../Reducer.js"
import type { SessionStore } from "../SessionStore.js"
import type { Deadlines } from "./Deadlines.js"
import type { Peers } from "./Peers.js"
import { type Entry, newEntry, type Registry } from "./Registry.js"
import { type Sandboxes, storeRetry } from "./Sandboxes.js"

export interface CreateOptions {
  /** The hash of the sandbox token auth issues, or how to make it from the new record. */
  readonly sandboxTokenHash?: string | null | ((session: Session) => string) | undefined
  /** What a runner starts for it (issue 20). */
  readonly launch?: Launch | undefined
}

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly reducer: typeof Reducer.Service
  readonly peers: Peers
  readonly registry: Registry
  readonly sandboxes: Sandboxes
  readonly timers: Deadlines
  /** Milliseconds a new session waits for its sandbox before it is removed. */
  readonly bootstrapTimeout: number
}

export const make = ({ bootstrapTimeout, peers, reducer, registry, sandboxes, store, timers }: Deps) => {
  const { entries, publishNotice, withSessionLock } = registry

  /** The session is removed at `at` (epoch ms) unless its sandbox connects first. */
  const startTimer = (id: string, at: number) => timers.set(id, at)

  const create = (id: string, project: string | null, options: CreateOptions = {}) =>
    Effect.gen(function*() {
      if (entries.has(id)) return yield* new SessionExists({ id })
      const now = yield* Clock.currentTimeMillis
      const session = newSession(id, project, now, options.launch)
      const hashOf = options.sandboxTokenHash
      const sandboxTokenHash = typeof hashOf === "function" ? hashOf(session) : hashOf ?? null
      // Once stored, the session must reach memory, watchers and its timer whatever happens.
      return yield* Effect.uninterruptible(Effect.gen(function*() {
        yield* store.create(session, sandboxTokenHash)
        // Clustered, it may have been adopted already (announced, or asked for on another route).
        if (entries.has(id)) return session
        entries.set(id, newEntry({ session, rev: 0, sandboxTokenHash }, reducer.initial))
        yield* publishNotice(project, { _tag: "created", session })
        // A runner starts its agent, which may take long (a checkout, an `npx` install) or fail
        // (said in its transcript): such a session waits for its agent, or for a person.
        if (session.agent === null) yield* startTimer(id, now + bootstrapTimeout)
        return session
      }))
    })

  /** Removes the session from the store (clustered: that session at that rev), then from memory. */
  const deleteSession = (entry: Entry) =>
    Effect.zipRight(
      store.remove(entry.session.id, peers.shared ? { rev: entry.rev, createdAt: entry.session.createdAt } : undefined),
      registry.drop(entry)
    )

  const remove = (id: string) => withSessionLock(id, (entry) => Effect.zipRight(deleteSession(entry), timers.remove(id)))

  /** Removes a session still waiting for its sandbox; while the store is down, tries again. */
  const expireBootstrap = (id: string) =>
    withSessionLock(id, (entry) => entry.session.status === "bootstrapping" ? deleteSession(entry) : Effect.void).pipe(
      Effect.catchTag("SessionNotFound", () => Effect.void),
      Effect.tapError((e) => Effect.logWarning(`bootstrap timeout of ${id} could not remove it yet`, e)),
      Effect.retry(storeRetry)
    )

  /**
   * Memory filled from the store. Bootstrapping sessions get the time they have left. Alone, no
   * sandbox can be connected yet; clustered, other instances may hold them (the follower sweeps
   * expired leases).
   */
  const start = Effect.gen(function*() {
    for (const stored of yield* store.list) {
      const { session } = stored
      const entry = newEntry(stored, undefined)
      entries.set(session.id, entry)
      if (session.status === "bootstrapping" && session.agent === null) {
        yield* startTimer(session.id, session.createdAt + bootstrapTimeout)
      }
      else yield* sandboxes.disconnectedAtStart(entry)
    }
  })

  /**
   * On shutdown, end every sandbox stream first; their finalizers then leave the store alone
   * (see `Sandboxes.closeAll`).
   */
  const shutdown = Effect.suspend(() => {
    registry.close()
    return sandboxes.closeAll
  })

  return { create, remove, expireBootstrap, start, shutdown }
}
