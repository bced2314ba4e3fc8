/**
 * Runners (issue 20): the runners the hub knows, which of them are online and what they offer,
 * and their job streams. A runner registers once (`POST /runners`: a token shown once, kept as
 * a hash), then connects out and holds `GET /runners/:id/jobs` open; the hub picks an online
 * runner that offers the agent and repository a session asks for and sends it the job. The
 * embedded runner of `rein-server` is the same client over loopback, registered in memory only.
 *
 * One instance: job streams are held by the instance they reached, so with several instances
 * (PostgreSQL) a runner serves the sessions created on the instance it is connected to.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { NoRunner, RunnerNotFound, type StoreError } from "./Domain/Errors.js"
import type { Job, RunnerInfo, RunnerOffer, StoredRunner } from "./Domain/Runner.js"
import { SessionStore } from "./SessionStore.js"

const hash = (token: string) => createHash("sha256").update(token).digest("hex")
const sameHash = (a: string, b: string) => timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"))

/** A runner's job stream while it is open. */
export interface JobFeed {
  readonly jobs: Queue.Dequeue<Job>
  /** True once the runner was revoked while connected: its stream says so and it stops. */
  readonly revoked: () => boolean
  /**
   * Once the stream ended: the sessions whose agents the runner said it ran when it went away
   * without a newer connection taking its place (empty when it stopped them first, as a runner
   * that stops cleanly does).
   */
  readonly orphaned: () => ReadonlyArray<string>
}

/** What a session asks for: an agent, maybe a repository, maybe a runner (id or name). */
export interface Want {
  readonly agent: string
  readonly repo?: string | undefined
  readonly runner?: string | undefined
}

export class Runners extends Context.Tag("@rein-ai/server/Runners")<Runners, {
  readonly list: Effect.Effect<ReadonlyArray<RunnerInfo>>
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
  readonly pick: (want: Want) => Effect.Effect<{ readonly runner: RunnerInfo; readonly repo: string }, NoRunner>
  /** Sends a job to an online runner. */
  readonly dispatch: (id: string, job: Job) => Effect.Effect<void, NoRunner>
  readonly info: (id: string) => Effect.Effect<RunnerInfo | undefined>
}>() {}

interface Known {
  readonly stored: StoredRunner
  readonly embedded: boolean
  offer: RunnerOffer | undefined
  connection: { readonly queue: Queue.Queue<Job>; revoked: boolean } | undefined
}

const noOffer: RunnerOffer = { agents: [], repos: [], sessions: 0, running: [], maxSessions: null, freeDisk: null }

export const make = Effect.gen(function*() {
  const store = yield* SessionStore
  const known = new Map<string, Known>()
  for (const stored of yield* store.runners.list) known.set(stored.id, { stored, embedded: false, offer: undefined, connection: undefined })

  const infoOf = (k: Known): RunnerInfo => {
    const offer = k.offer ?? noOffer
    return {
      id: k.stored.id,
      name: k.stored.name,
      online: k.connection !== undefined,
      embedded: k.embedded,
      agents: offer.agents,
      repos: offer.repos,
      sessions: offer.sessions,
      maxSessions: offer.maxSessions,
      freeDisk: offer.freeDisk
    }
  }

  /** `rrt_<id>.<secret>`: the id travels with the token, so a runner needs nothing else to connect. */
  const newToken = (id: string) => `rrt_${id}.${randomBytes(24).toString("base64url")}`
  const newId = () => `run_${randomBytes(6).toString("hex")}`

  const find = (id: string) => Effect.suspend(() => {
    const k = known.get(id)
    return k === undefined ? Effect.fail(new RunnerNotFound({ id })) : Effect.succeed(k)
  })

  const pick = (want: Want) =>
    Effect.suspend(() => {
      const all = [...known.values()]
      let candidates = all.filter((k) => k.connection !== undefined)
      if (want.runner !== undefined) {
        const named = all.find((k) => k.stored.id === want.runner) ?? all.find((k) => k.stored.name === want.runner)
        if (named === undefined) return Effect.fail(new NoRunner({ message: `no runner named ${want.runner}` }))
        if (named.connection === undefined) {
          return Effect.fail(new NoRunner({ message: `runner ${named.stored.name} is offline` }))
        }
        candidates = [named]
      }
      if (candidates.length === 0) {
        return Effect.fail(
          new NoRunner({
            message: "no runner is online: start one with rein-runner, or run rein-server without --no-runner"
          })
        )
      }
      const offering = candidates.filter((k) => (k.offer ?? noOffer).agents.some((a) => a.id === want.agent))
      if (offering.length === 0) {
        const offered = [...new Set(candidates.flatMap((k) => (k.offer ?? noOffer).agents.map((a) => a.id)))]
        return Effect.fail(
          new NoRunner({
            message: `no online runner offers agent ${want.agent}` + (offered.length > 0 ? ` (offered: ${offered.join(", ")})` : "")
          })
        )
      }
      const serving = want.repo === undefined
        ? offering.filter((k) => (k.offer ?? noOffer).repos.length > 0)
        : offering.filter((k) => (k.offer ?? noOffer).repos.includes(want.repo!))
      if (serving.length === 0) {
        const served = [...new Set(offering.flatMap((k) => (k.offer ?? noOffer).repos))]
        return Effect.fail(
          new NoRunner({
            message: want.repo === undefined
              ? `no runner offering ${want.agent} serves a repository (start it with --repos <dir>)`
              : `no runner offering ${want.agent} serves repository ${want.repo}` +
                (served.length > 0 ? ` (served: ${served.join(", ")})` : "")
          })
        )
      }
      const free = serving.filter((k) => {
        const o = k.offer ?? noOffer
        return o.maxSessions === null || o.sessions < o.maxSessions
      })
      if (free.length === 0) {
        return Effect.fail(new NoRunner({ message: `every runner that could start ${want.agent} is full` }))
      }
      const chosen = free.reduce((a, b) => (a.offer ?? noOffer).sessions <= (b.offer ?? noOffer).sessions ? a : b)
      return Effect.succeed({ runner: infoOf(chosen), repo: want.repo ?? (chosen.offer ?? noOffer).repos[0]! })
    })

  return Runners.of({
    list: Effect.sync(() => [...known.values()].map(infoOf)),
    info: (id) => Effect.sync(() => {
      const k = known.get(id)
      return k === undefined ? undefined : infoOf(k)
    }),
    register: (name) =>
      Effect.gen(function*() {
        const id = newId()
        const token = newToken(id)
        const stored: StoredRunner = { id, name, tokenHash: hash(token), createdAt: Date.now() }
        yield* store.runners.create(stored)
        known.set(stored.id, { stored, embedded: false, offer: undefined, connection: undefined })
        return { id: stored.id, name, token }
      }),
    registerEmbedded: (id, name) =>
      Effect.sync(() => {
        const token = newToken(id)
        const stored: StoredRunner = { id, name, tokenHash: hash(token), createdAt: Date.now() }
        known.set(stored.id, { stored, embedded: true, offer: undefined, connection: undefined })
        return { id: stored.id, token }
      }),
    revoke: (id) =>
      Effect.gen(function*() {
        const k = yield* find(id)
        if (!k.embedded) yield* store.runners.remove(id)
        known.delete(id)
        if (k.connection !== undefined) {
          k.connection.revoked = true
          yield* Queue.shutdown(k.connection.queue)
        }
      }),
    authenticate: (id, token) =>
      Effect.sync(() => {
        const k = known.get(id)
        return k !== undefined && sameHash(hash(token), k.stored.tokenHash)
      }),
    setOffer: (id, offer) =>
      Effect.map(find(id), (k) => {
        k.offer = offer
      }),
    connect: (id) =>
      Effect.gen(function*() {
        const k = yield* find(id)
        const queue = yield* Queue.unbounded<Job>()
        const previous = k.connection
        const connection = { queue, revoked: false }
        k.connection = connection
        // One stream per runner: a reconnect replaces a half-dead older one.
        if (previous !== undefined) yield* Queue.shutdown(previous.queue)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            if (k.connection === connection) k.connection = undefined
          }).pipe(Effect.zipRight(Queue.shutdown(queue)))
        )
        return {
          jobs: queue,
          revoked: () => connection.revoked,
          orphaned: () =>
            connection.revoked || (k.connection !== undefined && k.connection !== connection) ? [] : (k.offer?.running ?? [])
        }
      }),
    pick,
    dispatch: (id, job) =>
      Effect.suspend(() => {
        const k = known.get(id)
        if (k?.connection === undefined) {
          return Effect.fail(new NoRunner({ message: `runner ${k?.stored.name ?? id} is offline` }))
        }
        return Effect.asVoid(Queue.offer(k.connection.queue, job))
      })
  })
})

export const layer: Layer.Layer<Runners, StoreError, SessionStore> = Layer.effect(Runners, make)
