/**
 * Sandboxes: a session's sandbox connecting (it takes the lease and makes the session live),
 * leaving (the session turns disconnected unless a newer connection holds it), and the commands
 * delivered to it. A session's status is written here and only here (`setStatus`,
 * `markDisconnected`); the reducer's own status changes travel with its commits (`Ingest`).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { Command, SandboxCommand } from "../Domain/Command.js"
import { NoSandbox } from "../Domain/Errors.js"
import type { SessionStatus } from "../Domain/Session.js"
import { completeReply } from "../Reducer.js"
import type { SessionStore } from "../SessionStore.js"
import type { SandboxFeed } from "../Sessions.js"
import type { Deadlines } from "./Deadlines.js"
import type { Ingest } from "./Ingest.js"
import type { Peers } from "./Peers.js"
import type { Entry, Registry, Sandbox } from "./Registry.js"

export interface Deps {
  readonly store: typeof SessionStore.Service
  readonly peers: Peers
  readonly registry: Registry
  readonly ingest: Ingest
  readonly timers: Deadlines
  /** Where work outliving a request runs (a store retry): it ends with the service. */
  readonly background: Scope.Scope
  /** Commands a sandbox may have unread before it counts as absent. */
  readonly subscriberBuffer: number
}

/** While the store is down: try again after 0.5 s, doubling up to every 30 s. */
export const storeRetry = Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("30 seconds")))

export const make = ({ background, ingest, peers, registry, store, subscriberBuffer, timers }: Deps) =>
  Effect.gen(function*() {
    const { entries, exclusive, publishNotice, withEntryLock, withSessionLock } = registry
    /** Sandboxes leaving (their session being marked disconnected): shutdown waits for them. */
    const leaving = yield* FiberSet.make()
    let connections = 0
    let claims = 0
    /** Sandbox connections between their lease claim and their arrival in `entries` (clustered). */
    const claiming = new Set<number>()

    /**
     * Clustered, a status is a commit of its own (a new rev, logged for the other instances,
     * refused if one of them wrote first); alone, a plain update.
     */
    const setStatus = (entry: Entry, status: SessionStatus, options?: { readonly always: boolean }) =>
      Effect.suspend(() => {
        const same = entry.session.status === status
        // Clustered, a connecting sandbox writes `live` even when this instance believes it is:
        // the write orders it after any `disconnected` racing in from the instance it left.
        if (same && (!peers.shared || options?.always !== true)) return Effect.void
        const id = entry.session.id
        const rev = peers.shared ? entry.rev + 1 : entry.rev
        const write = peers.shared
          ? store.commit(id, { rev, expectedRev: entry.rev, createdAt: entry.session.createdAt, status, changes: [] })
          : store.update(id, { status })
        return write.pipe(
          Effect.zipRight(Effect.suspend(() => {
            entry.rev = rev
            if (same) return Effect.void
            entry.session = { ...entry.session, status }
            return publishNotice(entry.session.project, { _tag: "updated", id, fields: { status }, session: entry.session })
          }))
        )
      })

    /**
     * A sandbox that went away is gone whatever the store says: memory and
     * watchers learn it at once, and the store is told as soon as it answers.
     * (A restart turns live sessions disconnected anyway.) Clustered, the other
     * instances must hear it from the store, so it is a plain status commit.
     */
    const markDisconnected = (entry: Entry) => {
      if (peers.shared) {
        // Checked under the row lock's ordering: a sandbox that meanwhile connected elsewhere wins.
        return Effect.flatMap(peers.holder(entry.session.id), (lease) =>
          lease === undefined ? setStatus(entry, "disconnected") : Effect.void)
      }
      const persist = Effect.suspend(() =>
        entry.removed || entry.session.status !== "disconnected"
          ? Effect.void
          : store.update(entry.session.id, { status: "disconnected" })
      )
      return Effect.suspend(() => {
        entry.session = { ...entry.session, status: "disconnected" }
        return publishNotice(entry.session.project, {
          _tag: "updated",
          id: entry.session.id,
          fields: { status: "disconnected" },
          session: entry.session
        })
      }).pipe(
        Effect.zipRight(persist),
        Effect.catchAll((e) =>
          Effect.logWarning(`could not persist ${entry.session.id} disconnected yet`, e).pipe(
            Effect.zipRight(persist.pipe(Effect.retry(storeRetry), Effect.forkIn(background)))
          )
        )
      )
    }

    /**
     * At start, alone: no sandbox can be connected yet, so a session the store has live or idle
     * lost its sandbox with the last process.
     */
    const disconnectedAtStart = (entry: Entry) =>
      Effect.suspend(() => {
        const { session } = entry
        if (peers.shared || (session.status !== "live" && session.status !== "idle")) return Effect.void
        return store.update(session.id, { status: "disconnected" }).pipe(
          Effect.zipRight(Effect.sync(() => void (entry.session = { ...session, status: "disconnected" })))
        )
      })

    /** Marks the session disconnected if it is live or idle and no sandbox holds it here. */
    const disconnectIfUnheld = (entry: Entry) => {
      const s = entry.session.status
      return entry.sandbox !== undefined || (s !== "live" && s !== "idle") ? Effect.void : markDisconnected(entry)
    }

    /**
     * The sandbox of `connection` left (already out of `entry.sandbox`): its lease is given back
     * and, unless a newer connection anywhere holds the session, the session is disconnected.
     */
    const sandboxLeft = (entry: Entry, connection: number) =>
      Effect.flatMap(peers.release(entry.session.id, connection), (left) =>
        left ? withEntryLock(entry, disconnectIfUnheld) : Effect.void)

    /** Ends a local sandbox stream whose lease is gone (`superseded`: to a newer sandbox); its close then changes nothing. */
    const dropSandbox = (id: string, sandbox: Sandbox, superseded = false) =>
      Effect.suspend(() => {
        const entry = entries.get(id)
        if (entry?.sandbox === sandbox) entry.sandbox = undefined
        if (superseded) sandbox.superseded = true
        return Queue.shutdown(sandbox.queue)
      })

    /**
     * On shutdown, every sandbox stream ends; their own closing then leaves the store alone.
     * Alone, the next start marks their sessions disconnected. Clustered, no start comes in this
     * instance's place: its sandboxes leave now, as they would one by one (bounded by 3 s).
     */
    const closeAll = Effect.suspend(() => {
      const local = Array.from(entries.values()).flatMap((entry) => entry.sandbox ? [{ entry, sandbox: entry.sandbox }] : [])
      const leave = !peers.shared ? Effect.void : Effect.forEach(local, ({ entry, sandbox }) =>
        Effect.suspend(() => {
          if (entry.sandbox === sandbox) entry.sandbox = undefined
          return Effect.ignore(sandboxLeft(entry, sandbox.connection))
        }), { concurrency: 8, discard: true }).pipe(Effect.timeout("3 seconds"), Effect.ignore)
      return Effect.zipRight(
        Effect.zipRight(leave, FiberSet.awaitEmpty(leaving).pipe(Effect.timeout("3 seconds"), Effect.ignore)),
        Effect.forEach(local, ({ sandbox }) => Queue.shutdown(sandbox.queue), { discard: true })
      )
    })

    /** The sandbox's command queue, live for the scope; a newer connection ends an older one. */
    const connect = (id: string) =>
      Effect.gen(function*() {
        const connection = ++connections
        const queue = yield* Queue.dropping<SandboxCommand>(subscriberBuffer)
        const sandbox: Sandbox = { connection, queue, claimed: 0, removed: false }
        // Acquired with its release, so no interruption can leave a sandbox nobody reads.
        yield* Effect.acquireRelease(
          withSessionLock(id, (entry) =>
            Effect.gen(function*() {
              // Lease first: no sweep may find the session live with nobody holding it.
              claiming.add(connection)
              yield* peers.claim(id, connection)
              yield* setStatus(entry, "live", { always: true })
              // A second sandbox stream closes the first (told it was superseded, so it does not
              // come back and take turns); the first's close then changes nothing.
              if (entry.sandbox !== undefined) {
                entry.sandbox.superseded = true
                yield* Queue.shutdown(entry.sandbox.queue)
              }
              entry.sandbox = sandbox
              sandbox.claimed = ++claims
              yield* timers.remove(id)
              return entry
            })).pipe(Effect.ensuring(Effect.sync(() => claiming.delete(connection)))),
          (entry) =>
            exclusive(entry, Effect.sync(() => {
              // A newer connection here already took its place: then nothing changes.
              if (registry.isClosing() || entry.sandbox?.connection !== connection) return false
              entry.sandbox = undefined
              return true
            })).pipe(
              Effect.flatMap((current) => current ? sandboxLeft(entry, connection) : Effect.void),
              Effect.catchTag("SessionNotFound", () => Effect.void),
              // Tracked, so a shutdown that starts meanwhile waits for it (the store must stay open).
              (leave) => Effect.flatMap(FiberSet.run(leaving, leave), Fiber.join),
              Effect.zipRight(Queue.shutdown(queue)),
              // Shutting down, the store may already be closed: the lease then expires on its own.
              Effect.catchAllCause((cause) =>
                registry.isClosing() ? Effect.void : Effect.logWarning(`could not mark ${id} disconnected`, cause)
              )
            )
        )
        return { commands: queue, removed: () => sandbox.removed, superseded: () => sandbox.superseded === true } satisfies SandboxFeed
      })

    /**
     * Delivers a command to the session's sandbox, recording what it changes (a prompt, a
     * permission reply, completed first). Nothing is applied or sent when it fails.
     */
    const command = (id: string, command: Command) =>
      withSessionLock(id, (entry) =>
        Effect.gen(function*() {
          // A sandbox whose stream is ending, or too far behind to take one more command, is absent.
          const sandbox = entry.sandbox !== undefined && !(yield* Queue.isShutdown(entry.sandbox.queue)) &&
              !isFull(entry.sandbox.queue, subscriberBuffer)
            ? entry.sandbox
            : undefined
          // Clustered, the sandbox may be connected to another instance.
          const lease = sandbox === undefined ? yield* peers.holder(id) : undefined
          const remote = lease !== undefined && lease.instance !== peers.instance ? lease.instance : undefined
          if (remote === undefined && sandbox === undefined) return yield* new NoSandbox({ id })
          let delivered: SandboxCommand
          if (command.type === "prompt") {
            yield* ingest.apply(entry, [{ type: "prompt", text: command.text }], { heartbeat: false })
            delivered = command
          } else if (command.type === "permission_reply") {
            // Completed against the request, so the sandbox and the artifact get the same answer.
            const reply = completeReply(yield* ingest.reducerState(entry), command)
            if (Either.isLeft(reply)) return yield* ingest.refuse(entry, reply.left)
            const { decision, optionId } = reply.right
            yield* ingest.apply(
              entry,
              [{ type: "permission_decision", requestId: command.requestId, decision, optionId: optionId ?? undefined }],
              { heartbeat: false }
            )
            delivered = { type: "permission_reply", requestId: command.requestId, decision, optionId }
          } else delivered = command
          if (remote !== undefined) yield* peers.send(remote, id, delivered)
          // Never blocks or fails: the queue was checked above, under the lock.
          else if (sandbox !== undefined) sandbox.queue.unsafeOffer(delivered)
        }))

    return {
      connect,
      command,
      setStatus,
      disconnectIfUnheld,
      disconnectedAtStart,
      dropSandbox,
      closeAll,
      /** How many lease claims were stored so far (clustered: a renewal judges only those before it). */
      claims: () => claims,
      /** Whether `connection` is between its lease claim and its arrival in `entries`. */
      isClaiming: (connection: number) => claiming.has(connection)
    }
  })

export type Sandboxes = Effect.Effect.Success<ReturnType<typeof make>>

const isFull = (queue: Queue.Queue<any>, capacity: number) => {
  const size = queue.unsafeSize()
  return size._tag === "Some" && size.value >= capacity
}
