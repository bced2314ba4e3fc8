/**
 * The PostgreSQL store: the SQL store (`./Sql.ts`) in its PostgreSQL dialect
 * over a `pg` pool, with the `Cluster` service over the same pool, so any
 * number of server instances can share one database.
 */
import { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import pg from "pg"
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

/** Milliseconds a connection or a query may take before the store counts as unavailable. */
export const deadline = 5_000

/**
 * The pool, checked with a first query. A database that stops answering must turn into 503s,
 * not requests waiting forever (pg's default, for a connection as for a query on a connection
 * that went silent); the name shows the server's connections in pg_stat_activity.
 */
const pool = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const p = new pg.Pool({
        connectionString: url,
        connectionTimeoutMillis: deadline,
        query_timeout: deadline,
        keepAlive: true,
        application_name: "rein-server"
      })
      p.on("error", () => {})
      return p
    }),
    (p) => Effect.promise(() => p.end()).pipe(Effect.timeoutOption(1000))
  ).pipe(
    Effect.tap((p) =>
      Effect.tryPromise({
        try: () => p.query("SELECT 1"),
        catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
      })
    )
  )

/** Fails with a StoreError when the database cannot be reached or migrated. */
export const layer = (options: PgOptions): Layer.Layer<SessionStore | Cluster.Cluster, StoreError> =>
  Layer.effectContext(Effect.gen(function*() {
    const channel = yield* Cluster.channelName
    const store = yield* Sql.make(Sql.pg, { channel })
    const cluster = yield* Cluster.make({ url: options.url, channel, leaseTtl: options.leaseTtl ?? 10_000 })
    return Context.make(SessionStore, store).pipe(Context.add(Cluster.Cluster, cluster))
  }).pipe(StoreError.refail)).pipe(
    Layer.provide(PgClient.layerFromPool({ acquire: pool(options.url), applicationName: "rein-server" })),
    Layer.mapError((cause) => cause instanceof StoreError ? cause : new StoreError({ cause }))
  )
