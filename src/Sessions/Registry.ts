/**
 * Registry: what memory holds of each session (an `Entry`), and keeping it equal to the store.
 * It owns the entries, their locks, the list notices (numbered as memory changes, so list
 * watchers' snapshots stay exact), the least-recently-used bound on reducer states, and the
 * catch-up that applies what other instances committed. `drop` is the one place a session leaves
 * memory: whatever it owns (list place, sandbox stream, artifact streams) ends there, at once.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { SandboxCommand } from "../Domain/Command.js"
import { SessionNotFound, StaleSession, StoreError } from "../Domain/Errors.js"
import { changedFields, type Session } from "../Domain/Session.js"
import type { Turn } from "../Domain/Turn.js"
import type { EventBus, SessionNotice } from "../EventBus.js"
import { type Reducer, type ReducerState, turnOf } from "../Reducer.js"
import type { SessionStore, StoredSession } from "../SessionStore.js"
import type { Deadlines } from "./Deadlines.js"
import { notListening, type Peers } from "./Peers.js"

/** A connected sandbox of this instance. */
export interface Sandbox {
  readonly connection: number
  readonly queue: Queue.Queue<SandboxCommand>
  /** Set before the queue is shut down because the session is gone (not replaced, not shut down). */
  removed: boolean
  /** Set before the queue is shut down because a newer sandbox took the session over. */
  superseded?: boolean
  /** Numbers lease claims in the order they were stored (clustered). */
  claimed: number
}

/**
 * What memory holds of a session. Every session has one (the list is served from them), so an
 * idle one must stay small: the reducer state is dropped when unused (see `resident`), its lock
 * exists only while someone holds or waits for it.
 */
export interface Entry {
  session: Session
  rev: number
  readonly sandboxTokenHash: string | null
  reducer: ReducerState | undefined
  /**
   * While `reducer` is not built: the turn state (open delta, plan, usage) it had, which the
   * artifacts do not record; clustered, the one another instance's last commit left. Undefined
   * when there is none (all null).
   */
  turn: Turn | undefined
  sandbox: Sandbox | undefined
  removed: boolean
  lock: Lock | undefined
}

interface Lock {
  readonly semaphore: Effect.Semaphore
  /** Fibers holding or waiting for it; at 0 it is dropped. */
  users: number
}

export interface RegistryOptions {
  readonly bootstrapTimeout: number
  readonly residentSessions: number
  readonly idleEvictAfter: number
}

export type Notice = DistributiveOmit<SessionNotice, "rev" | "project">

export const newEntry = (stored: StoredSession, state: ReducerState | undefined): Entry => ({
  session: stored.session,
  rev: stored.rev,
  sandboxTokenHash: stored.sandboxTokenHash,
  reducer: state,
  turn: stored.turn,
  sandbox: undefined,
  removed: false,
  lock: undefined
})

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly bus: typeof EventBus.Service
  readonly reducer: typeof Reducer.Service
  readonly peers: Peers
  /** Bootstrap deadlines: a session adopted while bootstrapping gets its timer here too. */
  readonly timers: Deadlines
}

export const make = (options: RegistryOptions, { bus, peers, reducer, store, timers }: Deps) => {
  const entries = new Map<string, Entry>()
  /** Entries with a reducer state of their own, least recently used first, with when that was. */
  const resident = new Map<Entry, number>()
  let listRev = 0
  /** Set when the service starts shutting down. */
  let closing = false

  /** Runs `f` alone among the users of the session's lock (created on demand, dropped when unused). */
  const exclusive = <A, E, R>(entry: Entry, f: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      const lock = entry.lock ??= { semaphore: Effect.unsafeMakeSemaphore(1), users: 0 }
      lock.users++
      return lock.semaphore.withPermits(1)(f).pipe(
        Effect.ensuring(Effect.sync(() => {
          if (--lock.users === 0 && entry.lock === lock) entry.lock = undefined
        }))
      )
    })

  /** The entry's reducer state was just used: it stays in memory, and the oldest beyond the bound leave. */
  const touch = (entry: Entry, now: number) => {
    resident.delete(entry)
    if (entry.removed) return
    resident.set(entry, now)
    while (resident.size > options.residentSessions) evict(resident.keys().next().value!)
  }

  /** Drops the reducer state, keeping only what the artifacts cannot tell: the turn. */
  const evict = (entry: Entry) => {
    resident.delete(entry)
    const state = entry.reducer
    if (state === undefined) return
    entry.reducer = undefined
    entry.turn = state.open === null && state.turnPlan === null && state.turnUsage === null ? undefined : turnOf(state)
  }

  /** Reducer states unused for `idleEvictAfter` leave memory. */
  const evictIdle = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      for (const [entry, at] of resident) {
        if (now - at < options.idleEvictAfter) break
        evict(entry)
      }
    }))

  /** Mutates memory and numbers the notice in one step, so watchers' snapshots stay exact. */
  const publishNotice = (project: string | null, notice: Notice) =>
    bus.publishSessions({ ...notice, rev: ++listRev, project } as SessionNotice)

  const lookup = (id: string): Effect.Effect<Entry, SessionNotFound | StoreError> =>
    Effect.suspend(() => {
      const entry = entries.get(id)
      if (entry !== undefined) return Effect.succeed(entry)
      if (!peers.shared) return Effect.fail(new SessionNotFound({ id }))
      // Another instance may have created it a moment ago: the store knows before we are told.
      return Effect.flatMap(store.get(id), (stored) => stored === undefined ? Effect.fail(new SessionNotFound({ id })) : adopt(stored))
    })

  /** A session created elsewhere joins this instance: list watchers learn it, its timer runs here too. */
  const adopt = (stored: StoredSession): Effect.Effect<Entry> =>
    Effect.suspend(() => {
      const { session } = stored
      const existing = entries.get(session.id)
      if (existing !== undefined) return Effect.succeed(existing)
      const entry = newEntry(stored, undefined)
      entries.set(session.id, entry)
      return publishNotice(session.project, { _tag: "created", session }).pipe(
        Effect.zipRight(
          session.status === "bootstrapping"
            ? timers.set(session.id, session.createdAt + options.bootstrapTimeout)
            : Effect.void
        ),
        Effect.as(entry)
      )
    })

  /**
   * Run `f` holding the session's lock; fails if the session went away meanwhile. Waiting for
   * the lock can be interrupted, `f` cannot: a client hanging up must not leave memory behind
   * what the store already did. When another instance wrote the session first, `f` runs again
   * on the caught-up entry.
   */
  const withEntryLock = <A, E>(
    entry: Entry,
    f: (entry: Entry) => Effect.Effect<A, E | StaleSession>
  ): Effect.Effect<A, Exclude<E, StaleSession> | SessionNotFound | StoreError> => {
    const attempt = (tries: number): Effect.Effect<A, Exclude<E, StaleSession> | SessionNotFound | StoreError> =>
      Effect.suspend((): Effect.Effect<A, E | StaleSession | SessionNotFound | StoreError> =>
        entry.removed
          ? Effect.fail(new SessionNotFound({ id: entry.session.id }))
          // Clustered and cut off from the database, a request queued behind one stuck on it
          // fails at once instead of waiting its turn to be stuck too (not when shutting down:
          // the sandboxes' leaving is written then, the listener already gone).
          : !closing && !peers.isListening()
          ? Effect.fail(notListening())
          : f(entry)
      ).pipe(
        Effect.catchIf(
          (e): e is StaleSession => e instanceof StaleSession,
          (e) => tries >= 20 ? Effect.fail(new StoreError({ cause: e })) : Effect.zipRight(catchUp(entry, true), attempt(tries + 1))
        )
      ) as Effect.Effect<A, Exclude<E, StaleSession> | SessionNotFound | StoreError>
    return exclusive(entry, Effect.uninterruptible(attempt(0)))
  }

  /** `withEntryLock` on the session `id` names now. */
  const withSessionLock = <A, E>(id: string, f: (entry: Entry) => Effect.Effect<A, E | StaleSession>) =>
    Effect.flatMap(lookup(id), (entry) =>
      withEntryLock(entry, f).pipe(
        // Clustered, the session may have been removed and created again meanwhile: that one.
        Effect.catchIf(
          (e) => e instanceof SessionNotFound && peers.shared && entry.removed,
          (e) => Effect.flatMap(lookup(id), (again) => again === entry ? Effect.fail(e) : withEntryLock(again, f))
        )
      ))

  /** The session is gone from the store: gone from the list, its streams and sandbox ended. */
  const drop = (entry: Entry) =>
    Effect.gen(function*() {
      const id = entry.session.id
      // Gone from the list and announced in one step, so list watchers' snapshots stay exact.
      yield* Effect.suspend(() => {
        entries.delete(id)
        entry.removed = true
        resident.delete(entry)
        return publishNotice(entry.session.project, { _tag: "removed", id })
      })
      if (entry.sandbox !== undefined) {
        // Its stream says so before it ends: the sandbox must not reconnect.
        entry.sandbox.removed = true
        yield* Queue.shutdown(entry.sandbox.queue)
      }
      entry.sandbox = undefined
      yield* bus.endArtifacts(id)
    })

  /**
   * Applies what other instances committed since `entry.rev`, from the change log, publishing it
   * to this instance's watchers exactly as its own commits are. `stale`: a write was refused, so
   * something did change.
   */
  const catchUp = (entry: Entry, stale: boolean, target = 0): Effect.Effect<void, StoreError> =>
    Effect.gen(function*() {
      const id = entry.session.id
      const log = yield* peers.log(id, entry.session.createdAt, entry.rev)
      for (const { body, rev, revFrom } of log) {
        if (entry.removed) return
        // Pruned from under us: what this instance missed can only be read whole.
        if (revFrom !== entry.rev + 1) return yield* reload(entry)
        if (body.removed) return yield* drop(entry)
        const fields = changedFields(entry.session, body.fields ?? {})
        const changes = body.changes ?? []
        entry.rev = rev
        // The reducer follows, so the next event here continues exactly where that instance left off.
        if (entry.reducer !== undefined) entry.reducer = reducer.follow(entry.reducer, changes, body.turn)
        else if (body.turn !== undefined) entry.turn = body.turn
        entry.session = { ...entry.session, ...fields, lastHeartbeat: body.lastHeartbeat ?? entry.session.lastHeartbeat }
        if (fields !== undefined) yield* publishNotice(entry.session.project, { _tag: "updated", id, fields, session: entry.session })
        if (changes.length > 0) yield* bus.publishArtifacts(id, changes.map((change) => ({ rev: change.rev, change })))
      }
      // Refused without a logged reason, or announced further than the log goes: read it whole.
      if (!entry.removed && ((stale && log.length === 0) || entry.rev < target)) yield* reload(entry)
    })

  /** Reads the session from the store again; its artifact streams end, and their clients resume exactly. */
  const reload = (entry: Entry) =>
    Effect.gen(function*() {
      const id = entry.session.id
      const stored = yield* store.get(id)
      if (stored === undefined) return yield* drop(entry)
      // Removed and created again meanwhile: for watchers, that is what happened.
      if (stored.session.createdAt !== entry.session.createdAt) {
        yield* drop(entry)
        return yield* adopt(stored)
      }
      const fields = changedFields(entry.session, stored.session)
      entry.session = stored.session
      entry.reducer = undefined
      resident.delete(entry)
      entry.turn = stored.turn
      const moved = entry.rev !== stored.rev
      entry.rev = stored.rev
      if (fields !== undefined) yield* publishNotice(entry.session.project, { _tag: "updated", id, fields, session: entry.session })
      if (moved) yield* bus.endArtifacts(id)
    })

  return {
    entries,
    listRev: () => listRev,
    isClosing: () => closing,
    /** From now on the service is shutting down. */
    close: () => void (closing = true),
    exclusive,
    touch,
    evictIdle,
    publishNotice,
    lookup,
    adopt,
    withEntryLock,
    withSessionLock,
    drop,
    catchUp,
    reload
  }
}

export type Registry = ReturnType<typeof make>

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
