/**
 * The `SqlClient` over one better-sqlite3 connection, as
 * `@effect/sql-sqlite-node`'s `SqliteClient` builds it (one connection behind
 * a semaphore, WAL, the SQLite compiler, `SqlClient.make` for statements and
 * transactions), with a lighter statement path: prepared statements live in a
 * plain Map and run in one `Effect.try`. The library looks each one up in an
 * Effect `Cache` with a time to live (a hash of the SQL text, a clock read and
 * a fiber-ref read per statement), and prepares `BEGIN`, `COMMIT` and every
 * savepoint afresh on each transaction: on the ingest path, about a fifth of
 * a commit's cost (bench/RESULTS.md).
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { createRequire } from "node:module"

/** What this module uses of better-sqlite3 (which ships no types). */
interface PreparedStatement {
  readonly reader: boolean
  all(...params: ReadonlyArray<unknown>): Array<unknown>
  run(...params: ReadonlyArray<unknown>): unknown
}
interface Database {
  prepare(sql: string): PreparedStatement
  pragma(source: string): unknown
  close(): void
  readonly inTransaction: boolean
}
// The driver @effect/sql-sqlite-node uses too.
const Driver = createRequire(import.meta.url)("better-sqlite3") as new(filename: string) => Database

/** Distinct statements kept prepared; beyond it the oldest is dropped (the hot path uses a few dozen). */
const statementCache = 500

/** Runs one statement with `?` placeholders and returns its rows (none for a write). */
export type Exec = (sql: string, params: ReadonlyArray<unknown>) => ReadonlyArray<any>

/** What `Sync.transaction` answers when another transaction is open: take the `SqlClient` path. */
export const busy: unique symbol = Symbol.for("@rein-ai/server/SqliteConnection/busy")

/**
 * Transactions run start to end in one synchronous call, for the hot path: better-sqlite3 is
 * synchronous, so nothing can interleave, and a commit costs its statements and one Effect, not
 * an Effect per statement plus the client's transaction machinery (a semaphore, a scope, a
 * fiber ref for the connection, a span). When a `SqlClient` transaction is open on the
 * connection (suspended between its statements), the answer is `busy`: the caller falls back to
 * the client, which waits for it.
 */
export class Sync extends Context.Tag("@rein-ai/server/SqliteConnection/Sync")<Sync, {
  readonly transaction: <A>(body: (exec: Exec) => A) => Effect.Effect<A | typeof busy, SqlError>
}>() {}

export interface Options {
  /** A file path, or `:memory:`. */
  readonly filename: string
}

const make = (options: Options) =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new Driver(options.filename),
        catch: (cause) => new SqlError({ cause, message: "Failed to open the database" })
      }),
      (db) => Effect.sync(() => db.close())
    )
    db.pragma("journal_mode = WAL")

    const statements = new Map<string, PreparedStatement>()
    const prepared = (sql: string): PreparedStatement => {
      let statement = statements.get(sql)
      if (statement === undefined) {
        statement = db.prepare(sql)
        if (statements.size >= statementCache) statements.delete(statements.keys().next().value!)
        statements.set(sql, statement)
      }
      return statement
    }
    /** A reader's rows; a writer's run result (`raw`) or no rows. */
    const execute = (sql: string, params: ReadonlyArray<unknown>, raw: boolean): ReadonlyArray<any> | unknown => {
      const statement = prepared(sql)
      if (statement.reader) return statement.all(...params)
      const result = statement.run(...params)
      return raw ? result : []
    }
    const exec: Exec = (sql, params) => execute(sql, params, false) as ReadonlyArray<any>
    const run = (sql: string, params: ReadonlyArray<unknown>, raw: boolean) =>
      Effect.try({
        try: () => execute(sql, params, raw),
        catch: (cause) => new SqlError({ cause, message: "Failed to execute statement" })
      })
    const rows = (sql: string, params: ReadonlyArray<unknown>) => run(sql, params, false) as Effect.Effect<ReadonlyArray<any>, SqlError>
    const [begin, commit, rollback] = ["BEGIN", "COMMIT", "ROLLBACK"].map((sql) => db.prepare(sql))
    const sync = Sync.of({
      transaction: (body) =>
        Effect.try({
          try: () => {
            if (db.inTransaction) return busy
            begin!.run()
            try {
              const result = body(exec)
              commit!.run()
              return result
            } catch (e) {
              // A failed COMMIT (disk full) can leave the transaction open.
              if (db.inTransaction) rollback!.run()
              throw e
            }
          },
          catch: (cause) => new SqlError({ cause, message: "Failed to execute the transaction" })
        })
    })

    const connection: Connection = {
      execute: (sql, params, transformRows) => transformRows ? Effect.map(rows(sql, params), transformRows) : rows(sql, params),
      executeRaw: (sql, params) => run(sql, params, true),
      executeValues: (sql, params) =>
        Effect.try({
          try: () => {
            // Not cached: `raw(true)` changes the statement for every later use.
            const statement = db.prepare(sql) as PreparedStatement & { raw(on: boolean): PreparedStatement }
            if (!statement.reader) return statement.run(...params), []
            return statement.raw(true).all(...params) as Array<Array<unknown>>
          },
          catch: (cause) => new SqlError({ cause, message: "Failed to execute statement" })
        }),
      executeUnprepared: (sql, params, transformRows) =>
        transformRows ? Effect.map(rows(sql, params ?? []), transformRows) : rows(sql, params ?? []),
      executeStream: () => Effect.dieMessage("executeStream not implemented") as never
    }

    const semaphore = yield* Effect.makeSemaphore(1)
    const client = yield* SqlClient.make({
      acquirer: semaphore.withPermits(1)(Effect.succeed(connection)),
      transactionAcquirer: Effect.uninterruptibleMask((restore) =>
        Effect.as(
          Effect.zipRight(
            restore(semaphore.take(1)),
            Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
          ),
          connection
        )
      ),
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]]
    })
    return Context.make(SqlClient.SqlClient, client).pipe(Context.add(Sync, sync))
  })

/** `SqlClient` on a SQLite file (WAL) or `:memory:`. */
export const layer = (options: Options): Layer.Layer<SqlClient.SqlClient | Sync, SqlError> =>
  Layer.scopedContext(make(options)).pipe(Layer.provide(Reactivity.layer))
