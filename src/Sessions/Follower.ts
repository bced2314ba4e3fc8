/**
 * Follower: what a clustered instance runs besides serving requests. It follows the other
 * instances' commits (catching a session up once per announcement burst), hands its sandboxes
 * the commands posted elsewhere, ends a local sandbox whose lease moved, keeps its leases alive
 * and sweeps sessions whose sandbox's instance died. Alone there is nothing to follow.
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { Cluster } from "../Cluster.js"
import type { EventBus } from "../EventBus.js"
import type { SessionStore } from "../SessionStore.js"
import type { Registry } from "./Registry.js"
import type { Sandboxes } from "./Sandboxes.js"

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly bus: typeof EventBus.Service
  readonly registry: Registry
  readonly sandboxes: Sandboxes
  /** The listener and the loops run here, and end with the service. */
  readonly background: Scope.Scope
}

/** Follow the other instances' changes, keep this instance's leases, sweep dead ones. */
export const join = (cluster: typeof Cluster.Service, { background, bus, registry, sandboxes, store }: Deps) => {
  const { adopt, entries, lookup, reload, withEntryLock, withSessionLock } = registry
  /** Sessions with a catch-up under way, and the highest rev announced for each meanwhile. */
  const catchingUp = new Map<string, number>()
  const log = (what: string) => Effect.catchAllCause((cause) => Effect.logWarning(what, cause))

  const catchUpTo = (id: string, target: number) =>
    // Adopted from an older read, a session may still be behind the announcement: catch up too.
    Effect.flatMap(lookup(id), (entry) => withEntryLock(entry, (e) => registry.catchUp(e, false, target))).pipe(
      Effect.catchTag("SessionNotFound", () => Effect.void),
      log(`could not follow session ${id}`)
    )

  /** One catch-up fiber per session at a time; announcements arriving meanwhile make it go again. */
  const scheduleCatchUp = (id: string, rev: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      const entry = entries.get(id)
      if (entry !== undefined && entry.rev >= rev) return Effect.void
      const pending = catchingUp.get(id)
      catchingUp.set(id, Math.max(pending ?? rev, rev))
      if (pending !== undefined) return Effect.void
      const loop: Effect.Effect<void> = Effect.suspend(() => {
        const target = catchingUp.get(id)
        return Effect.zipRight(
          catchUpTo(id, target ?? 0),
          Effect.suspend(() => catchingUp.get(id) === target ? Effect.sync(() => void catchingUp.delete(id)) : loop)
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
  const reconcile = Effect.gen(function*() {
    const stored = yield* store.list
    const ids = new Set<string>()
    for (const s of stored) {
      ids.add(s.session.id)
      const entry = entries.get(s.session.id)
      if (entry === undefined) yield* adopt(s)
      else if (s.rev > entry.rev) yield* scheduleCatchUp(s.session.id, s.rev)
    }
    for (const entry of Array.from(entries.values())) {
      if (!ids.has(entry.session.id)) {
        yield* withEntryLock(entry, reload).pipe(Effect.catchTag("SessionNotFound", () => Effect.void))
      }
    }
  }).pipe(log("could not catch up with the cluster"), Effect.zipRight(deliverCommands))

  /** A newer sandbox connection on another instance ends this one's. */
  const sandboxMoved = (id: string, instance: string) =>
    Effect.suspend(() => {
      const sandbox = entries.get(id)?.sandbox
      if (instance === cluster.instance || sandbox === undefined) return Effect.void
      // Announcements can arrive late (A -> B -> A quickly): the lease says who holds it now.
      return Effect.flatMap(cluster.holder(id), (lease) =>
        lease?.instance === cluster.instance && lease.connection === sandbox.connection
          ? Effect.void
          : sandboxes.dropSandbox(id, sandbox, true))
    }).pipe(log(`could not check the sandbox of ${id}`))

  /** Marks a session disconnected whose sandbox no instance holds any more. */
  const orphaned = (id: string) =>
    withSessionLock(id, sandboxes.disconnectIfUnheld).pipe(Effect.catchTag("SessionNotFound", () => Effect.void))

  /** Keeps this instance's leases alive; nothing else runs on this fiber, so nothing delays it. */
  const renew = Effect.gen(function*() {
    // Only sandboxes whose claim was stored before the renewal can be judged by it.
    const before = sandboxes.claims()
    const held = yield* cluster.renew
    // A lease whose connection is not here (its connect failed after the claim) is given back.
    for (const [id, connection] of held) {
      if (!sandboxes.isClaiming(connection) && entries.get(id)?.sandbox?.connection !== connection) {
        yield* cluster.release(id, connection).pipe(log(`could not release the lease of ${id}`))
      }
    }
    for (const entry of entries.values()) {
      const sandbox = entry.sandbox
      // This instance lost the lease (it could not renew in time): the sandbox must reconnect.
      if (sandbox !== undefined && sandbox.claimed <= before && held.get(entry.session.id) !== sandbox.connection) {
        yield* sandboxes.dropSandbox(entry.session.id, sandbox)
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
          ? scheduleCatchUp(a.id, a.rev)
          : a.type === "sandbox"
          ? sandboxMoved(a.id, a.instance)
          : a.type === "jobs"
          ? (a.instance === cluster.instance ? cluster.jobsArrived : Effect.void)
          : a.instance === cluster.instance
          ? deliverCommands
          : Effect.void,
      connected: reconcile,
      // Streams end rather than miss changes; their clients reconnect and resume.
      lost: bus.endAll
    }).pipe(Effect.provideService(Scope.Scope, background))
    const every = Schedule.spaced(Math.max(50, Math.floor(cluster.leaseTtl / 3)))
    yield* Effect.forkIn(Effect.repeat(renew, every), background)
    yield* Effect.forkIn(Effect.repeat(sweep, every), background)
  })
}
