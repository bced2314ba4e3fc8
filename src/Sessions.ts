/**
 * Sessions: the use cases. Create and remove sessions, connect sandboxes,
 * deliver commands, ingest events (decode -> Reducer -> SessionStore commit
 * -> EventBus publish, one session at a time), and the bootstrap timers.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Artifact, CommittedChange } from "./Domain/Artifact.js"
import type { Command } from "./Domain/Command.js"
import {
  type InvalidInput,
  NoSandbox,
  type PermissionConflict,
  SessionExists,
  SessionNotFound,
  type StoreError
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
import { type Input, Reducer, type ReducerState } from "./Reducer.js"
import { SessionStore } from "./SessionStore.js"

export interface SessionsOptions {
  /** Milliseconds a new session waits for its sandbox before it is removed. */
  readonly bootstrapTimeout: number
  /** Events (or commands) a subscriber may have unread before it is cut off. */
  readonly subscriberBuffer: number
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
  readonly list: (project?: string) => Effect.Effect<ReadonlyArray<Session>>
  readonly get: (id: string) => Effect.Effect<Session, SessionNotFound>
  readonly create: (
    id: string,
    project: string | null,
    sandboxTokenHash?: string | null
  ) => Effect.Effect<Session, SessionExists | StoreError>
  /** The hash of the session's sandbox token, if one was issued. */
  readonly sandboxTokenHash: (id: string) => Effect.Effect<string | null, SessionNotFound>
  readonly remove: (id: string) => Effect.Effect<void, SessionNotFound | StoreError>
  /** The sandbox's command queue, live for the scope; a newer connection ends an older one. */
  readonly connectSandbox: (id: string) => Effect.Effect<Queue.Dequeue<Command>, SessionNotFound | StoreError, Scope.Scope>
  readonly command: (id: string, command: Command) => Effect.Effect<void, SessionNotFound | NoSandbox | PermissionConflict | StoreError>
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
  readonly openSessions: (project?: string) => Effect.Effect<Feed<Session, SessionNotice>, never, Scope.Scope>
  /** `openArtifacts` as a Stream: snapshots, `complete`, then live changes. */
  readonly watchArtifacts: (
    id: string,
    lastEventId?: number
  ) => Effect.Effect<Stream.Stream<ArtifactStreamItem, SlowConsumer>, SessionNotFound | StoreError, Scope.Scope>
  readonly watchSessions: (project?: string) => Effect.Effect<Stream.Stream<SessionStreamItem, SlowConsumer>, never, Scope.Scope>
  readonly health: Effect.Effect<void, StoreError>
}>() {}

interface Sandbox {
  readonly connection: number
  readonly queue: Queue.Queue<Command>
}

interface Entry {
  session: Session
  rev: number
  readonly sandboxTokenHash: string | null
  reducer: ReducerState | undefined
  sandbox: Sandbox | undefined
  removed: boolean
  readonly lock: Effect.Semaphore
}

export const make = (options: SessionsOptions) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const bus = yield* EventBus
    const reducer = yield* Reducer
    const timers = yield* FiberMap.make<string>()
    /** Background work (store retries) that ends with the service. */
    const background = yield* Effect.scope
    const entries = new Map<string, Entry>()
    let listRev = 0
    let connections = 0
    let closing = false

    // On shutdown, end every sandbox stream first; their finalizers then leave the store alone.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closing = true
        return Effect.forEach(entries.values(), (e) => e.sandbox ? Queue.shutdown(e.sandbox.queue) : Effect.void, {
          discard: true
        })
      })
    )

    const lookup = (id: string) =>
      Effect.suspend(() => {
        const entry = entries.get(id)
        return entry === undefined ? Effect.fail(new SessionNotFound({ id })) : Effect.succeed(entry)
      })

    /** Run `f` holding the session's lock; fails if the session went away meanwhile. */
    /**
     * Run `f` holding the session's lock; fails if the session went away meanwhile. Waiting for
     * the lock can be interrupted, `f` cannot: a client hanging up must not leave memory behind
     * what the store already did.
     */
    const locked = <A, E>(id: string, f: (entry: Entry) => Effect.Effect<A, E>): Effect.Effect<A, E | SessionNotFound> =>
      Effect.flatMap(lookup(id), (entry) =>
        entry.lock.withPermits(1)(
          Effect.uninterruptible(Effect.suspend((): Effect.Effect<A, E | SessionNotFound> =>
            entry.removed ? Effect.fail(new SessionNotFound({ id })) : f(entry)
          ))
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
     * A sandbox that went away is gone whatever the store says: memory and
     * watchers learn it at once, and the store is told as soon as it answers.
     * (A restart turns live sessions disconnected anyway.)
     */
    const markDisconnected = (entry: Entry) => {
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

    const setStatus = (entry: Entry, status: SessionStatus) =>
      Effect.suspend(() => {
        if (entry.session.status === status) return Effect.void
        return store.update(entry.session.id, { status }).pipe(
          Effect.zipRight(Effect.suspend(() => {
            entry.session = { ...entry.session, status }
            return notify(entry.session.project, { _tag: "updated", id: entry.session.id, fields: { status } })
          }))
        )
      })

    const removeEntry = (entry: Entry) =>
      Effect.gen(function*() {
        const id = entry.session.id
        yield* store.remove(id)
        // Gone from the list and announced in one step, so list watchers' snapshots stay exact.
        yield* Effect.suspend(() => {
          entries.delete(id)
          entry.removed = true
          return notify(entry.session.project, { _tag: "removed", id })
        })
        if (entry.sandbox !== undefined) yield* Queue.shutdown(entry.sandbox.queue)
        entry.sandbox = undefined
        yield* bus.endArtifacts(id)
      })

    /** Removes a session still waiting for its sandbox; while the store is down, tries again. */
    const expire = (id: string) =>
      locked(id, (entry) => entry.session.status === "bootstrapping" ? removeEntry(entry) : Effect.void).pipe(
        Effect.catchTag("SessionNotFound", () => Effect.void),
        Effect.tapError((e) => Effect.logWarning(`bootstrap timeout of ${id} could not remove it yet`, e)),
        Effect.retry(storeRetry)
      )

    const startTimer = (id: string, delay: number) =>
      FiberMap.run(timers, id, Effect.sleep(Math.max(0, delay)).pipe(Effect.zipRight(expire(id))))

    const reducerState = (entry: Entry) =>
      entry.reducer !== undefined
        ? Effect.succeed(entry.reducer)
        : Effect.map(store.artifacts(entry.session.id), (s) => reducer.fromArtifacts(s.artifacts))

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
        if (Either.isLeft(reduction)) return yield* reduction.left
        const { changes, session, state: next } = reduction.right
        let rev = entry.rev
        const committed = changes.map((c): CommittedChange => ({ ...c, rev: ++rev }))
        const fields = changedFields(entry.session, session)
        const lastHeartbeat = options.heartbeat ? now : entry.session.lastHeartbeat
        // From commit to publish nothing may interrupt (a client hanging up mid-request):
        // memory must follow what the store committed, or the next seq would be reused.
        yield* Effect.uninterruptible(Effect.gen(function*() {
          yield* store.commit(entry.session.id, {
            rev,
            lastHeartbeat,
            ...fields,
            changes: committed,
            idempotencyKey: options.idempotencyKey
          })
          entry.rev = rev
          entry.reducer = next
          entry.session = { ...entry.session, ...fields, lastHeartbeat }
          if (fields !== undefined) yield* notify(entry.session.project, { _tag: "updated", id: entry.session.id, fields })
          if (committed.length > 0) {
            yield* bus.publishArtifacts(entry.session.id, committed.map((change) => ({ rev: change.rev, change })))
          }
        }))
      })

    const openArtifacts = (id: string, lastEventId?: number) =>
      Effect.gen(function*() {
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

    // On start: no sandbox can be connected yet, and bootstrapping sessions get the time they have left.
    const now = yield* Clock.currentTimeMillis
    for (const { rev, sandboxTokenHash, session } of yield* store.list) {
      const entry: Entry = {
        session,
        rev,
        sandboxTokenHash,
        reducer: undefined,
        sandbox: undefined,
        removed: false,
        lock: yield* Effect.makeSemaphore(1)
      }
      entries.set(session.id, entry)
      if (session.status === "live" || session.status === "idle") {
        yield* store.update(session.id, { status: "disconnected" })
        entry.session = { ...session, status: "disconnected" }
      } else if (session.status === "bootstrapping") {
        yield* startTimer(session.id, session.createdAt + options.bootstrapTimeout - now)
      }
    }

    return Sessions.of({
      list: (project) =>
        Effect.sync(() => {
          const out: Array<Session> = []
          for (const e of entries.values()) if (project === undefined || e.session.project === project) out.push(e.session)
          return out
        }),
      get: (id) => Effect.map(lookup(id), (e) => e.session),
      sandboxTokenHash: (id) => Effect.map(lookup(id), (e) => e.sandboxTokenHash),
      create: (id, project, sandboxTokenHash = null) =>
        Effect.gen(function*() {
          if (entries.has(id)) return yield* new SessionExists({ id })
          const now = yield* Clock.currentTimeMillis
          const session: Session = { id, status: "bootstrapping", summary: null, project, createdAt: now, lastHeartbeat: now }
          const lock = yield* Effect.makeSemaphore(1)
          // Once stored, the session must reach memory, watchers and its timer whatever happens.
          return yield* Effect.uninterruptible(Effect.gen(function*() {
            yield* store.create(session, sandboxTokenHash)
            entries.set(id, { session, rev: 0, sandboxTokenHash, reducer: reducer.initial, sandbox: undefined, removed: false, lock })
            yield* notify(project, { _tag: "created", session })
            yield* startTimer(id, options.bootstrapTimeout)
            return session
          }))
        }),
      remove: (id) =>
        locked(id, (entry) => Effect.zipRight(removeEntry(entry), FiberMap.remove(timers, id))),
      connectSandbox: (id) =>
        Effect.gen(function*() {
          const connection = ++connections
          const queue = yield* Queue.dropping<Command>(options.subscriberBuffer)
          // Acquired with its release, so no interruption can leave a sandbox nobody reads.
          yield* Effect.acquireRelease(
            locked(id, (entry) =>
              Effect.gen(function*() {
                yield* setStatus(entry, "live")
                // A second sandbox stream closes the first; the first's close then changes nothing.
                if (entry.sandbox !== undefined) yield* Queue.shutdown(entry.sandbox.queue)
                entry.sandbox = { connection, queue }
                yield* FiberMap.remove(timers, id)
                return entry
              })),
            (entry) =>
            entry.lock.withPermits(1)(Effect.suspend(() => {
              if (closing || entry.sandbox?.connection !== connection) return Effect.void
              entry.sandbox = undefined
              const s = entry.session.status
              return entry.removed || (s !== "live" && s !== "idle") ? Effect.void : markDisconnected(entry)
            })).pipe(
              Effect.zipRight(Queue.shutdown(queue)),
              Effect.catchAllCause((cause) => Effect.logWarning(`could not mark ${id} disconnected`, cause))
            )
          )
          return queue
        }),
      command: (id, command) =>
        locked(id, (entry) =>
          Effect.gen(function*() {
            const sandbox = entry.sandbox
            // A sandbox too far behind to take one more command counts as absent.
            if (sandbox === undefined || isFull(sandbox.queue, options.subscriberBuffer)) return yield* new NoSandbox({ id })
            if (command.type === "prompt") {
              yield* apply(entry, [{ type: "user_message", text: command.text }], { heartbeat: false })
            } else if (command.type === "permission_reply") {
              yield* apply(entry, [{ type: "permission_decision", requestId: command.requestId, decision: command.decision }], {
                heartbeat: false
              })
            }
            yield* Queue.offer(sandbox.queue, command)
          })).pipe(Effect.catchTag("InvalidInput", Effect.die)), // commands always reduce cleanly
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
      health: store.ping
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
