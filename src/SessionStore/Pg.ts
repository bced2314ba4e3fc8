/**
 * The PostgreSQL store: the SQL store (`./Sql.ts`) in its PostgreSQL dialect
 * over a `pg` pool. One server instance per database for now.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { StoreError } from "../Domain/Errors.js"
import { SessionStore } from "../SessionStore.js"
import * as Sql from "./Sql.js"

export interface PgOptions {
  /** A connection URL, `postgres://user:password@host:port/database`. */
  readonly url: string
}

/** Fails with a StoreError when the database cannot be reached or migrated. */
export const layer = (options: PgOptions): Layer.Layer<SessionStore, StoreError> =>
  Layer.effect(SessionStore, Sql.make(Sql.pg).pipe(Effect.mapError((cause) => new StoreError({ cause })))).pipe(
    Layer.provide(PgClient.layer({ url: Redacted.make(options.url) })),
    Layer.mapError((cause) => cause instanceof StoreError ? cause : new StoreError({ cause }))
  )
