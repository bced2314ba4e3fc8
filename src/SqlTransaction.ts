/**
 * `sql.withTransaction`, where a COMMIT or ROLLBACK that fails (disk full in WAL mode, a database
 * gone or silent mid-transaction) is the SqlError it is: @effect/sql makes those defects, which
 * would answer 500 instead of 503. Shared by the store and the cluster, which write to one database.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

export const transaction = (sql: SqlClient.SqlClient) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  sql.withTransaction(effect).pipe(
    Effect.catchSomeDefect((d) =>
      typeof d === "object" && d !== null && (d as { _tag?: unknown })._tag === "SqlError"
        ? Option.some(Effect.fail(d as SqlError))
        : Option.none()
    )
  )
