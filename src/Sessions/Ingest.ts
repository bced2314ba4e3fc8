/**
 * Ingest: the one write path of a session's events (and of the commands that record something,
 * a prompt or a permission decision): reduce against the session's reducer state, commit in one
 * transaction, then publish, all under the session's lock.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { CommittedChange } from "../Domain/Artifact.js"
import { StaleSession, type StoreError } from "../Domain/Errors.js"
import type { Event } from "../Domain/Event.js"
import { changedFields } from "../Domain/Session.js"
import type { EventBus } from "../EventBus.js"
import { type Input, type Reducer, turnOf } from "../Reducer.js"
import type { SessionStore } from "../SessionStore.js"
import type { Peers } from "./Peers.js"
import type { Entry, Registry } from "./Registry.js"

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly bus: typeof EventBus.Service
  readonly reducer: typeof Reducer.Service
  readonly peers: Peers
  readonly registry: Registry
}

export const make = ({ bus, peers, reducer, registry, store }: Deps) => {
  /** The entry's reducer state, rebuilt from the artifacts (and the kept turn) when it was evicted. */
  const reducerState = (entry: Entry) =>
    entry.reducer !== undefined
      ? Effect.succeed(entry.reducer)
      : Effect.flatMap(store.artifacts(entry.session.id), (s) =>
        // Clustered, the store may be ahead of this instance: reducing on artifacts the entry has
        // not caught up with would judge the events against the wrong state (a retried event
        // would look like a duplicate tool call). Catch up first.
        peers.shared && s.rev !== entry.rev
          ? Effect.fail(new StaleSession({ id: entry.session.id }))
          : Effect.succeed(reducer.fromArtifacts(s.artifacts, entry.turn)))

  /**
   * Fails with what the entry's state judged wrong. Clustered, that state may be one another
   * instance has moved past (its commit's notification not here yet): a tool call or a permission
   * request made there is not unknown. Only a current state may refuse; a stale one is
   * `StaleSession`, which catches up and tries again.
   */
  const refuse = <E>(entry: Entry, error: E): Effect.Effect<never, E | StaleSession | StoreError> =>
    Effect.gen(function*() {
      if (peers.shared) {
        const stored = yield* store.get(entry.session.id)
        if (stored === undefined || stored.rev !== entry.rev) return yield* new StaleSession({ id: entry.session.id })
      }
      return yield* Effect.fail(error)
    })

  /** Reduce, commit in one transaction, then publish: the ingest pipeline, under the session lock. */
  const apply = (
    entry: Entry,
    inputs: ReadonlyArray<Input>,
    options: { readonly heartbeat: boolean; readonly idempotencyKey?: string | undefined }
  ) =>
    Effect.gen(function*() {
      const state = yield* reducerState(entry)
      const now = yield* Clock.currentTimeMillis
      const reduction = reducer.reduce(state, entry.session, inputs, now)
      if (Either.isLeft(reduction)) return yield* refuse(entry, reduction.left)
      const { changes, session, state: next } = reduction.right
      let rev = entry.rev
      const committed = changes.map((c): CommittedChange => ({ ...c, rev: ++rev }))
      const fields = changedFields(entry.session, session)
      // Clustered, a status change alone still needs a rev of its own for the other instances.
      if (peers.shared && committed.length === 0 && fields !== undefined) rev++
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
          turn: peers.shared ? turnOf(next) : undefined
        })
        entry.rev = rev
        entry.reducer = next
        // The initial state is shared by all, and nothing to drop.
        if (next !== reducer.initial) registry.touch(entry, now)
        entry.session = { ...entry.session, ...fields, lastHeartbeat }
        if (fields !== undefined) {
          yield* registry.publishNotice(entry.session.project, { _tag: "updated", id: entry.session.id, fields, session: entry.session })
        }
        if (committed.length > 0) {
          yield* bus.publishArtifacts(entry.session.id, committed.map((change) => ({ rev: change.rev, change })))
        }
      }))
    })

  /** A sandbox's events: once per idempotency key, with its heartbeat. */
  const ingest = (id: string, events: ReadonlyArray<Event>, idempotencyKey?: string) =>
    registry.withSessionLock(id, (entry) =>
      Effect.gen(function*() {
        if (idempotencyKey !== undefined && (yield* store.hasIdempotencyKey(id, idempotencyKey))) return
        yield* apply(entry, events, { heartbeat: true, idempotencyKey })
      })).pipe(Effect.catchTag("PermissionConflict", Effect.die)) // only commands answer permissions

  return { reducerState, refuse, apply, ingest }
}

export type Ingest = ReturnType<typeof make>
