/**
 * Runners (issue 20): the runners the hub knows, which of them are online and what they offer,
 * and their job streams. A runner registers once (`POST /runners`: a token shown once, kept as
 * a hash), then connects out and holds `GET /runners/:id/jobs` open; the hub picks an online
 * runner that offers the agent and repository a session asks for and sends it the job. The
 * embedded runner of `rein-server` is the same client over loopback, registered in memory only.
 *
 * With several instances (`Runners/Peers`), the instance holding a runner's stream keeps a lease
 * on it with its offer, so any instance can pick it and send it jobs through the database.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { NoRunner, RunnerNotFound, type StoreError } from "./Domain/Errors.js"
import type { Job, RunnerInfo, RunnerOffer, StoredRunner } from "./Domain/Runner.js"
import * as Peers from "./Runners/Peers.js"
import { SessionStore } from "./SessionStore.js"

const hash = (token: string) => createHash("sha256").update(token).digest("hex")
const sameHash = (a: string, b: string) => timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"))

/** A runner's job stream while it is open. */
export interface JobFeed {
  readonly jobs: Queue.Dequeue<Job>
  /** True once the runner was revoked while connected: its stream says so and it stops. */
  readonly revoked: () => boolean
  /** True once a newer connection of the same runner took its place: its stream says so and it stops. */
  readonly superseded: () => boolean
  /**
   * Once the stream ended: the sessions whose agents the runner said it ran when it went away
   * without a newer connection taking its place, here or on another instance (empty when it
   * stopped them first, as a runner that stops cleanly does).
   */
  readonly orphaned: Effect.Effect<ReadonlyArray<string>, StoreError>
}

/** What a session asks for: an agent, maybe a repository, maybe a runner (id or name). */
export interface Want {
  readonly agent: string
  readonly repo?: string | undefined
  readonly runner?: string | undefined
}

export class Runners extends Context.Tag("@rein-ai/server/Runners")<Runners, {
  readonly list: Effect.Effect<ReadonlyArray<RunnerInfo>, StoreError>
  /** Registers a runner: its token is in the answer only, the store keeps the hash. */
  readonly register: (name: string) => Effect.Effect<{ readonly id: string; readonly name: string; readonly token: string }, StoreError>
  /** The server's own runner: known until the server stops, never stored. */
  readonly registerEmbedded: (id: string, name: string) => Effect.Effect<{ readonly id: string; readonly token: string }>
  /** Forgets the runner: its token stops working and its job stream ends. */
  readonly revoke: (id: string) => Effect.Effect<void, RunnerNotFound | StoreError>
  /** Whether `token` is runner `id`'s. */
  readonly authenticate: (id: string, token: string) => Effect.Effect<boolean>
  readonly setOffer: (id: string, offer: RunnerOffer) => Effect.Effect<void, RunnerNotFound>
  /** The runner's job stream for the scope; a newer connection ends an older one. */
  readonly connect: (id: string) => Effect.Effect<JobFeed, RunnerNotFound, Scope.Scope>
  /** The online runner to start `want` on, and the repository it will use. */
  readonly pick: (want: Want) => Effect.Effect<{ readonly runner: RunnerInfo; readonly repo: string }, NoRunner | StoreError>
  /** Sends a job to an online runner (on whichever instance holds its stream). */
  readonly dispatch: (id: string, job: Job) => Effect.Effect<void, NoRunner | StoreError>
}>() {}

interface Known {
  readonly stored: StoredRunner
  readonly embedded: boolean
  offer: RunnerOffer | undefined
  connection: { readonly queue: Queue.Queue<Job>; revoked: boolean; superseded: boolean } | undefined
}

/** A runner as every instance sees it: online here, on another instance, or not at all. */
interface View {
  readonly stored: Pick<StoredRunner, "id" | "name">
  readonly embedded: boolean
  readonly offer: RunnerOffer
  /** `here`, another instance's id, or undefined: offline. */
  readonly at: string | undefined
}

const noOffer: RunnerOffer = { agents: [], repos: [], sessions: 0, running: [], maxSessions: null, freeDisk: null }

const infoOf = (v: View): RunnerInfo => ({
  id: v.stored.id,
  name: v.stored.name,
  online: v.at !== undefined,
  embedded: v.embedded,
  agents: v.offer.agents,
  repos: v.offer.repos,
  sessions: v.offer.sessions,
  maxSessions: v.offer.maxSessions,
  freeDisk: v.offer.freeDisk
})

/** The online runner for `want` among `all`, or why there is none. */
const choose = (all: ReadonlyArray<View>, want: Want): { readonly view: View; readonly repo: string } | NoRunner => {
  let candidates = all.filter((v) => v.at !== undefined)
  if (want.runner !== undefined) {
    const named = all.find((v) => v.stored.id === want.runner) ?? all.find((v) => v.stored.name === want.runner)
    if (named === undefined) return new NoRunner({ message: `no runner named ${want.runner}` })
    if (named.at === undefined) return new NoRunner({ message: `runner ${named.stored.name} is offline` })
    candidates = [named]
  }
  if (candidates.length === 0) {
    return new NoRunner({ message: "no runner is online: start one with rein-runner, or run rein-server without --no-runner" })
  }
  const offering = candidates.filter((v) => v.offer.agents.some((a) => a.id === want.agent))
  if (offering.length === 0) {
    const offered = [...new Set(candidates.flatMap((v) => v.offer.agents.map((a) => a.id)))]
    return new NoRunner({
      message: `no online runner offers agent ${want.agent}` + (offered.length > 0 ? ` (offered: ${offered.join(", ")})` : "")
    })
  }
  const serving = want.repo === undefined
    ? offering.filter((v) => v.offer.repos.length > 0)
    : offering.filter((v) => v.offer.repos.includes(want.repo!))
  if (serving.length === 0) {
    const served = [...new Set(offering.flatMap((v) => v.offer.repos))]
    return new NoRunner({
      message: want.repo === undefined
        ? `no runner offering ${want.agent} serves a repository (start it with --repos <dir>)`
        : `no runner offering ${want.agent} serves repository ${want.repo}` + (served.length > 0 ? ` (served: ${served.join(", ")})` : "")
    })
  }
  const free = serving.filter((v) => v.offer.maxSessions === null || v.offer.sessions < v.offer.maxSessions)
  if (free.length === 0) return new NoRunner({ message: `every runner that could start ${want.agent} is full` })
  const view = free.reduce((a, b) => a.offer.sessions <= b.offer.sessions ? a : b)
  return { view, repo: want.repo ?? view.offer.repos[0]! }
}

export const make = Effect.gen(function*() {
  const store = yield* SessionStore
  const peers = yield* Peers.fromContext
  const known = new Map<string, Known>()
  const remember = (stored: StoredRunner) => {
    if (!known.has(stored.id)) known.set(stored.id, { stored, embedded: false, offer: undefined, connection: undefined })
  }
  for (const stored of yield* store.runners.list) remember(stored)

  /** Every runner with where it is online. Clustered, registrations and leases are read from the database. */
  const views: Effect.Effect<ReadonlyArray<View>, StoreError> = Effect.gen(function*() {
    if (!peers.shared) {
      return [...known.values()].map((k): View => ({ ...k, offer: k.offer ?? noOffer, at: k.connection ? "here" : undefined }))
    }
    const registered = yield* store.runners.list
    const online = yield* peers.online
    for (const r of registered) remember(r)
    // Registered now (a runner revoked elsewhere is gone from the store), or this instance's own.
    const ids = new Set(registered.map((r) => r.id))
    return [...known.values()].filter((k) => k.embedded || ids.has(k.stored.id)).map((k): View => {
      if (k.connection !== undefined) return { ...k, offer: k.offer ?? noOffer, at: "here" }
      const there = online.get(k.stored.id)
      return { ...k, offer: there?.offer ?? noOffer, at: there?.instance }
    })
  })

  /** `rrt_<id>.<secret>`: the id travels with the token, so a runner needs nothing else to connect. */
  const newToken = (id: string) => `rrt_${id}.${randomBytes(24).toString("base64url")}`
  const newId = () => `run_${randomBytes(6).toString("hex")}`

  /** The runner, also one registered on another instance since this one read the store. */
  const lookup = (id: string) =>
    Effect.gen(function*() {
      if (!known.has(id)) for (const stored of yield* Effect.orElseSucceed(store.runners.list, () => [])) remember(stored)
      return known.get(id)
    })
  const find = (id: string) =>
    Effect.flatMap(lookup(id), (k) => k === undefined ? Effect.fail(new RunnerNotFound({ id })) : Effect.succeed(k))

  /** Ends a runner's local stream, saying it was revoked. */
  const endRevoked = (k: Known) =>
    Effect.suspend(() => {
      known.delete(k.stored.id)
      if (k.connection === undefined) return Effect.void
      k.connection.revoked = true
      return Queue.shutdown(k.connection.queue)
    })

  /** What other instances sent this one's runners. */
  const deliver = Effect.gen(function*() {
    for (const { delivery, runnerId } of yield* peers.take) {
      const k = known.get(runnerId)
      if (k === undefined) continue
      if ("revoke" in delivery) yield* endRevoked(k)
      // A stream ending meanwhile takes nothing (offering to it would interrupt this loop).
      else if (k.connection !== undefined) k.connection.queue.unsafeOffer(delivery.job as Job)
    }
  }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not take the jobs sent to this instance's runners", cause)))

  if (peers.shared) {
    peers.onDeliveries(deliver)
    // Leases renewed; deliveries whose announcement was missed picked up.
    const renew = Effect.gen(function*() {
      for (const k of known.values()) if (k.connection !== undefined) yield* peers.present(k.stored.id, k.offer ?? noOffer)
    }).pipe(Effect.catchAllCause((cause) => Effect.logWarning("could not renew this instance's runner leases", cause)))
    yield* Effect.forkScoped(Effect.repeat(Effect.zipRight(renew, deliver), Schedule.spaced(peers.renewEvery)))
  }

  return Runners.of({
    list: Effect.map(views, (all) => all.map(infoOf)),
    register: (name) =>
      Effect.gen(function*() {
        const id = newId()
        const token = newToken(id)
        const stored: StoredRunner = { id, name, tokenHash: hash(token), createdAt: Date.now() }
        yield* store.runners.create(stored)
        remember(stored)
        return { id, name, token }
      }),
    registerEmbedded: (id, name) =>
      Effect.sync(() => {
        const token = newToken(id)
        const stored: StoredRunner = { id, name, tokenHash: hash(token), createdAt: Date.now() }
        known.set(id, { stored, embedded: true, offer: undefined, connection: undefined })
        return { id, token }
      }),
    revoke: (id) =>
      Effect.gen(function*() {
        const k = yield* find(id)
        if (!k.embedded) yield* store.runners.remove(id)
        if (k.connection === undefined && peers.shared) {
          // Its stream may be held elsewhere: that instance ends it.
          const there = (yield* peers.online).get(id)
          if (there !== undefined) yield* peers.send(there.instance, id, { revoke: true })
        }
        yield* endRevoked(k)
      }),
    authenticate: (id, token) =>
      Effect.gen(function*() {
        const k = yield* lookup(id)
        if (k === undefined || !sameHash(hash(token), k.stored.tokenHash)) return false
        // Clustered, it may have been revoked on another instance: the store says whether it still is.
        if (!peers.shared || k.embedded) return true
        const registered = yield* Effect.orElseSucceed(store.runners.list, () => undefined)
        if (registered === undefined || registered.some((r) => r.id === id)) return true
        yield* endRevoked(k)
        return false
      }),
    setOffer: (id, offer) =>
      Effect.flatMap(find(id), (k) => {
        k.offer = offer
        return k.connection === undefined ? Effect.void : Effect.ignore(peers.present(id, offer))
      }),
    connect: (id) =>
      Effect.gen(function*() {
        const k = yield* find(id)
        const queue = yield* Queue.unbounded<Job>()
        const previous = k.connection
        const connection = { queue, revoked: false, superseded: false }
        k.connection = connection
        // One stream per runner: a reconnect replaces a half-dead older one, which is told so (two
        // processes run with one token would otherwise take the stream from each other forever).
        if (previous !== undefined) {
          previous.superseded = true
          yield* Queue.shutdown(previous.queue)
        }
        yield* Effect.ignore(peers.present(id, k.offer ?? noOffer))
        yield* Effect.addFinalizer(() =>
          Effect.suspend(() => {
            if (k.connection !== connection) return Queue.shutdown(queue)
            k.connection = undefined
            return Queue.shutdown(queue).pipe(Effect.zipRight(Effect.ignore(peers.absent(id))))
          })
        )
        return {
          jobs: queue,
          revoked: () => connection.revoked,
          superseded: () => connection.superseded,
          orphaned: Effect.suspend(() => {
            if (connection.revoked || k.connection !== undefined) return Effect.succeed([])
            const running = k.offer?.running ?? []
            if (running.length === 0 || !peers.shared) return Effect.succeed(running)
            return Effect.map(peers.online, (online) => online.has(id) ? [] : running)
          })
        }
      }),
    pick: (want) =>
      Effect.flatMap(views, (all) => {
        const chosen = choose(all, want)
        return chosen instanceof NoRunner ? Effect.fail(chosen) : Effect.succeed({ runner: infoOf(chosen.view), repo: chosen.repo })
      }),
    dispatch: (id, job) =>
      Effect.gen(function*() {
        const k = known.get(id)
        // An unbounded queue takes it, unless its stream is ending: then the runner is as good as offline.
        if (k?.connection !== undefined && k.connection.queue.unsafeOffer(job)) return
        const there = peers.shared ? (yield* peers.online).get(id) : undefined
        if (there === undefined) return yield* new NoRunner({ message: `runner ${k?.stored.name ?? id} is offline` })
        yield* peers.send(there.instance, id, { job })
      }).pipe(Effect.asVoid)
  })
})

export const layer: Layer.Layer<Runners, StoreError, SessionStore> = Layer.scoped(Runners, make)
