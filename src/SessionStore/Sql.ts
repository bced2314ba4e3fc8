/**
 * The SessionStore over `@effect/sql`. Appendable fields (`text`, `input`)
 * live in an append-only chunk table, so persisting a delta costs what the
 * delta costs, not what the whole message costs.
 *
 * One implementation for SQLite and PostgreSQL: a `Dialect` holds the few
 * places where their SQL differs (migrations, placeholders of the raw
 * hot-path statements, setting one JSON field, insertion order).
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { type Artifact, type ArtifactKind, type CommittedChange, isAppendable } from "../Domain/Artifact.js"
import { SessionExists, StoreError } from "../Domain/Errors.js"
import type { Session, SessionStatus } from "../Domain/Session.js"
import { type Commit, idempotencyWindow, SessionStore } from "../SessionStore.js"

/** A chunk grows by appends up to this many characters, then a new one starts. */
const chunkSize = 2048

/**
 * The tables, for either database: SQLite's INTEGER is 64-bit, PostgreSQL needs BIGINT for times
 * and revs, and an identity column standing in for SQLite's `rowid` (insertion order).
 */
const migrationsWith = (types: { readonly big: string; readonly order: string }) =>
  Migrator.fromRecord({
    "0001_create_tables": Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        summary TEXT,
        project TEXT,
        created_at ${types.big} NOT NULL,
        last_heartbeat ${types.big} NOT NULL,
        rev ${types.big} NOT NULL DEFAULT 0${types.order}
      )`)
      yield* sql.unsafe(`CREATE TABLE artifacts (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        fields TEXT NOT NULL,
        created_at ${types.big} NOT NULL,
        updated_at ${types.big} NOT NULL,
        created_rev ${types.big} NOT NULL,
        updated_rev ${types.big} NOT NULL,
        PRIMARY KEY (session_id, seq)
      )`)
      yield* sql`CREATE INDEX artifacts_updated_rev ON artifacts (session_id, updated_rev)`
      yield* sql`CREATE TABLE artifact_chunks (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        field TEXT NOT NULL,
        n INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (session_id, seq, field, n)
      )`
      yield* sql.unsafe(`CREATE TABLE idempotency_keys (
        session_id TEXT NOT NULL,
        key TEXT NOT NULL,
        n ${types.big} NOT NULL,
        PRIMARY KEY (session_id, key)
      )`)
      yield* sql`CREATE INDEX idempotency_keys_n ON idempotency_keys (session_id, n)`
    }),
    "0002_sandbox_tokens": Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`ALTER TABLE sessions ADD COLUMN sandbox_token_hash TEXT`
    })
  })

const sqliteMigrations = migrationsWith({ big: "INTEGER", order: "" })
const pgMigrations = migrationsWith({ big: "BIGINT", order: ",\n        ord BIGINT GENERATED ALWAYS AS IDENTITY" })

/** Runs one raw statement on the transaction's connection; queries are written with `?` placeholders. */
type Run = (query: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<any>, unknown>

/** Where the SQL of the two databases differs. */
export interface Dialect {
  readonly migrations: Migrator.Loader<never>
  /** Rewrites a raw statement's `?` placeholders for the driver (SQLite: unchanged). */
  readonly placeholders: (query: string) => string
  /** The column that orders rows of `sessions` by insertion. */
  readonly insertOrder: string
  /** Sets top-level JSON field `field` of artifact `seq` to `value`, with its time and rev. */
  readonly setField: (
    run: Run,
    id: string,
    seq: number,
    field: string,
    value: unknown,
    at: number,
    rev: number
  ) => Effect.Effect<void, unknown>
  /** Run first in a read transaction so all its statements see one snapshot (SQLite: none needed). */
  readonly snapshotRead: string | undefined
}

export const sqlite: Dialect = {
  migrations: sqliteMigrations,
  placeholders: (query) => query,
  insertOrder: "rowid",
  setField: (run, id, seq, field, value, at, rev) =>
    run(
      "UPDATE artifacts SET fields = json_set(fields, ?, json(?)), updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?",
      [`$.${field}`, JSON.stringify(value ?? null), at, rev, id, seq]
    ),
  snapshotRead: undefined
}

const numbered = new Map<string, string>()

export const pg: Dialect = {
  migrations: pgMigrations,
  placeholders: (query) => {
    let out = numbered.get(query)
    if (out === undefined) {
      let i = 0
      out = query.replace(/\?/g, () => `$${++i}`)
      numbered.set(query, out)
    }
    return out
  },
  insertOrder: "ord",
  // Read, set, write: jsonb would reorder keys and refuses \u0000 and lone surrogates, which
  // JSON.stringify leaves as escapes in TEXT. Sets are rare next to appends.
  setField: (run, id, seq, field, value, at, rev) =>
    Effect.gen(function*() {
      const rows = yield* run("SELECT fields FROM artifacts WHERE session_id = ? AND seq = ?", [id, seq])
      if (rows[0] === undefined) return
      const fields = JSON.parse(rows[0].fields)
      fields[field] = value ?? null
      yield* run("UPDATE artifacts SET fields = ?, updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?", [
        JSON.stringify(fields),
        at,
        rev,
        id,
        seq
      ])
    }),
  snapshotRead: "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
}

interface SessionRow {
  readonly id: string
  readonly status: SessionStatus
  readonly summary: string | null
  readonly project: string | null
  readonly created_at: number
  readonly last_heartbeat: number
  readonly rev: number
  readonly sandbox_token_hash: string | null
}

interface ArtifactRow {
  readonly seq: number
  readonly kind: ArtifactKind
  readonly fields: string
  readonly created_at: number
  readonly updated_at: number
}

interface ChunkRow {
  readonly seq: number
  readonly field: string
  readonly text: string
}

// Times and revs go through Number(): PostgreSQL's driver returns BIGINT as a string.
const toSession = (r: SessionRow): Session => ({
  id: r.id,
  status: r.status,
  summary: r.summary,
  project: r.project,
  createdAt: Number(r.created_at),
  lastHeartbeat: Number(r.last_heartbeat)
})

/**
 * Chunk text is stored JSON-escaped: a delta may end inside a surrogate pair,
 * and a lone surrogate would not survive SQLite's UTF-8. Escaped pieces
 * concatenate into the escape of the whole.
 */
const escape = (s: string) => JSON.stringify(s).slice(1, -1)
const unescape = (s: string): string => JSON.parse(`"${s}"`)

/** Coalesce runs of appends to the same field: a batch of 100 deltas becomes one write. */
const coalesce = (changes: ReadonlyArray<CommittedChange>): ReadonlyArray<CommittedChange> => {
  const out: Array<CommittedChange> = []
  let i = 0
  while (i < changes.length) {
    const c = changes[i]!
    let j = i + 1
    if (c._tag === "updated" && c.append !== undefined) {
      while (j < changes.length) {
        const n = changes[j]!
        if (n._tag !== "updated" || n.append === undefined || n.seq !== c.seq || n.field !== c.field) break
        j++
      }
    }
    if (j === i + 1) out.push(c)
    else {
      // One join for the whole run; the last change carries its rev and time.
      const parts: Array<string> = []
      for (let k = i; k < j; k++) parts.push((changes[k] as { readonly append: string }).append)
      out.push({ ...changes[j - 1]!, append: parts.join("") } as CommittedChange)
    }
    i = j
  }
  return out
}

export const make = (dialect: Dialect) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* Migrator.make({})({ loader: dialect.migrations, table: "rein_migrations" })

  /** Tail chunk (number, length) per artifact field; cleared when a transaction fails. */
  type Tail = { readonly n: number; readonly len: number }
  const tails = new Map<string, Tail>()
  const tailKey = (id: string, seq: number, field: string) => `${id}\u0000${seq}\u0000${field}`

  const storeError = (cause: unknown) => new StoreError({ cause })

  const appendChunk = (run: Run, id: string, seq: number, field: string, raw: string, pending: Map<string, Tail>) =>
    Effect.gen(function*() {
      const text = escape(raw)
      const key = tailKey(id, seq, field)
      let tail = pending.get(key) ?? tails.get(key)
      if (tail === undefined) {
        const rows = yield* run(
          "SELECT n, length(text) AS len FROM artifact_chunks WHERE session_id = ? AND seq = ? AND field = ? ORDER BY n DESC LIMIT 1",
          [id, seq, field]
        )
        tail = (rows[0] as Tail | undefined) ?? { n: -1, len: chunkSize }
      }
      if (tail.len + text.length <= chunkSize) {
        yield* run(
          "UPDATE artifact_chunks SET text = text || ? WHERE session_id = ? AND seq = ? AND field = ? AND n = ?",
          [text, id, seq, field, tail.n]
        )
        pending.set(key, { n: tail.n, len: tail.len + text.length })
      } else {
        const n = tail.n + 1
        yield* run("INSERT INTO artifact_chunks (session_id, seq, field, n, text) VALUES (?, ?, ?, ?, ?)", [id, seq, field, n, text])
        pending.set(key, { n, len: text.length })
      }
    })

  const writeChange = (run: Run, id: string, change: CommittedChange, pending: Map<string, Tail>) =>
    Effect.gen(function*() {
      if (change._tag === "created") {
        const { createdAt, kind, seq, updatedAt, ...rest } = change.artifact
        const fields: Record<string, unknown> = {}
        const chunks: Array<[string, string]> = []
        for (const [field, value] of Object.entries(rest)) {
          if (isAppendable(field) && typeof value === "string") {
            fields[field] = ""
            if (value !== "") chunks.push([field, value])
          } else fields[field] = value
        }
        yield* run(
          "INSERT INTO artifacts (session_id, seq, kind, fields, created_at, updated_at, created_rev, updated_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          [id, seq, kind, JSON.stringify(fields), createdAt, updatedAt, change.rev, change.rev]
        )
        for (const [field, value] of chunks) yield* appendChunk(run, id, seq, field, value, pending)
        return
      }
      if (change.append !== undefined) {
        yield* appendChunk(run, id, change.seq, change.field, change.append, pending)
        yield* run("UPDATE artifacts SET updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?", [
          change.at,
          change.rev,
          id,
          change.seq
        ])
        return
      }
      if (isAppendable(change.field)) {
        yield* run("DELETE FROM artifact_chunks WHERE session_id = ? AND seq = ? AND field = ?", [id, change.seq, change.field])
        tails.delete(tailKey(id, change.seq, change.field))
        pending.delete(tailKey(id, change.seq, change.field))
        // A string goes to the chunks, as at creation, so later appends extend it.
        if (typeof change.set === "string") {
          yield* dialect.setField(run, id, change.seq, change.field, "", change.at, change.rev)
          if (change.set !== "") yield* appendChunk(run, id, change.seq, change.field, change.set, pending)
          return
        }
      }
      yield* dialect.setField(run, id, change.seq, change.field, change.set, change.at, change.rev)
    })

  const assemble = (rows: ReadonlyArray<ArtifactRow>, chunks: ReadonlyArray<ChunkRow>): Array<Artifact> => {
    const bySeq = new Map<number, Record<string, unknown>>()
    const out: Array<Artifact> = []
    for (const r of rows) {
      const a: Record<string, unknown> = {
        seq: r.seq,
        kind: r.kind,
        ...JSON.parse(r.fields),
        createdAt: Number(r.created_at),
        updatedAt: Number(r.updated_at)
      }
      bySeq.set(r.seq, a)
      out.push(a as Artifact)
    }
    // Chunks arrive in (seq, field, n) order: join each field's run, then unescape once.
    let joined: Array<string> = []
    let at: ChunkRow | undefined
    const flush = () => {
      const a = at && bySeq.get(at.seq)
      if (a !== undefined && at !== undefined) a[at.field] = unescape(joined.join(""))
      joined = []
    }
    for (const c of chunks) {
      if (at !== undefined && (at.seq !== c.seq || at.field !== c.field)) flush()
      at = c
      joined.push(c.text)
    }
    flush()
    return out
  }

  return SessionStore.of({
    list: sql<SessionRow>`SELECT * FROM sessions ORDER BY created_at, ${sql.literal(dialect.insertOrder)}`.pipe(
      Effect.map((rows) =>
        rows.map((r) => ({ session: toSession(r), rev: Number(r.rev), sandboxTokenHash: r.sandbox_token_hash }))
      ),
      Effect.mapError(storeError)
    ),
    create: (s, sandboxTokenHash = null) =>
      sql`INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat, rev, sandbox_token_hash)
        VALUES (${s.id}, ${s.status}, ${s.summary}, ${s.project}, ${s.createdAt}, ${s.lastHeartbeat}, 0, ${sandboxTokenHash})
        ON CONFLICT (id) DO NOTHING RETURNING id`.pipe(
        Effect.mapError(storeError),
        Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new SessionExists({ id: s.id })) : Effect.void)
      ),
    remove: (id) =>
      Effect.all([
        sql`DELETE FROM artifact_chunks WHERE session_id = ${id}`,
        sql`DELETE FROM artifacts WHERE session_id = ${id}`,
        sql`DELETE FROM idempotency_keys WHERE session_id = ${id}`,
        sql`DELETE FROM sessions WHERE id = ${id}`
      ], { discard: true }).pipe(
        sql.withTransaction,
        Effect.tap(() => Effect.sync(() => {
          const prefix = `${id}\u0000`
          for (const key of tails.keys()) if (key.startsWith(prefix)) tails.delete(key)
        })),
        Effect.mapError(storeError)
      ),
    update: (id, patch) => {
      const set: Record<string, unknown> = {}
      if (patch.status !== undefined) set.status = patch.status
      if (patch.summary !== undefined) set.summary = patch.summary
      if (patch.lastHeartbeat !== undefined) set.last_heartbeat = patch.lastHeartbeat
      if (Object.keys(set).length === 0) return Effect.void
      return sql`UPDATE sessions SET ${sql.update(set)} WHERE id = ${id}`.pipe(Effect.asVoid, Effect.mapError(storeError))
    },
    commit: (id, commit: Commit) => {
      const pending = new Map<string, Tail>()
      const set = ["rev = ?", "last_heartbeat = ?"]
      const params: Array<unknown> = [commit.rev, commit.lastHeartbeat]
      if (commit.status !== undefined) set.push("status = ?"), params.push(commit.status)
      if (commit.summary !== undefined) set.push("summary = ?"), params.push(commit.summary)
      params.push(id)
      // The hot path: statements go straight to the transaction's connection as prepared SQL,
      // skipping per-statement compilation and spans.
      return Effect.gen(function*() {
        // withTransaction provides the connection; the type system cannot see that.
        const [connection] = Option.getOrThrow(yield* Effect.serviceOption(SqlClient.TransactionConnection))
        const run: Run = (query, params) => connection.execute(dialect.placeholders(query), params, undefined)
        const updated = yield* run(`UPDATE sessions SET ${set.join(", ")} WHERE id = ? RETURNING id`, params)
        // Writing artifacts of a session that is gone would leave orphan rows behind.
        if (updated.length === 0) return yield* Effect.fail(new Error(`session ${id} is not in the store`))
        for (const change of coalesce(commit.changes)) yield* writeChange(run, id, change, pending)
        if (commit.idempotencyKey !== undefined) {
          // Each key gets the next number of its session, so the window is exactly the last keys,
          // and trimming it is one indexed range delete.
          const last = yield* run("SELECT coalesce(max(n), 0) AS n FROM idempotency_keys WHERE session_id = ?", [id])
          const n = Number(last[0]?.n ?? 0) + 1
          yield* run("INSERT INTO idempotency_keys (session_id, key, n) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [
            id,
            commit.idempotencyKey,
            n
          ])
          yield* run("DELETE FROM idempotency_keys WHERE session_id = ? AND n <= ?", [id, n - idempotencyWindow])
        }
      }).pipe(
        sql.withTransaction,
        // A failed COMMIT (disk full, in WAL mode) is a defect in @effect/sql; it is a store failure.
        Effect.catchSomeDefect((d) =>
          typeof d === "object" && d !== null && (d as { _tag?: unknown })._tag === "SqlError"
            ? Option.some(Effect.fail(d))
            : Option.none()
        ),
        Effect.tap(() =>
          Effect.sync(() => {
            // The cache is only a shortcut (a miss reads the tail): bound it by starting over.
            if (tails.size > 10_000) tails.clear()
            pending.forEach((v, k) => tails.set(k, v))
          })
        ),
        Effect.tapError(() => Effect.sync(() => tails.clear())),
        Effect.mapError(storeError)
      )
    },
    artifacts: (id, from) =>
      Effect.gen(function*() {
        if (dialect.snapshotRead !== undefined) yield* sql.unsafe(dialect.snapshotRead)
        const session = yield* sql<{ rev: number }>`SELECT rev FROM sessions WHERE id = ${id}`
        const rev = Number(session[0]?.rev ?? 0)
        const anchor = from === undefined
          ? []
          : yield* sql<{ created_rev: number }>`SELECT created_rev FROM artifacts WHERE session_id = ${id} AND seq = ${from}`
        if (from === undefined || anchor[0] === undefined) {
          const rows = yield* sql<ArtifactRow>`SELECT seq, kind, fields, created_at, updated_at FROM artifacts
            WHERE session_id = ${id} ORDER BY seq`
          const chunks = yield* sql<ChunkRow>`SELECT seq, field, text FROM artifact_chunks
            WHERE session_id = ${id} ORDER BY seq, field, n`
          return { rev, artifacts: assemble(rows, chunks) }
        }
        const since = anchor[0].created_rev
        const rows = yield* sql<ArtifactRow>`SELECT seq, kind, fields, created_at, updated_at FROM artifacts
          WHERE session_id = ${id} AND (seq >= ${from} OR updated_rev > ${since}) ORDER BY seq`
        const chunks = yield* sql<ChunkRow>`SELECT c.seq, c.field, c.text FROM artifact_chunks c
          JOIN artifacts a ON a.session_id = c.session_id AND a.seq = c.seq
          WHERE c.session_id = ${id} AND (a.seq >= ${from} OR a.updated_rev > ${since})
          ORDER BY c.seq, c.field, c.n`
        return { rev, artifacts: assemble(rows, chunks) }
      }).pipe(sql.withTransaction, Effect.mapError(storeError)),
    hasIdempotencyKey: (id, key) =>
      sql`SELECT 1 FROM idempotency_keys WHERE session_id = ${id} AND key = ${key}`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.mapError(storeError)
      ),
    ping: sql`SELECT 1`.pipe(Effect.asVoid, Effect.mapError(storeError))
  })
})
