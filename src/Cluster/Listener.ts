/**
 * The LISTEN connection on the cluster channel: a `pg` client of its own (a pooled connection
 * cannot stay listening), reconnecting with backoff, telling its instance when it (re)connects
 * and when it drops, and pinging itself to notice a connection that died silently.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import pg from "pg"
import { StoreError } from "../Domain/Errors.js"
import { type Announcement, decodeAnnouncement } from "./Protocol.js"

/** Every announcement but the pings, which the listener keeps to itself. */
export type Heard = Exclude<Announcement, { readonly type: "ping" }>

/** What an instance does with the cluster's announcements. None of these may fail. */
export interface Handlers {
  readonly message: (announcement: Heard) => Effect.Effect<void>
  /** After every (re)connection: whatever was announced meanwhile was missed. */
  readonly connected: Effect.Effect<void>
  /** The listening connection dropped: nothing live can be promised until `connected`. */
  readonly lost: Effect.Effect<void>
}

export interface ListenerOptions {
  readonly url: string
  readonly channel: string
  /** This instance's id: its own pings carry it. */
  readonly instance: string
  /** Milliseconds between self-pings; one not heard back within it means the connection is dead. */
  readonly pingInterval: number
  /** Sends a ping through another connection (the pool), so it is this one that is tested. */
  readonly ping: (a: Announcement) => Effect.Effect<unknown, unknown>
}

export interface Listener {
  /** Whether announcements are being received right now. */
  readonly isConnected: () => boolean
  /** Listens for the scope's life, reconnecting; returns once first connected (fails after 30 s). */
  readonly listen: (handlers: Handlers) => Effect.Effect<void, StoreError, Scope.Scope>
}

export const make = (options: ListenerOptions): Listener => {
  const { channel, instance, pingInterval } = options
  let connected = false
  /** The wait before the next reconnection attempt. */
  let delay = 250

  /**
   * One connection's life: LISTEN, hand over announcements, return when it drops. A connection
   * can also die silently (a NAT forgetting it): every few seconds the instance notifies itself,
   * and a listener that does not hear it within the interval is taken for dead.
   */
  const connection = (queue: Queue.Queue<Heard>, handlers: Handlers, first: Deferred.Deferred<void>) =>
    Effect.gen(function*() {
      const dropped = yield* Deferred.make<void>()
      let heard = 0
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new pg.Client({
          connectionString: options.url,
          keepAlive: true,
          keepAliveInitialDelayMillis: 10_000,
          connectionTimeoutMillis: 5_000,
          application_name: "rein-server listener"
        })),
        (client) =>
          Effect.sync(() => {
            // end() waits for the server's answer, which a dead connection never gives.
            ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
          }).pipe(Effect.zipRight(Effect.promise(() => client.end().catch(() => undefined))), Effect.timeoutOption(1000))
      )
      client.on("error", () => Deferred.unsafeDone(dropped, Effect.void))
      client.on("end", () => Deferred.unsafeDone(dropped, Effect.void))
      client.on("notification", (m) => {
        if (m.channel !== channel || m.payload === undefined) return
        const a = decodeAnnouncement(m.payload)
        if (a === undefined) return
        if (a.type !== "ping") queue.unsafeOffer(a)
        else if (a.instance === instance) heard = Math.max(heard, a.n)
      })
      yield* Effect.tryPromise(() => client.connect())
      yield* Effect.tryPromise(() => client.query(`LISTEN ${client.escapeIdentifier(channel)}`))
      connected = true
      delay = 250
      yield* handlers.connected
      yield* Deferred.succeed(first, undefined)
      let sent = 0
      const ping = Effect.gen(function*() {
        yield* Effect.sleep(pingInterval)
        if (heard < sent) return yield* Deferred.succeed(dropped, undefined)
        // Not awaited: a database that stopped answering must not stop the check itself.
        yield* options.ping({ type: "ping", instance, n: ++sent }).pipe(Effect.timeout(pingInterval), Effect.ignore, Effect.fork)
      })
      yield* Effect.raceFirst(Deferred.await(dropped), Effect.forever(ping))
    }).pipe(
      Effect.scoped,
      Effect.ensuring(Effect.suspend(() => {
        if (!connected) return Effect.void
        connected = false
        return handlers.lost
      }))
    )

  return {
    isConnected: () => connected,
    listen: (handlers) =>
      Effect.gen(function*() {
        const queue = yield* Queue.unbounded<Heard>()
        const first = yield* Deferred.make<void>()
        yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(queue), handlers.message)))
        // Reconnect after 0.25 s, backing off to every 5 s while the database stays away; a
        // connection that worked starts the backoff over.
        yield* connection(queue, handlers, first).pipe(
          Effect.tapErrorCause((cause) => Effect.logWarning("cluster listener lost its connection", cause)),
          Effect.ignore,
          Effect.zipRight(Effect.suspend(() => {
            const wait = delay
            delay = Math.min(5_000, delay * 2)
            return Effect.sleep(wait)
          })),
          Effect.forever,
          Effect.forkScoped
        )
        yield* Deferred.await(first).pipe(
          Effect.timeoutFail({
            duration: "30 seconds",
            onTimeout: () => new StoreError({ cause: new Error("could not LISTEN on the database within 30 s") })
          })
        )
      })
  }
}
