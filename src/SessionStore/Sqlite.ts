/**
 * The SQLite store: a file (WAL mode) or `:memory:`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { StoreError } from "../Domain/Errors.js"
import { SessionStore } from "../SessionStore.js"
import * as Sql from "./Sql.js"
import * as SqliteConnection from "./SqliteConnection.js"

export interface SqliteOptions {
  /** A file path, or `:memory:`. */
  readonly filename: string
}

/**
 * WAL with `synchronous = NORMAL`: a commit survives a crash of the process
 * (kill -9); only a power loss can take the last transactions.
 */
const pragmas = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`PRAGMA synchronous = NORMAL`
  yield* sql`PRAGMA busy_timeout = 5000`
  // Appends rewrite the same few pages over and over: checkpoint often and keep the WAL file
  // small, so the disk holds about the text's size, not a trail of page images.
  yield* sql`PRAGMA wal_autocheckpoint = 100`
  yield* sql`PRAGMA journal_size_limit = 524288`
  yield* sql`PRAGMA foreign_keys = OFF`
})

export const layer = (options: SqliteOptions): Layer.Layer<SessionStore, StoreError> =>
  Layer.effect(
    SessionStore,
    pragmas.pipe(Effect.zipRight(Sql.make(Sql.sqlite)), StoreError.refail)
  ).pipe(Layer.provide(SqliteConnection.layer({ filename: options.filename }).pipe(Layer.orDie)))
