/**
 * The runners' port to other server instances (issue 20). Alone, a runner's job stream and its
 * offer live in this instance's memory only. Clustered (PostgreSQL), the instance holding a job
 * stream keeps a lease on the runner with its offer, so every instance can pick it, and a job
 * for it goes through the database to that instance (`rein_runner_jobs`, announced by NOTIFY).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Cluster } from "../Cluster.js"
import type { StoreError } from "../Domain/Errors.js"
import type { RunnerOffer } from "../Domain/Runner.js"

/** What travels to the instance holding a runner's stream: a job, or word that it was revoked. */
export type Delivery = { readonly job: unknown } | { readonly revoke: true }

export interface RunnerPeers {
  readonly shared: boolean
  readonly instance: string
  /** How often leases are renewed and missed deliveries picked up (ms). */
  readonly renewEvery: number
  readonly present: (runnerId: string, offer: RunnerOffer) => Effect.Effect<void, StoreError>
  readonly absent: (runnerId: string) => Effect.Effect<void, StoreError>
  /** Runners whose streams other instances (or this one) hold, and their offers. */
  readonly online: Effect.Effect<ReadonlyMap<string, { readonly instance: string; readonly offer: RunnerOffer }>, StoreError>
  readonly send: (instance: string, runnerId: string, delivery: Delivery) => Effect.Effect<void, StoreError>
  readonly take: Effect.Effect<ReadonlyArray<{ readonly runnerId: string; readonly delivery: Delivery }>, StoreError>
  /** Runs `handler` whenever deliveries are announced for this instance. */
  readonly onDeliveries: (handler: Effect.Effect<void>) => void
}

export const alone: RunnerPeers = {
  shared: false,
  instance: "alone",
  renewEvery: 60_000,
  present: () => Effect.void,
  absent: () => Effect.void,
  online: Effect.succeed(new Map()),
  send: (instance) => Effect.dieMessage(`no peer ${instance}: this instance is alone`),
  take: Effect.succeed([]),
  onDeliveries: () => {}
}

export const clustered = (cluster: typeof Cluster.Service): RunnerPeers => ({
  shared: true,
  instance: cluster.instance,
  renewEvery: Math.max(50, Math.floor(cluster.leaseTtl / 3)),
  present: (runnerId, offer) => cluster.runnerPresent(runnerId, JSON.stringify(offer)),
  absent: cluster.runnerAbsent,
  online: Effect.map(cluster.runnersPresent, (rows) =>
    new Map([...rows].map(([id, r]) => [id, { instance: r.instance, offer: JSON.parse(r.offer) as RunnerOffer }]))),
  send: (instance, runnerId, delivery) => cluster.sendJob(instance, runnerId, JSON.stringify(delivery)),
  take: Effect.map(cluster.takeJobs, (rows) => rows.map((r) => ({ runnerId: r.runnerId, delivery: JSON.parse(r.body) as Delivery }))),
  onDeliveries: cluster.onJobs
})

/** Clustered when the context holds a `Cluster` (the PostgreSQL store provides one), else alone. */
export const fromContext: Effect.Effect<RunnerPeers> = Effect.map(
  Effect.serviceOption(Cluster),
  Option.match({ onNone: () => alone, onSome: clustered })
)
