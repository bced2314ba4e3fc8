/**
 * Peers: the port to other server instances sharing the store. `alone` answers for an instance
 * with nobody to share with (no leases to take, nobody to hear from); `clustered` is backed by
 * `Cluster` (PostgreSQL). The rest of Sessions calls the port the same way in either mode; what
 * differs by policy (whether memory or the store is the truth) reads `shared`.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Cluster, type Lease } from "../Cluster.js"
import type { LogEntry } from "../Cluster/Protocol.js"
import type { SandboxCommand } from "../Domain/Command.js"
import { StoreError } from "../Domain/Errors.js"

export type { Lease }

export interface Peers {
  /**
   * Whether other instances share the store: then the store, not this instance's memory, is the
   * truth, every write is a compare-and-set commit, and a session may appear or change unseen.
   */
  readonly shared: boolean
  /** This instance's id among its peers. */
  readonly instance: string
  /** Whether what peers announce is being heard right now (alone: always). */
  readonly isListening: () => boolean
  /** Fails while announcements may be missed: live streams promise what only a listening instance can keep. */
  readonly requireListening: Effect.Effect<void, StoreError>
  /** The session's changes committed after `afterRev` by any instance (alone nobody else writes: a failure). */
  readonly log: (id: string, createdAt: number, afterRev: number) => Effect.Effect<ReadonlyArray<LogEntry>, StoreError>
  /** Takes the session's sandbox lease for this connection (alone: nothing to take). */
  readonly claim: (id: string, connection: number) => Effect.Effect<void, StoreError>
  /** Gives the lease back; false when a newer connection holds it (alone: always true). */
  readonly release: (id: string, connection: number) => Effect.Effect<boolean, StoreError>
  /** Which instance's connection holds the session's sandbox (alone: none). */
  readonly holder: (id: string) => Effect.Effect<Lease | undefined, StoreError>
  /** Hands a command to the instance holding the sandbox. */
  readonly send: (instance: string, id: string, command: SandboxCommand) => Effect.Effect<void, StoreError>
  /** The cluster itself, for the follower (`Sessions/Follower.ts`); undefined alone. */
  readonly cluster: typeof Cluster.Service | undefined
}

/** The failure of a request that finds this instance deaf to its peers. */
export const notListening = () => new StoreError({ cause: new Error("lost the database's notifications; reconnecting") })

export const alone: Peers = {
  shared: false,
  instance: "alone",
  isListening: () => true,
  requireListening: Effect.void,
  log: (id) => Effect.fail(new StoreError({ cause: new Error(`session ${id} changed behind this server's back`) })),
  claim: () => Effect.void,
  release: () => Effect.succeed(true),
  holder: () => Effect.succeed(undefined),
  send: (instance) => Effect.dieMessage(`no peer ${instance}: this instance is alone`),
  cluster: undefined
}

export const clustered = (cluster: typeof Cluster.Service): Peers => ({
  shared: true,
  instance: cluster.instance,
  isListening: cluster.isConnected,
  requireListening: Effect.suspend(() => cluster.isConnected() ? Effect.void : Effect.fail(notListening())),
  log: cluster.log,
  claim: cluster.claim,
  release: cluster.release,
  holder: cluster.holder,
  send: cluster.send,
  cluster
})

/** Clustered when the context holds a `Cluster` (the PostgreSQL store provides one), else alone. */
export const fromContext: Effect.Effect<Peers> = Effect.map(
  Effect.serviceOption(Cluster),
  Option.match({ onNone: () => alone, onSome: clustered })
)
