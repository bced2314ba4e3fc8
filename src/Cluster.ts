/**
 * Cluster: what several server instances over one PostgreSQL database share
 * besides the store. The store logs every committed change to `rein_changes`
 * and announces it with NOTIFY in the same transaction; here is the other
 * half: a listener that reconnects (and says so, so its instance can catch
 * up), reading the log back, sandbox leases that expire with their instance,
 * and commands on their way to the instance holding a sandbox.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Listener from "./Cluster/Listener.js"
import { type Announcement, encodeAnnouncement, type LogBody, type LogEntry } from "./Cluster/Protocol.js"
import type { SandboxCommand } from "./Domain/Command.js"
import { StoreError } from "./Domain/Errors.js"
import { transaction } from "./SqlTransaction.js"

export class Cluster extends Context.Tag("@rein-ai/server/Cluster")<Cluster, {
  /** This instance's id (random per process). */
  readonly instance: string
  /** Milliseconds a sandbox lease lasts without renewal. */
  readonly leaseTtl: number
  /** Whether announcements are being received right now. */
  readonly isConnected: () => boolean
  /** Listens for the scope's life, reconnecting; returns once first connected (fails after 30 s). */
  readonly listen: (handlers: Listener.Handlers) => Effect.Effect<void, StoreError, Scope.Scope>
  /** The session's logged changes after `afterRev`, oldest first (of the session created at `createdAt`). */
  readonly log: (id: string, createdAt: number, afterRev: number) => Effect.Effect<ReadonlyArray<LogEntry>, StoreError>
  /** Takes the session's sandbox lease for this instance and tells the previous holder. */
  readonly claim: (id: string, connection: number) => Effect.Effect<void, StoreError>
  /** Gives the lease back; false when it is no longer this connection's. */
  readonly release: (id: string, connection: number) => Effect.Effect<boolean, StoreError>
  /** The live lease on the session's sandbox: which instance, which of its connections. */
  readonly holder: (id: string) => Effect.Effect<Lease | undefined, StoreError>
  /** Queues a command for the sandbox `instance` holds and tells it. */
  readonly send: (instance: string, id: string, command: SandboxCommand) => Effect.Effect<void, StoreError>
  /** Takes the commands waiting for this instance, in the order they were sent. */
  readonly takeCommands: Effect.Effect<ReadonlyArray<{ readonly id: string; readonly command: SandboxCommand }>, StoreError>
  /** Extends this instance's live leases; answers which it still holds (session id -> connection). */
  readonly renew: Effect.Effect<ReadonlyMap<string, number>, StoreError>
  /** Drops expired leases; answers the live or idle sessions no instance holds a sandbox for. */
  readonly orphans: Effect.Effect<ReadonlyArray<string>, StoreError>
  /** Forgets log entries and commands nobody can still need. */
  readonly prune: Effect.Effect<void, StoreError>
  /** Says this instance holds runner `runnerId`'s job stream, with what it offers (a lease, renewed by calling again). */
  readonly runnerPresent: (runnerId: string, offer: string) => Effect.Effect<void, StoreError>
  /** Gives runner `runnerId`'s lease back, if this instance holds it. */
  readonly runnerAbsent: (runnerId: string) => Effect.Effect<void, StoreError>
  /** The runners some instance holds a live lease on: which instance, what they offer (JSON). */
  readonly runnersPresent: Effect.Effect<ReadonlyMap<string, { readonly instance: string; readonly offer: string }>, StoreError>
  /** Queues a job (JSON) for runner `runnerId`, whose stream `instance` holds, and tells it. */
  readonly sendJob: (instance: string, runnerId: string, body: string) => Effect.Effect<void, StoreError>
  /** Takes the jobs waiting for this instance's runners, in the order they were sent. */
  readonly takeJobs: Effect.Effect<ReadonlyArray<{ readonly runnerId: string; readonly body: string }>, StoreError>
  /** What runs when jobs are announced for this instance (set by Runners; the follower calls it). */
  readonly jobsArrived: Effect.Effect<void>
  readonly onJobs: (handler: Effect.Effect<void>) => void
}>() {}

export interface Lease {
  readonly instance: string
  readonly connection: number
}

export interface ClusterOptions {
  readonly url: string
  readonly channel: string
  readonly leaseTtl: number
}

/** The NOTIFY channel of the database and schema the client is connected to (63 bytes at most). */
export const channelName = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ schema: string }>`SELECT current_schema() AS schema`
  return `rein_${row?.schema ?? "public"}`.slice(0, 63)
})

export const make = (options: ClusterOptions) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const instance = crypto.randomUUID()
    const { channel, leaseTtl } = options
    const pingInterval = Math.min(5_000, Math.max(200, Math.floor(leaseTtl / 2)))
    /** NOTIFYs every instance (sent on commit when inside a transaction). */
    const announce = (a: Announcement) => sql`SELECT pg_notify(${channel}, ${encodeAnnouncement(a)})`
    const ttl = `${Math.max(1, Math.round(leaseTtl))} milliseconds`
    const listener = Listener.make({ url: options.url, channel, instance, pingInterval, ping: announce })
    let jobsHandler: Effect.Effect<void> = Effect.void

    return Cluster.of({
      instance,
      leaseTtl,
      isConnected: listener.isConnected,
      listen: listener.listen,
      log: (id, createdAt, afterRev) =>
        sql<{ rev_from: string; rev: string; body: string }>`SELECT rev_from, rev, body FROM rein_changes
          WHERE session_id = ${id} AND created_at = ${createdAt} AND rev > ${afterRev} ORDER BY rev`.pipe(
          Effect.map((rows) =>
            rows.map((r) => ({ revFrom: Number(r.rev_from), rev: Number(r.rev), body: JSON.parse(r.body) as LogBody }))
          ),
          StoreError.refail
        ),
      claim: (id, connection) =>
        Effect.gen(function*() {
          yield* sql`INSERT INTO rein_sandboxes (session_id, instance, connection, expires_at)
            VALUES (${id}, ${instance}, ${connection}, now() + ${ttl}::interval)
            ON CONFLICT (session_id) DO UPDATE
            SET instance = excluded.instance, connection = excluded.connection, expires_at = excluded.expires_at`
          yield* announce({ type: "sandbox", id, instance })
        }).pipe(transaction(sql), StoreError.refail),
      release: (id, connection) =>
        sql`DELETE FROM rein_sandboxes WHERE session_id = ${id} AND instance = ${instance} AND connection = ${connection}
          RETURNING session_id`.pipe(Effect.map((rows) => rows.length > 0), StoreError.refail),
      holder: (id) =>
        sql<{ instance: string; connection: string }>`SELECT instance, connection FROM rein_sandboxes
          WHERE session_id = ${id} AND expires_at > now()`.pipe(
          Effect.map(([row]) => row && { instance: row.instance, connection: Number(row.connection) }),
          StoreError.refail
        ),
      send: (to, id, command) =>
        Effect.gen(function*() {
          yield* sql`INSERT INTO rein_commands (instance, session_id, body) VALUES (${to}, ${id}, ${JSON.stringify(command)})`
          yield* announce({ type: "commands", instance: to })
        }).pipe(transaction(sql), StoreError.refail),
      takeCommands: sql<{ session_id: string; body: string }>`WITH taken AS (
          DELETE FROM rein_commands WHERE instance = ${instance} RETURNING id, session_id, body
        ) SELECT session_id, body FROM taken ORDER BY id`.pipe(
        Effect.map((rows) => rows.map((r) => ({ id: r.session_id, command: JSON.parse(r.body) as SandboxCommand }))),
        StoreError.refail
      ),
      renew: sql<{ session_id: string; connection: string }>`UPDATE rein_sandboxes SET expires_at = now() + ${ttl}::interval
        WHERE instance = ${instance} AND expires_at > now() RETURNING session_id, connection`.pipe(
        Effect.map((rows) => new Map(rows.map((r) => [r.session_id, Number(r.connection)]))),
        StoreError.refail
      ),
      orphans: Effect.gen(function*() {
        yield* sql`DELETE FROM rein_sandboxes WHERE expires_at <= now()`
        const rows = yield* sql<{ id: string }>`SELECT id FROM sessions s WHERE status IN ('live', 'idle')
          AND NOT EXISTS (SELECT 1 FROM rein_sandboxes x WHERE x.session_id = s.id)`
        return rows.map((r) => r.id)
      }).pipe(StoreError.refail),
      prune: Effect.all([
        // Instances read the log within moments of a change; one that was away longer resyncs.
        sql`DELETE FROM rein_changes WHERE at < now() - interval '5 minutes'`,
        // A command no instance took within a minute went to an instance that is gone.
        sql`DELETE FROM rein_commands WHERE at < now() - interval '1 minute'`,
        sql`DELETE FROM rein_runner_jobs WHERE at < now() - interval '1 minute'`,
        sql`DELETE FROM rein_runner_presence WHERE expires_at <= now()`
      ], { discard: true }).pipe(StoreError.refail),
      runnerPresent: (runnerId, offer) =>
        sql`INSERT INTO rein_runner_presence (runner_id, instance, offer, expires_at)
          VALUES (${runnerId}, ${instance}, ${offer}, now() + ${ttl}::interval)
          ON CONFLICT (runner_id) DO UPDATE
          SET instance = excluded.instance, offer = excluded.offer, expires_at = excluded.expires_at`.pipe(
          Effect.asVoid,
          StoreError.refail
        ),
      runnerAbsent: (runnerId) =>
        sql`DELETE FROM rein_runner_presence WHERE runner_id = ${runnerId} AND instance = ${instance}`.pipe(
          Effect.asVoid,
          StoreError.refail
        ),
      runnersPresent: sql<{ runner_id: string; instance: string; offer: string }>`SELECT runner_id, instance, offer
        FROM rein_runner_presence WHERE expires_at > now()`.pipe(
        Effect.map((rows) => new Map(rows.map((r) => [r.runner_id, { instance: r.instance, offer: r.offer }]))),
        StoreError.refail
      ),
      sendJob: (to, runnerId, body) =>
        Effect.gen(function*() {
          yield* sql`INSERT INTO rein_runner_jobs (instance, runner_id, body) VALUES (${to}, ${runnerId}, ${body})`
          yield* announce({ type: "jobs", instance: to })
        }).pipe(transaction(sql), StoreError.refail),
      takeJobs: sql<{ runner_id: string; body: string }>`WITH taken AS (
          DELETE FROM rein_runner_jobs WHERE instance = ${instance} RETURNING id, runner_id, body
        ) SELECT runner_id, body FROM taken ORDER BY id`.pipe(
        Effect.map((rows) => rows.map((r) => ({ runnerId: r.runner_id, body: r.body }))),
        StoreError.refail
      ),
      jobsArrived: Effect.suspend(() => jobsHandler),
      onJobs: (handler) => {
        jobsHandler = handler
      }
    })
  })
