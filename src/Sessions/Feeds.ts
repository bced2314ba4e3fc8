/**
 * Feeds: what readers get. Plain reads (the list, a session, its artifacts), and feeds: a
 * snapshot with live notices newer than it, gap-free because the subscription is taken before
 * the snapshot is read and notices the snapshot holds are skipped.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Artifact } from "../Domain/Artifact.js"
import { SessionNotFound } from "../Domain/Errors.js"
import type { Session } from "../Domain/Session.js"
import { type ArtifactNotice, type EventBus, Gate, queueSink, type SessionNotice } from "../EventBus.js"
import type { PageQuery, SessionStore } from "../SessionStore.js"
import type { ArtifactStreamItem, Feed, SessionStreamItem } from "../Sessions.js"
import * as Attention from "./Attention.js"
import type { SessionFilter } from "./Attention.js"
import type { Peers } from "./Peers.js"
import type { Registry } from "./Registry.js"

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly bus: typeof EventBus.Service
  readonly peers: Peers
  readonly registry: Registry
  /** Notices a subscriber may have unread before it is cut off. */
  readonly subscriberBuffer: number
}

export const make = ({ bus, peers, registry, store, subscriberBuffer }: Deps) => {
  const { entries, lookup } = registry

  const list = (filter?: SessionFilter) =>
    Effect.map(
      // Clustered, the store is the one list all instances agree on at this moment.
      peers.shared
        ? Effect.map(store.list, (stored) => stored.map((s) => s.session))
        : Effect.sync(() => Array.from(entries.values(), (e) => e.session)),
      (all) => all.filter((s) => Attention.matches(filter, s))
    )

  const get = (id: string) =>
    peers.shared
      ? Effect.flatMap(store.get(id), (s) => s === undefined ? Effect.fail(new SessionNotFound({ id })) : Effect.succeed(s.session))
      : Effect.map(lookup(id), (e) => e.session)

  /**
   * `lastEventId`: resume (all from it, and older ones changed since it was created). Otherwise
   * `tail`: the last `tail` and the older ones still changing; neither: every artifact.
   */
  const openArtifacts = (id: string, lastEventId?: number, tail?: number) =>
    Effect.gen(function*() {
      yield* peers.requireListening
      yield* lookup(id)
      // Subscribe before reading history: nothing committed meanwhile can fall in between.
      const gate = new Gate<ArtifactNotice>(subscriberBuffer)
      yield* bus.subscribeArtifacts(id, gate)
      yield* lookup(id)
      const { artifacts, rev } = yield* (lastEventId === undefined && tail !== undefined
        ? store.tail(id, tail)
        : store.artifacts(id, lastEventId))
      return {
        snapshot: artifacts,
        // Changes the snapshot already holds are skipped: no duplicate.
        attach: (sink) => gate.open(sink, (n) => n.rev > rev)
      } satisfies Feed<Artifact, ArtifactNotice>
    })

  const openSessions = (filter?: SessionFilter) =>
    Effect.gen(function*() {
      yield* peers.requireListening
      const gate = new Gate<SessionNotice>(subscriberBuffer)
      yield* bus.subscribeSessions(gate)
      const since = registry.listRev()
      const snapshot: Array<Session> = []
      for (const e of entries.values()) if (Attention.matches(filter, e.session)) snapshot.push(e.session)
      const project = filter?.project
      return {
        snapshot,
        attach: (sink) =>
          gate.open(
            filter?.attention === true ? Attention.view(snapshot, sink) : sink,
            (n) => n.rev > since && (project === undefined || n.project === project)
          )
      } satisfies Feed<Session, SessionNotice>
    })

  /** A feed as an Effect Stream: snapshots, `complete`, then live items from a bounded queue. */
  const asStream = <S, N, A>(feed: Feed<S, N>, snapshot: (s: S) => A, live: (n: N) => A) =>
    Effect.gen(function*() {
      const { sink, stream } = yield* queueSink<N>(subscriberBuffer)
      yield* feed.attach(sink)
      return Stream.fromIterable(feed.snapshot).pipe(
        Stream.map(snapshot),
        Stream.concat(Stream.succeed({ _tag: "complete" } as A)),
        Stream.concat(Stream.map(stream, live))
      )
    })

  return {
    list,
    get,
    sandboxTokenHash: (id: string) => Effect.map(lookup(id), (e) => e.sandboxTokenHash),
    artifacts: (id: string) => Effect.flatMap(lookup(id), () => store.artifacts(id)).pipe(Effect.map((s) => s.artifacts)),
    artifactsPage: (id: string, query: PageQuery) => Effect.flatMap(lookup(id), () => store.page(id, query)),
    openArtifacts,
    openSessions,
    watchArtifacts: (id: string, lastEventId?: number, tail?: number) =>
      Effect.flatMap(openArtifacts(id, lastEventId, tail), (feed) =>
        asStream(feed, (artifact): ArtifactStreamItem => ({ _tag: "snapshot", artifact }), (n): ArtifactStreamItem => ({
          _tag: "change",
          change: n.change
        }))),
    watchSessions: (filter?: SessionFilter) =>
      Effect.flatMap(openSessions(filter), (feed) =>
        asStream(feed, (session): SessionStreamItem => ({ _tag: "snapshot", session }), (notice): SessionStreamItem => ({
          _tag: "notice",
          notice
        }))),
    // The listener first: a database that stopped answering would leave the ping hanging.
    health: Effect.zipRight(peers.requireListening, store.ping)
  }
}
