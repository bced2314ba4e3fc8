/**
 * Sessions: the use cases. Create and remove sessions, connect sandboxes,
 * deliver commands, ingest events (decode -> Reducer -> SessionStore commit
 * -> EventBus publish, one session at a time), and the bootstrap timers.
 *
 * This module holds the service's interface and wires its parts (docs/architecture.md):
 * `Sessions/Registry` (what memory holds of each session), `Ingest`, `Sandboxes`, `Lifecycle`,
 * `Feeds`, and `Peers` (the other instances, or nobody) with its `Follower`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Artifact, CommittedChange } from "./Domain/Artifact.js"
import type { Command, SandboxCommand } from "./Domain/Command.js"
import type {
  InvalidInput,
  NoSandbox,
  PermissionConflict,
  SessionExists,
  SessionNotFound,
  StoreError
} from "./Domain/Errors.js"
import type { Event } from "./Domain/Event.js"
import type { Session } from "./Domain/Session.js"
import { type ArtifactNotice, EventBus, type SessionNotice, type Sink, type SlowConsumer } from "./EventBus.js"
import { Reducer } from "./Reducer.js"
import { type Page, type PageQuery, SessionStore } from "./SessionStore.js"
import type { SessionFilter } from "./Sessions/Attention.js"
export type { SessionFilter }
import * as Deadlines from "./Sessions/Deadlines.js"
import * as Feeds from "./Sessions/Feeds.js"
import * as Follower from "./Sessions/Follower.js"
import * as Ingest from "./Sessions/Ingest.js"
import * as Lifecycle from "./Sessions/Lifecycle.js"
import * as Peers from "./Sessions/Peers.js"
import * as Registry from "./Sessions/Registry.js"
import * as Sandboxes from "./Sessions/Sandboxes.js"

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
  /** Sessions oldest first, optionally of one project, or only those needing someone. */
  readonly list: (filter?: SessionFilter) => Effect.Effect<ReadonlyArray<Session>, StoreError>
  readonly get: (id: string) => Effect.Effect<Session, SessionNotFound | StoreError>
  readonly create: (
    id: string,
    project: string | null,
    options?: Lifecycle.CreateOptions
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
  /** One page of the artifacts (before or after a seq, or the newest), and whether more lie beyond it. */
  readonly artifactsPage: (id: string, query: PageQuery) => Effect.Effect<Page, SessionNotFound | StoreError>
  /**
   * The artifacts (all; the resume set after `lastEventId`; or, not resuming, the last `tail` and
   * the older ones still changing) and their live changes, gap-free.
   */
  readonly openArtifacts: (
    id: string,
    lastEventId?: number,
    tail?: number
  ) => Effect.Effect<Feed<Artifact, ArtifactNotice>, SessionNotFound | StoreError, Scope.Scope>
  /** The sessions (those `filter` admits) and their live changes, gap-free. */
  readonly openSessions: (filter?: SessionFilter) => Effect.Effect<Feed<Session, SessionNotice>, StoreError, Scope.Scope>
  /** `openArtifacts` as a Stream: snapshots, `complete`, then live changes. */
  readonly watchArtifacts: (
    id: string,
    lastEventId?: number,
    tail?: number
  ) => Effect.Effect<Stream.Stream<ArtifactStreamItem, SlowConsumer>, SessionNotFound | StoreError, Scope.Scope>
  readonly watchSessions: (
    filter?: SessionFilter
  ) => Effect.Effect<Stream.Stream<SessionStreamItem, SlowConsumer>, StoreError, Scope.Scope>
  readonly health: Effect.Effect<void, StoreError>
}>() {}

/** A sandbox's commands; once they end, `removed` tells whether it was because the session is gone. */
export interface SandboxFeed {
  readonly commands: Queue.Dequeue<SandboxCommand>
  /** True once the session was removed (deleted, expired, or removed on another instance) while connected. */
  readonly removed: () => boolean
  /** True once a newer sandbox connection (here or on another instance) took the session over. */
  readonly superseded: () => boolean
}

export const make = (options: SessionsOptions) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const bus = yield* EventBus
    const reducer = yield* Reducer
    /** Other instances sharing the store (over PostgreSQL, see `Cluster.ts`), or nobody. */
    const peers = yield* Peers.fromContext
    /** Background work (store retries, following the cluster) that ends with the service. */
    const background = yield* Effect.scope
    /** Bootstrap deadlines of sessions still waiting for their sandbox. */
    const timers = yield* Deadlines.make((id) => lifecycle.expireBootstrap(id))
    const idleEvictAfter = Math.max(1, options.idleEvictAfter ?? 60_000)
    const registry = Registry.make({
      bootstrapTimeout: options.bootstrapTimeout,
      residentSessions: Math.max(0, options.residentSessions ?? 1000),
      idleEvictAfter
    }, { store, bus, reducer, peers, timers })
    const ingest = Ingest.make({ store, bus, reducer, peers, registry })
    const sandboxes = yield* Sandboxes.make({
      store,
      peers,
      registry,
      ingest,
      timers,
      background,
      subscriberBuffer: options.subscriberBuffer
    })
    const feeds = Feeds.make({ store, bus, peers, registry, subscriberBuffer: options.subscriberBuffer })
    const lifecycle = Lifecycle.make({ store, reducer, peers, registry, sandboxes, timers, bootstrapTimeout: options.bootstrapTimeout })

    // Shutting down runs in reverse: the follower and the eviction loop stop first (forked into
    // `background` after this finalizer), then the sandboxes' streams end, then the timers stop.
    yield* Effect.addFinalizer(() => lifecycle.shutdown)
    yield* lifecycle.start
    if (peers.cluster !== undefined) yield* Follower.join(peers.cluster, { store, bus, registry, sandboxes, background })
    yield* Effect.forkIn(
      Effect.repeat(registry.evictIdle, Schedule.spaced(Math.min(30_000, Math.max(50, Math.floor(idleEvictAfter / 2))))),
      background
    )

    return Sessions.of({
      list: feeds.list,
      get: feeds.get,
      sandboxTokenHash: feeds.sandboxTokenHash,
      create: lifecycle.create,
      remove: lifecycle.remove,
      connectSandbox: sandboxes.connect,
      command: sandboxes.command,
      ingest: ingest.ingest,
      artifacts: feeds.artifacts,
      artifactsPage: feeds.artifactsPage,
      openArtifacts: feeds.openArtifacts,
      openSessions: feeds.openSessions,
      watchArtifacts: feeds.watchArtifacts,
      watchSessions: feeds.watchSessions,
      health: feeds.health
    })
  })

export const layer = (options: SessionsOptions): Layer.Layer<Sessions, StoreError, SessionStore | EventBus | Reducer> =>
  Layer.scoped(Sessions, make(options))
