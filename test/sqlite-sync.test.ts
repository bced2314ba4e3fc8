/**
 * SQLite's synchronous commit path (`SqliteConnection.Sync`) against the client's own
 * transactions on the same connection: a commit made while a client transaction is open must
 * wait for it rather than join it, and a failing commit must leave nothing behind.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { describe, expect, it } from "vitest"
import { newSession } from "../src/Domain/Session.js"
import { SessionStore } from "../src/SessionStore.js"
import * as Sql from "../src/SessionStore/Sql.js"
import * as SqliteConnection from "../src/SessionStore/SqliteConnection.js"

const NOW = 1_764_000_000_000

const layer = Layer.effect(SessionStore, Sql.make(Sql.sqlite)).pipe(
  Layer.provideMerge(SqliteConnection.layer({ filename: ":memory:" }))
)

const run = <A>(effect: Effect.Effect<A, unknown, SessionStore | SqlClient.SqlClient | SqliteConnection.Sync>) =>
  Effect.runPromise(Effect.provide(effect, layer))


describe("SQLite synchronous transactions", () => {
  it("answers busy while a client transaction is open, and runs once it has ended", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sync = yield* SqliteConnection.Sync
      yield* sql`CREATE TABLE t (n INTEGER)`
      const opened = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO t VALUES (1)`
        yield* Deferred.succeed(opened, undefined)
        yield* Deferred.await(release)
      })).pipe(Effect.fork)
      yield* Deferred.await(opened)
      expect(yield* sync.transaction((exec) => exec("SELECT count(*) AS n FROM t", []))).toBe(SqliteConnection.busy)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      expect(yield* sync.transaction((exec) => exec("SELECT count(*) AS n FROM t", []))).toEqual([{ n: 1 }])
    })))

  it("rolls back everything a failing transaction wrote", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const sync = yield* SqliteConnection.Sync
      yield* sql`CREATE TABLE t (n INTEGER NOT NULL)`
      const failed = yield* Effect.flip(sync.transaction((exec) => {
        exec("INSERT INTO t VALUES (?)", [1])
        return exec("INSERT INTO t VALUES (?)", [null])
      }))
      expect(failed._tag).toBe("SqlError")
      expect(yield* sql`SELECT count(*) AS n FROM t`).toEqual([{ n: 0 }])
      // The connection is usable again: no transaction was left open.
      expect(yield* sync.transaction((exec) => exec("SELECT count(*) AS n FROM t", []))).toEqual([{ n: 0 }])
    })))

  it("a store commit made during a client transaction waits for it and lands after it", () =>
    run(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const store = yield* SessionStore
      yield* store.create({ ...newSession("s", null, NOW), status: "live" })
      const opened = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const order: Array<string> = []
      const holder = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`UPDATE sessions SET summary = 'held' WHERE id = 's'`
        yield* Deferred.succeed(opened, undefined)
        yield* Deferred.await(release)
        order.push("holder committed")
      })).pipe(Effect.fork)
      yield* Deferred.await(opened)
      const commit = yield* store.commit("s", { rev: 1, expectedRev: 0, createdAt: NOW, lastHeartbeat: NOW + 5, changes: [] }).pipe(
        Effect.tap(() => Effect.sync(() => order.push("commit"))),
        Effect.fork
      )
      yield* Effect.yieldNow()
      expect(order).toEqual([])
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Fiber.join(commit)
      expect(order).toEqual(["holder committed", "commit"])
      const stored = yield* store.get("s")
      expect(stored?.rev).toBe(1)
      expect(stored?.session.summary).toBe("held")
      expect(stored?.session.lastHeartbeat).toBe(NOW + 5)
    })))
})
