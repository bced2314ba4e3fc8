/**
 * Sessions: the use cases. Create and remove sessions, connect sandboxes,
 * deliver commands, ingest events (decode -> Reducer -> SessionStore commit
 * -> EventBus publish, one session at a time), and the bootstrap timers.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Cluster } from "./Cluster.js"
import type { Artifact, CommittedChange } from "./Domain/Artifact.js"
import type { Command, SandboxCommand } from "./Domain/Command.js"
import {
  type InvalidInput,
  NoSandbox,
  type PermissionConflict,
  SessionExists,
  SessionNotFound,
  StaleSession,
  StoreError
} from "./Domain/Errors.js"
import type { Event } from "./Domain/Event.js"
import type { Session, SessionFields, SessionStatus } from "./Domain/Session.js"
import {
  type ArtifactNotice,
  EventBus,
  Gate,
  queueSink,
  type SessionNotice,
  type Sink,
  type SlowConsumer
} from "./EventBus.js"
import type { Turn } from "./Domain/Turn.js"
import { completeReply, type Input, Reducer, type ReducerState, turnOf } from "./Reducer.js"
import { SessionStore, type StoredSession } from "./SessionStore.js"
import * as Deadlines from "./Sessions/Deadlines.js"

export interface SessionsOptions {
  /** Milliseconds a new session waits for its sandbox before it is removed. */
  readonly bootstrapTimeout: number
  /** Events (or commands) a subscriber may have unread before it is cut off. */
  readonly subscriberBuffer: number
  /**
   * Most sessions whose reducer state (tool calls, parts, permissions seen) stays in memory; the
   * least recently used beyond it are dropped and rebuilt from the store when next needed.
   * Default 1000.
   */
  readonly residentSessions?: number | undefined
  /** Milliseconds a session's reducer state stays in memory unused. Default 60 000. */
  readonly idleEvictAfter?: number | undefined
}

/** A snapshot, and live notices newer than it for whichever sink attaches. */
export interface Feed<S, N> {
  readonly snapshot: ReadonlyArray<S>
  /** Starts delivery to `sink`: what arrived since the snapshot, then everything live. */
  readonly attach: (sink: Sink<N>) => Effect.Effect<void>
}

export type ArtifactStreamItem =
  | { readonly _tag: "snapshot"; readonly artifact: Artifact }
  | { readonly _tag: "complete" }
  | { readonly _tag: "change"; readonly change: CommittedChange }

export type SessionStreamItem =
  | { readonly _tag: "snapshot"; readonly session: Session }
  | { readonly _tag: "complete" }
  | { readonly _tag: "notice"; readonly notice: SessionNotice }

export class Sessions extends Context.Tag("@rein-ai/server/Sessions")<Sessions, {
  /** Sessions oldest first, optionally of one project. */
  readonly list: (project?: string) => Effect.Effect<ReadonlyArray<Session>, StoreError>
  readonly get: (id: string) => Effect.Effect<Session, SessionNotFound | StoreError>
  readonly create: (
    id: string,
    project: string | null,
    sandboxTokenHash?: string | null
  ) => Effect.Effect<Session, SessionExists | StoreError>
  /** The hash of the session's sandbox token, if one was issued. */
  readonly sandboxTokenHash: (id: string) => Effect.Effect<string | null, SessionNotFound | StoreError>
  readonly remove: (id: string) => Effect.Effect<void, SessionNotFound | StoreError>
  /** The sandbox's command queue, live for the scope; a newer connection ends an older one. */
  readonly connectSandbox: (id: string) => Effect.Effect<SandboxFeed, SessionNotFound | StoreError, Scope.Scope>
  /**
   * Delivers a command to the session's sandbox, recording what it changes (a prompt, a permission
   * reply, completed first). Nothing is applied or sent when it fails.
   */
  readonly command: (
    id: string,
    command: Command
  ) => Effect.Effect<void, SessionNotFound | NoSandbox | PermissionConflict | InvalidInput | StoreError>
  readonly ingest: (
    id: string,
    events: ReadonlyArray<Event>,
    idempotencyKey?: string
  ) => Effect.Effect<void, SessionNotFound | InvalidInput | StoreError>
  readonly artifacts: (id: string) => Effect.Effect<ReadonlyArray<Artifact>, SessionNotFound | StoreError>
  /** The artifacts (all, or the resume set after `lastEventId`) and their live changes, gap-free. */
  readonly openArtifacts: (
    id: string,
    lastEventId?: number
  ) => Effect.Effect<Feed<Artifact, ArtifactNotice>, SessionNotFound | StoreError, Scope.Scope>
  /** The sessions (of one project) and their live changes, gap-free. */
  readonly openSessions: (project?: string) => Effect.Effect<Feed<Session, SessionNotice>, StoreError, Scope.Scope>
  /** `openArtifacts` as a Stream: snapshots, `complete`, then live changes. */
  readonly watchArtifacts: (
    id: string,
    lastEventId?: number
  ) => Effect.Effect<Stream.Stream<ArtifactStreamItem, SlowConsumer>, SessionNotFound | StoreError, Scope.Scope>
  readonly watchSessions: (
    project?: string
  ) => Effect.Effect<Stream.Stream<SessionStreamItem, SlowConsumer>, StoreError, Scope.Scope>
  readonly health: Effect.Effect<void, StoreError>
}>() {}

/** A sandbox's commands; once they end, `removed` tells whether it was because the session is gone. */
export interface SandboxFeed {
  readonly commands: Queue.Dequeue<SandboxCommand>
  /** True once the session was removed (deleted, expired, or removed on another instance) while connected. */
  readonly removed: () => boolean
}

interface Sandbox {
  readonly connection: number
  readonly queue: Queue.Queue<SandboxCommand>
  /** Set before the queue is shut down because the session is gone (not replaced, not shut down). */
  removed: boolean
  /** Numbers lease claims in the order they were stored (clustered). */
  claimed: number
}

/**
 * What memory holds of a session. Every session has one (the list is served from them), so an
 * idle one must stay small: the reducer state is dropped when unused (see `resident`), its lock
 * exists only while someone holds or waits for it.
 */
interface Entry {
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

export const make = (options: SessionsOptions) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const bus = yield* EventBus
    const reducer = yield* Reducer
    /** Present over PostgreSQL: other instances share the sessions (see `Cluster.ts`). */
    const cluster = Option.getOrUndefined(yield* Effect.serviceOption(Cluster))
    /** Background work (store retries, cluster sync) that ends with the service. */
    const background = yield* Effect.scope
    /** Bootstrap deadlines of sessions still waiting for their sandbox. */
    const timers = yield* Deadlines.make((id) => expire(id))
    const residentSessions = Math.max(0, options.residentSessions ?? 1000)
    const idleEvictAfter = Math.max(1, options.idleEvictAfter ?? 60_000)
    /** Entries with a reducer state of their own, least recently used first, with when that was. */
    const resident = new Map<Entry, number>()
    /** Sandboxes leaving (their session being marked disconnected): shutdown waits for them. */
    const leaving = yield* FiberSet.make()
    const entries = new Map<string, Entry>()
    let listRev = 0
    let connections = 0
    let claims = 0
    /** Sandbox connections between their lease claim and their arrival in `entries` (clustered). */
    const claiming = new Set<number>()
    let closing = false

    // On shutdown, end every sandbox stream first; their finalizers then leave the store alone.
    // Alone, the next start marks their sessions disconnected. Clustered, no start comes in this
    // instance's place: its sandboxes leave now, as they would one by one (bounded by 3 s).
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        const local = Array.from(entries.values()).flatMap((entry) => entry.sandbox ? [{ entry, sandbox: entry.sandbox }] : [])
        const leave = cluster === undefined ? Effect.void : Effect.forEach(local, ({ entry, sandbox }) =>
          Effect.suspend(() => {
            if (entry.sandbox === sandbox) entry.sandbox = undefined
            return Effect.ignore(sandboxLeft(entry, sandbox.connection))
          }), { concurrency: 8, discard: true }).pipe(Effect.timeout("3 seconds"), Effect.ignore)
        return Effect.zipRight(
          Effect.zipRight(leave, FiberSet.awaitEmpty(leaving).pipe(Effect.timeout("3 seconds"), Effect.ignore)),
          Effect.forEach(local, ({ sandbox }) => Queue.shutdown(sandbox.queue), { discard: true })
        )
      })
    )

    const newEntry = (stored: StoredSession, state: ReducerState | undefined): Entry => ({
      session: stored.session,
      rev: stored.rev,
      sandboxTokenHash: stored.sandboxTokenHash,
      reducer: state,
      turn: stored.turn,
      sandbox: undefined,
      removed: false,
      lock: undefined
    })

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
      while (resident.size > residentSessions) evict(resident.keys().next().value!)
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
          if (now - at < idleEvictAfter) break
          evict(entry)
        }
      }))

    const lookup = (id: string): Effect.Effect<Entry, SessionNotFound | StoreError> =>
      Effect.suspend(() => {
        const entry = entries.get(id)
        if (entry !== undefined) return Effect.succeed(entry)
        if (cluster === undefined) return Effect.fail(new SessionNotFound({ id }))
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
        return notify(session.project, { _tag: "created", session }).pipe(
          Effect.zipRight(
            session.status === "bootstrapping"
              ? startTimer(session.id, session.createdAt + options.bootstrapTimeout)
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
    const withLock = <A, E>(
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
            : cluster !== undefined && !closing && !cluster.isConnected()
            ? Effect.fail(new StoreError({ cause: new Error("lost the database's notifications; reconnecting") }))
            : f(entry)
        ).pipe(
          Effect.catchIf(
            (e): e is StaleSession => e instanceof StaleSession,
            (e) => tries >= 20 ? Effect.fail(new StoreError({ cause: e })) : Effect.zipRight(catchUp(entry, true), attempt(tries + 1))
          )
        ) as Effect.Effect<A, Exclude<E, StaleSession> | SessionNotFound | StoreError>
      return exclusive(entry, Effect.uninterruptible(attempt(0)))
    }

    const locked = <A, E>(id: string, f: (entry: Entry) => Effect.Effect<A, E | StaleSession>) =>
      Effect.flatMap(lookup(id), (entry) =>
        withLock(entry, f).pipe(
          // Clustered, the session may have been removed and created again meanwhile: that one.
          Effect.catchIf(
            (e) => e instanceof SessionNotFound && cluster !== undefined && entry.removed,
            (e) => Effect.flatMap(lookup(id), (again) => again === entry ? Effect.fail(e) : withLock(again, f))
          )
        ))

    /** Mutates memory and numbers the notice in one step, so watchers' snapshots stay exact. */
    const notify = (project: string | null, notice: DistributiveOmit<SessionNotice, "rev" | "project">) =>
      bus.publishSessions({ ...notice, rev: ++listRev, project } as SessionNotice)

    const changedFields = (session: Session, fields: SessionFields): SessionFields | undefined => {
      const out: { status?: SessionStatus; summary?: string | null } = {}
      if (fields.status !== undefined && fields.status !== session.status) out.status = fields.status
      if (fields.summary !== undefined && fields.summary !== session.summary) out.summary = fields.summary
      return Object.keys(out).length === 0 ? undefined : out
    }

    /**
     * Clustered, a status is a commit of its own (a new rev, logged for the other instances,
     * refused if one of them wrote first); alone, a plain update.
     */
    const setStatus = (entry: Entry, status: SessionStatus, options?: { readonly always: boolean }) =>
      Effect.suspend(() => {
        const same = entry.session.status === status
        // Clustered, a connecting sandbox writes `live` even when this instance believes it is:
        // the write orders it after any `disconnected` racing in from the instance it left.
        if (same && (cluster === undefined || options?.always !== true)) return Effect.void
        const id = entry.session.id
        const rev = cluster === undefined ? entry.rev : entry.rev + 1
        const write = cluster === undefined
          ? store.update(id, { status })
          : store.commit(id, { rev, expectedRev: entry.rev, createdAt: entry.session.createdAt, status, changes: [] })
        return write.pipe(
          Effect.zipRight(Effect.suspend(() => {
            entry.rev = rev
            if (same) return Effect.void
            entry.session = { ...entry.session, status }
            return notify(entry.session.project, { _tag: "updated", id, fields: { status } })
          }))
        )
      })

    /**
     * A sandbox that went away is gone whatever the store says: memory and
     * watchers learn it at once, and the store is told as soon as it answers.
     * (A restart turns live sessions disconnected anyway.) Clustered, the other
     * instances must hear it from the store, so it is a plain status commit.
     */
    const markDisconnected = (entry: Entry) => {
      if (cluster !== undefined) {
        // Checked under the row lock's ordering: a sandbox that meanwhile connected elsewhere wins.
        return Effect.flatMap(cluster.holder(entry.session.id), (lease) =>
          lease === undefined ? setStatus(entry, "disconnected") : Effect.void)
      }
      const persist = Effect.suspend(() =>
        entry.removed || entry.session.status !== "disconnected"
          ? Effect.void
          : store.update(entry.session.id, { status: "disconnected" })
      )
      return Effect.suspend(() => {
        entry.session = { ...entry.session, status: "disconnected" }
        return notify(entry.session.project, { _tag: "updated", id: entry.session.id, fields: { status: "disconnected" } })
      }).pipe(
        Effect.zipRight(persist),
        Effect.catchAll((e) =>
          Effect.logWarning(`could not persist ${entry.session.id} disconnected yet`, e).pipe(
            Effect.zipRight(persist.pipe(Effect.retry(storeRetry), Effect.forkIn(background)))
          )
        )
      )
    }

    /**
     * The sandbox of `connection` left (already out of `entry.sandbox`): its lease is given back
     * and, unless a newer connection anywhere holds the session, the session is disconnected.
     */
    const sandboxLeft = (entry: Entry, connection: number) =>
      (cluster === undefined ? Effect.succeed(true) : cluster.release(entry.session.id, connection)).pipe(
        Effect.flatMap((left) =>
          left
            ? withLock(entry, (e) => {
              const s = e.session.status
              return e.sandbox !== undefined || (s !== "live" && s !== "idle") ? Effect.void : markDisconnected(e)
            })
            : Effect.void
        )
      )

    /** The session is gone from the store: gone from the list, its streams and sandbox ended. */
    const forget = (entry: Entry) =>
      Effect.gen(function*() {
        const id = entry.session.id
        // Gone from the list and announced in one step, so list watchers' snapshots stay exact.
        yield* Effect.suspend(() => {
          entries.delete(id)
          entry.removed = true
          resident.delete(entry)
          return notify(entry.session.project, { _tag: "removed", id })
        })
        if (entry.sandbox !== undefined) {
          // Its stream says so before it ends: the sandbox must not reconnect.
          entry.sandbox.removed = true
          yield* Queue.shutdown(entry.sandbox.queue)
        }
        entry.sandbox = undefined
        yield* bus.endArtifacts(id)
      })

    const removeEntry = (entry: Entry) =>
      Effect.zipRight(
        store.remove(entry.session.id, cluster && { rev: entry.rev, createdAt: entry.session.createdAt }),
        forget(entry)
      )

    /** Removes a session still waiting for its sandbox; while the store is down, tries again. */
    const expire = (id: string) =>
      locked(id, (entry) => entry.session.status === "bootstrapping" ? removeEntry(entry) : Effect.void).pipe(
        Effect.catchTag("SessionNotFound", () => Effect.void),
        Effect.tapError((e) => Effect.logWarning(`bootstrap timeout of ${id} could not remove it yet`, e)),
        Effect.retry(storeRetry)
      )

    /** The session is removed at `at` (epoch ms) unless its sandbox connects first. */
    const startTimer = (id: string, at: number) => timers.set(id, at)

    /**
     * Clustered: applies what other instances committed since `entry.rev`, from the change log,
     * publishing it to this instance's watchers exactly as its own commits are. `stale`: a write
     * was refused, so something did change.
     */
    const catchUp = (entry: Entry, stale: boolean, target = 0): Effect.Effect<void, StoreError> =>
      Effect.gen(function*() {
        const id = entry.session.id
        if (cluster === undefined) {
          return yield* new StoreError({ cause: new Error(`session ${id} changed behind this server's back`) })
        }
        const log = yield* cluster.log(id, entry.session.createdAt, entry.rev)
        for (const { body, rev, revFrom } of log) {
          if (entry.removed) return
          // Pruned from under us: what this instance missed can only be read whole.
          if (revFrom !== entry.rev + 1) return yield* resync(entry)
          if (body.removed) return yield* forget(entry)
          const fields = changedFields(entry.session, body.fields ?? {})
          const changes = body.changes ?? []
          entry.rev = rev
          // The reducer follows, so the next event here continues exactly where that instance left off.
          if (entry.reducer !== undefined) entry.reducer = reducer.follow(entry.reducer, changes, body.turn)
          else if (body.turn !== undefined) entry.turn = body.turn
          entry.session = { ...entry.session, ...fields, lastHeartbeat: body.lastHeartbeat ?? entry.session.lastHeartbeat }
          if (fields !== undefined) yield* notify(entry.session.project, { _tag: "updated", id, fields })
          if (changes.length > 0) yield* bus.publishArtifacts(id, changes.map((change) => ({ rev: change.rev, change })))
        }
        // Refused without a logged reason, or announced further than the log goes: read it whole.
        if (!entry.removed && ((stale && log.length === 0) || entry.rev < target)) yield* resync(entry)
      })

    /** Reloads the session from the store; its artifact streams end, and their clients resume exactly. */
    const resync = (entry: Entry) =>
      Effect.gen(function*() {
        const id = entry.session.id
        const stored = yield* store.get(id)
        if (stored === undefined) return yield* forget(entry)
        // Removed and created again meanwhile: for watchers, that is what happened.
        if (stored.session.createdAt !== entry.session.createdAt) {
          yield* forget(entry)
          return yield* adopt(stored)
        }
        const fields = changedFields(entry.session, stored.session)
        entry.session = stored.session
        entry.reducer = undefined
        resident.delete(entry)
        entry.turn = stored.turn
        const moved = entry.rev !== stored.rev
        entry.rev = stored.rev
        if (fields !== undefined) yield* notify(entry.session.project, { _tag: "updated", id, fields })
        if (moved) yield* bus.endArtifacts(id)
      })

    const reducerState = (entry: Entry) =>
      entry.reducer !== undefined
        ? Effect.succeed(entry.reducer)
        : Effect.flatMap(store.artifacts(entry.session.id), (s) =>
          // Clustered, the store may be ahead of this instance: reducing on artifacts the entry has
          // not caught up with would judge the events against the wrong state (a retried event
          // would look like a duplicate tool call). Catch up first.
          cluster !== undefined && s.rev !== entry.rev
            ? Effect.fail(new StaleSession({ id: entry.session.id }))
            : Effect.succeed(reducer.fromArtifacts(s.artifacts, entry.turn)))

    /** Reduce, commit in one transaction, then publish: the ingest pipeline, under the session lock. */
    const apply = (
      entry: Entry,
      inputs: ReadonlyArray<Input>,
      options: { readonly heartbeat: boolean; readonly idempotencyKey?: string | undefined }
    ) =>
      Effect.gen(function*() {
        const state = yield* reducerState(entry)
        const now = yield* Clock.currentTimeMillis
        const reduction = reducer.reduce(state, entry.session.status, inputs, now)
        if (Either.isLeft(reduction)) {
          // Clustered, the events may be judged against a state another instance has moved past
          // (its commit's notification not here yet): a tool call started there is not unknown.
          // Only a state that is current may reject them.
          if (cluster !== undefined) {
            const stored = yield* store.get(entry.session.id)
            if (stored === undefined || stored.rev !== entry.rev) return yield* new StaleSession({ id: entry.session.id })
          }
          return yield* reduction.left
        }
        const { changes, session, state: next } = reduction.right
        let rev = entry.rev
        const committed = changes.map((c): CommittedChange => ({ ...c, rev: ++rev }))
        const fields = changedFields(entry.session, session)
        // Clustered, a status change alone still needs a rev of its own for the other instances.
        if (cluster !== undefined && committed.length === 0 && fields !== undefined) rev++
        const lastHeartbeat = options.heartbeat ? now : entry.session.lastHeartbeat
        // From commit to publish nothing may interrupt (a client hanging up mid-request):
        // memory must follow what the store committed, or the next seq would be reused.
        yield* Effect.uninterruptible(Effect.gen(function*() {
          yield* store.commit(entry.session.id, {
            rev,
            expectedRev: entry.rev,
            createdAt: entry.session.createdAt,
            lastHeartbeat,
            ...fields,
            changes: committed,
            idempotencyKey: options.idempotencyKey,
            turn: cluster === undefined ? undefined : turnOf(next)
          })
          entry.rev = rev
          entry.reducer = next
          // The initial state is shared by all, and nothing to drop.
          if (next !== reducer.initial) touch(entry, now)
          entry.session = { ...entry.session, ...fields, lastHeartbeat }
          if (fields !== undefined) yield* notify(entry.session.project, { _tag: "updated", id: entry.session.id, fields })
          if (committed.length > 0) {
            yield* bus.publishArtifacts(entry.session.id, committed.map((change) => ({ rev: change.rev, change })))
          }
        }))
      })

    /** Clustered: live streams promise what only a listening instance can keep. */
    const listening = Effect.suspend(() =>
      cluster === undefined || cluster.isConnected()
        ? Effect.void
        : Effect.fail(new StoreError({ cause: new Error("lost the database's notifications; reconnecting") }))
    )

    const openArtifacts = (id: string, lastEventId?: number) =>
      Effect.gen(function*() {
        yield* listening
        yield* lookup(id)
        // Subscribe before reading history: nothing committed meanwhile can fall in between.
        const gate = new Gate<ArtifactNotice>(options.subscriberBuffer)
        yield* bus.subscribeArtifacts(id, gate)
        yield* lookup(id)
        const { artifacts, rev } = yield* store.artifacts(id, lastEventId)
        return {
          snapshot: artifacts,
          // Changes the snapshot already holds are skipped: no duplicate.
          attach: (sink) => gate.open(sink, (n) => n.rev > rev)
        } satisfies Feed<Artifact, ArtifactNotice>
      })

    const openSessions = (project?: string) =>
      Effect.gen(function*() {
        yield* listening
        const gate = new Gate<SessionNotice>(options.subscriberBuffer)
        yield* bus.subscribeSessions(gate)
        const since = listRev
        const snapshot: Array<Session> = []
        for (const e of entries.values()) if (project === undefined || e.session.project === project) snapshot.push(e.session)
        return {
          snapshot,
          attach: (sink) => gate.open(sink, (n) => n.rev > since && (project === undefined || n.project === project))
        } satisfies Feed<Session, SessionNotice>
      })

    /** A feed as an Effect Stream: snapshots, `complete`, then live items from a bounded queue. */
    const asStream = <S, N, A>(feed: Feed<S, N>, snapshot: (s: S) => A, live: (n: N) => A) =>
      Effect.gen(function*() {
        const { sink, stream } = yield* queueSink<N>(options.subscriberBuffer)
        yield* feed.attach(sink)
        return Stream.fromIterable(feed.snapshot).pipe(
          Stream.map(snapshot),
          Stream.concat(Stream.succeed({ _tag: "complete" } as A)),
          Stream.concat(Stream.map(stream, live))
        )
      })

    // On start: bootstrapping sessions get the time they have left. Alone, no sandbox can be
    // connected yet; clustered, other instances may hold them (expired leases are swept below).
    for (const stored of yield* store.list) {
      const { session } = stored
      const entry = newEntry(stored, undefined)
      entries.set(session.id, entry)
      if (cluster === undefined && (session.status === "live" || session.status === "idle")) {
        yield* store.update(session.id, { status: "disconnected" })
        entry.session = { ...session, status: "disconnected" }
      } else if (session.status === "bootstrapping") {
        yield* startTimer(session.id, session.createdAt + options.bootstrapTimeout)
      }
    }

    if (cluster !== undefined) yield* joinCluster(cluster)
    yield* Effect.forkIn(
      Effect.repeat(evictIdle, Schedule.spaced(Math.min(30_000, Math.max(50, Math.floor(idleEvictAfter / 2))))),
      background
    )

    /** Clustered: follow the other instances' changes, keep this instance's leases, sweep dead ones. */
    function joinCluster(cluster: typeof Cluster.Service) {
      /** Sessions with a catch-up under way, and the highest rev announced for each meanwhile. */
      const syncing = new Map<string, number>()
      const log = (what: string) => Effect.catchAllCause((cause) => Effect.logWarning(what, cause))

      const syncOnce = (id: string, target: number) =>
        // Adopted from an older read, a session may still be behind the announcement: catch up too.
        Effect.flatMap(lookup(id), (entry) => withLock(entry, (e) => catchUp(e, false, target))).pipe(
          Effect.catchTag("SessionNotFound", () => Effect.void),
          log(`could not follow session ${id}`)
        )

      /** One catch-up fiber per session at a time; announcements arriving meanwhile make it go again. */
      const requestSync = (id: string, rev: number): Effect.Effect<void> =>
        Effect.suspend(() => {
          const entry = entries.get(id)
          if (entry !== undefined && entry.rev >= rev) return Effect.void
          const pending = syncing.get(id)
          syncing.set(id, Math.max(pending ?? rev, rev))
          if (pending !== undefined) return Effect.void
          const loop: Effect.Effect<void> = Effect.suspend(() => {
            const target = syncing.get(id)
            return Effect.zipRight(
              syncOnce(id, target ?? 0),
              Effect.suspend(() => syncing.get(id) === target ? Effect.sync(() => void syncing.delete(id)) : loop)
            )
          })
          return Effect.asVoid(Effect.forkIn(loop, background))
        })

      const commandLock = Effect.unsafeMakeSemaphore(1)
      /** Hands this instance's sandboxes the commands posted on other instances. */
      const deliverCommands = commandLock.withPermits(1)(
        Effect.flatMap(cluster.takeCommands, (commands) =>
          Effect.sync(() => {
            // A sandbox that left meanwhile misses them, as it would on one server.
            for (const { command, id } of commands) entries.get(id)?.sandbox?.queue.unsafeOffer(command)
          }))
      ).pipe(log("could not take commands"))

      /** Back from an outage (or just started): whatever was announced meanwhile is read from the store. */
      const resyncAll = Effect.gen(function*() {
        const stored = yield* store.list
        const ids = new Set<string>()
        for (const s of stored) {
          ids.add(s.session.id)
          const entry = entries.get(s.session.id)
          if (entry === undefined) yield* adopt(s)
          else if (s.rev > entry.rev) yield* requestSync(s.session.id, s.rev)
        }
        for (const entry of Array.from(entries.values())) {
          if (!ids.has(entry.session.id)) {
            yield* withLock(entry, resync).pipe(Effect.catchTag("SessionNotFound", () => Effect.void))
          }
        }
      }).pipe(log("could not catch up with the cluster"), Effect.zipRight(deliverCommands))

      /** Ends a local sandbox stream whose lease is gone; its close then changes nothing. */
      const dropSandbox = (id: string, sandbox: Sandbox) =>
        Effect.suspend(() => {
          const entry = entries.get(id)
          if (entry?.sandbox === sandbox) entry.sandbox = undefined
          return Queue.shutdown(sandbox.queue)
        })

      /** A newer sandbox connection on another instance ends this one's. */
      const sandboxMoved = (id: string, instance: string) =>
        Effect.suspend(() => {
          const sandbox = entries.get(id)?.sandbox
          if (instance === cluster.instance || sandbox === undefined) return Effect.void
          // Announcements can arrive late (A -> B -> A quickly): the lease says who holds it now.
          return Effect.flatMap(cluster.holder(id), (lease) =>
            lease?.instance === cluster.instance && lease.connection === sandbox.connection
              ? Effect.void
              : dropSandbox(id, sandbox))
        }).pipe(log(`could not check the sandbox of ${id}`))

      /** Marks a session disconnected whose sandbox no instance holds any more. */
      const orphaned = (id: string) =>
        locked(id, (entry) =>
          Effect.gen(function*() {
            const s = entry.session.status
            if (entry.sandbox !== undefined || (s !== "live" && s !== "idle")) return
            if ((yield* cluster.holder(id)) !== undefined) return
            yield* setStatus(entry, "disconnected")
          })).pipe(Effect.catchTag("SessionNotFound", () => Effect.void))

      /** Keeps this instance's leases alive; nothing else runs on this fiber, so nothing delays it. */
      const renew = Effect.gen(function*() {
        // Only sandboxes whose claim was stored before the renewal can be judged by it.
        const before = claims
        const held = yield* cluster.renew
        // A lease whose connection is not here (its connect failed after the claim) is given back.
        for (const [id, connection] of held) {
          if (!claiming.has(connection) && entries.get(id)?.sandbox?.connection !== connection) {
            yield* cluster.release(id, connection).pipe(log(`could not release the lease of ${id}`))
          }
        }
        for (const entry of entries.values()) {
          const sandbox = entry.sandbox
          // This instance lost the lease (it could not renew in time): the sandbox must reconnect.
          if (sandbox !== undefined && sandbox.claimed <= before && held.get(entry.session.id) !== sandbox.connection) {
            yield* dropSandbox(entry.session.id, sandbox)
          }
        }
      }).pipe(log("lease renewal failed"))

      /** Sessions whose sandbox's instance died; old log rows and commands. */
      const sweep = Effect.gen(function*() {
        for (const id of yield* cluster.orphans) yield* orphaned(id).pipe(log(`could not mark ${id} disconnected`))
        yield* cluster.prune
      }).pipe(log("lease sweep failed"))

      return Effect.gen(function*() {
        yield* cluster.listen({
          message: (a) =>
            a.type === "session"
              ? requestSync(a.id, a.rev)
              : a.type === "sandbox"
              ? sandboxMoved(a.id, a.instance)
              : a.instance === cluster.instance
              ? deliverCommands
              : Effect.void,
          connected: resyncAll,
          // Streams end rather than miss changes; their clients reconnect and resume.
          lost: bus.endAll
        }).pipe(Effect.provideService(Scope.Scope, background))
        const every = Schedule.spaced(Math.max(50, Math.floor(cluster.leaseTtl / 3)))
        yield* Effect.forkIn(Effect.repeat(renew, every), background)
        yield* Effect.forkIn(Effect.repeat(sweep, every), background)
      })
    }

    return Sessions.of({
      list: (project) =>
        Effect.map(
          // Clustered, the store is the one list all instances agree on at this moment.
          cluster === undefined
            ? Effect.sync(() => Array.from(entries.values(), (e) => e.session))
            : Effect.map(store.list, (stored) => stored.map((s) => s.session)),
          (all) => project === undefined ? all : all.filter((s) => s.project === project)
        ),
      get: (id) =>
        cluster === undefined
          ? Effect.map(lookup(id), (e) => e.session)
          : Effect.flatMap(store.get(id), (s) => s === undefined ? Effect.fail(new SessionNotFound({ id })) : Effect.succeed(s.session)),
      sandboxTokenHash: (id) => Effect.map(lookup(id), (e) => e.sandboxTokenHash),
      create: (id, project, sandboxTokenHash = null) =>
        Effect.gen(function*() {
          if (entries.has(id)) return yield* new SessionExists({ id })
          const now = yield* Clock.currentTimeMillis
          const session: Session = { id, status: "bootstrapping", summary: null, project, createdAt: now, lastHeartbeat: now }
          // Once stored, the session must reach memory, watchers and its timer whatever happens.
          return yield* Effect.uninterruptible(Effect.gen(function*() {
            yield* store.create(session, sandboxTokenHash)
            // Clustered, it may have been adopted already (announced, or asked for on another route).
            if (entries.has(id)) return session
            entries.set(id, newEntry({ session, rev: 0, sandboxTokenHash }, reducer.initial))
            yield* notify(project, { _tag: "created", session })
            yield* startTimer(id, now + options.bootstrapTimeout)
            return session
          }))
        }),
      remove: (id) =>
        locked(id, (entry) => Effect.zipRight(removeEntry(entry), timers.remove(id))),
      connectSandbox: (id) =>
        Effect.gen(function*() {
          const connection = ++connections
          const queue = yield* Queue.dropping<SandboxCommand>(options.subscriberBuffer)
          const sandbox: Sandbox = { connection, queue, claimed: 0, removed: false }
          // Acquired with its release, so no interruption can leave a sandbox nobody reads.
          yield* Effect.acquireRelease(
            locked(id, (entry) =>
              Effect.gen(function*() {
                // Lease first: no sweep may find the session live with nobody holding it.
                if (cluster !== undefined) {
                  claiming.add(connection)
                  yield* cluster.claim(id, connection)
                }
                yield* setStatus(entry, "live", { always: true })
                // A second sandbox stream closes the first; the first's close then changes nothing.
                if (entry.sandbox !== undefined) yield* Queue.shutdown(entry.sandbox.queue)
                entry.sandbox = sandbox
                sandbox.claimed = ++claims
                yield* timers.remove(id)
                return entry
              })).pipe(Effect.ensuring(Effect.sync(() => claiming.delete(connection)))),
            (entry) =>
              exclusive(entry, Effect.sync(() => {
                // A newer connection here already took its place: then nothing changes.
                if (closing || entry.sandbox?.connection !== connection) return false
                entry.sandbox = undefined
                return true
              })).pipe(
                Effect.flatMap((current) => current ? sandboxLeft(entry, connection) : Effect.void),
                Effect.catchTag("SessionNotFound", () => Effect.void),
                // Tracked, so a shutdown that starts meanwhile waits for it (the store must stay open).
                (leave) => Effect.flatMap(FiberSet.run(leaving, leave), Fiber.join),
                Effect.zipRight(Queue.shutdown(queue)),
                // Shutting down, the store may already be closed: the lease then expires on its own.
                Effect.catchAllCause((cause) => closing ? Effect.void : Effect.logWarning(`could not mark ${id} disconnected`, cause))
              )
          )
          return { commands: queue, removed: () => sandbox.removed } satisfies SandboxFeed
        }),
      command: (id, command) =>
        locked(id, (entry) =>
          Effect.gen(function*() {
            // A sandbox whose stream is ending, or too far behind to take one more command, is absent.
            const sandbox = entry.sandbox !== undefined && !(yield* Queue.isShutdown(entry.sandbox.queue)) &&
                !isFull(entry.sandbox.queue, options.subscriberBuffer)
              ? entry.sandbox
              : undefined
            // Clustered, the sandbox may be connected to another instance.
            const lease = sandbox === undefined && cluster !== undefined ? yield* cluster.holder(id) : undefined
            const remote = lease !== undefined && lease.instance !== cluster?.instance ? lease.instance : undefined
            if (remote === undefined && sandbox === undefined) return yield* new NoSandbox({ id })
            let delivered: SandboxCommand
            if (command.type === "prompt") {
              yield* apply(entry, [{ type: "prompt", text: command.text }], { heartbeat: false })
              delivered = command
            } else if (command.type === "permission_reply") {
              // Completed against the request, so the sandbox and the artifact get the same answer.
              const reply = completeReply(yield* reducerState(entry), command)
              if (Either.isLeft(reply)) return yield* reply.left
              const { decision, optionId } = reply.right
              yield* apply(entry, [{ type: "permission_decision", requestId: command.requestId, decision, optionId: optionId ?? undefined }], {
                heartbeat: false
              })
              delivered = { type: "permission_reply", requestId: command.requestId, decision, optionId }
            } else delivered = command
            if (remote !== undefined) yield* cluster!.send(remote, id, delivered)
            // Never blocks or fails: the queue was checked above, under the lock.
            else if (sandbox !== undefined) sandbox.queue.unsafeOffer(delivered)
          })),
      ingest: (id, events, idempotencyKey) =>
        locked(id, (entry) =>
          Effect.gen(function*() {
            if (idempotencyKey !== undefined && (yield* store.hasIdempotencyKey(id, idempotencyKey))) return
            yield* apply(entry, events, { heartbeat: true, idempotencyKey })
          })).pipe(Effect.catchTag("PermissionConflict", Effect.die)), // only commands answer permissions
      artifacts: (id) =>
        Effect.flatMap(lookup(id), () => store.artifacts(id)).pipe(Effect.map((s) => s.artifacts)),
      openArtifacts,
      openSessions,
      watchArtifacts: (id, lastEventId) =>
        Effect.flatMap(openArtifacts(id, lastEventId), (feed) =>
          asStream(feed, (artifact): ArtifactStreamItem => ({ _tag: "snapshot", artifact }), (n): ArtifactStreamItem => ({
            _tag: "change",
            change: n.change
          }))),
      watchSessions: (project) =>
        Effect.flatMap(openSessions(project), (feed) =>
          asStream(feed, (session): SessionStreamItem => ({ _tag: "snapshot", session }), (notice): SessionStreamItem => ({
            _tag: "notice",
            notice
          }))),
      // The listener first: a database that stopped answering would leave the ping hanging.
      health: Effect.zipRight(listening, store.ping)
    })
  })

const isFull = (queue: Queue.Queue<any>, capacity: number) => {
  const size = queue.unsafeSize()
  return size._tag === "Some" && size.value >= capacity
}

/** While the store is down: try again after 0.5 s, doubling up to every 30 s. */
const storeRetry = Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("30 seconds")))

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

export const layer = (options: SessionsOptions): Layer.Layer<Sessions, StoreError, SessionStore | EventBus | Reducer> =>
  Layer.scoped(Sessions, make(options))
