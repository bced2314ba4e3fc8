/**
 * The PostgreSQL store: the SQL store (`./Sql.ts`) in its PostgreSQL dialect
 * over a `pg` pool, with the `Cluster` service over the same pool, so any
 * number of server instances can share one database.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Cluster from "../Cluster.js"
import { StoreError } from "../Domain/Errors.js"
import { SessionStore } from "../SessionStore.js"
import * as Sql from "./Sql.js"

export interface PgOptions {
  /** A connection URL, `postgres://user:password@host:port/database`. */
  readonly url: string
  /** Milliseconds a sandbox lease lasts: how soon a dead instance's sessions turn disconnected. Default 10 000. */
  readonly leaseTtl?: number | undefined
}

/** Fails with a StoreError when the database cannot be reached or migrated. */
export const layer = (options: PgOptions): Layer.Layer<SessionStore | Cluster.Cluster, StoreError> =>
  Layer.effectContext(Effect.gen(function*() {
    const channel = yield* Cluster.channelName
    const store = yield* Sql.make(Sql.pg, { channel })
    const cluster = yield* Cluster.make({ url: options.url, channel, leaseTtl: options.leaseTtl ?? 10_000 })
    return Context.make(SessionStore, store).pipe(Context.add(Cluster.Cluster, cluster))
  }).pipe(Effect.mapError((cause) => cause instanceof StoreError ? cause : new StoreError({ cause })))).pipe(
    // A database that stops answering must turn into 503s, not requests waiting on a connection
    // forever (pg's default); the name shows the server's connections in pg_stat_activity.
    Layer.provide(PgClient.layer({ url: Redacted.make(options.url), connectTimeout: "5 seconds", applicationName: "rein-server" })),
    Layer.mapError((cause) => cause instanceof StoreError ? cause : new StoreError({ cause }))
  )
