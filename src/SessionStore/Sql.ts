/**
 * The SessionStore over `@effect/sql`. Appendable fields (`text`, `input`)
 * live in an append-only chunk table, so persisting a delta costs what the
 * delta costs, not what the whole message costs (`Chunks.ts`: the layout and
 * the one append planner both commit paths run).
 *
 * One implementation for SQLite and PostgreSQL: a `Dialect` holds the few
 * places where their SQL differs (migrations, placeholders of the raw
 * hot-path statements, setting one JSON field, insertion order).
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { type Announcement, encodeAnnouncement, type LogBody } from "../Cluster/Protocol.js"
import { SessionExists, StaleSession, StoreError } from "../Domain/Errors.js"
import type { Artifact } from "../Domain/Artifact.js"
import type { Session, SessionStatus, Workspace } from "../Domain/Session.js"
import type { Turn } from "../Domain/Turn.js"
import { type Commit, idempotencyWindow, lastOfKinds, type Page, type PageQuery, SessionStore, type StoredSession } from "../SessionStore.js"
import { transaction } from "../SqlTransaction.js"
import * as SqliteConnection from "./SqliteConnection.js"
import { type ArtifactRow, assemble, type ChunkRow, coalesce, noTail, type Plan, planWrites, type Tail, tailKey, type Write } from "./Chunks.js"

/** Sessions whose whole history the store keeps assembled for readers at the same rev. */
const historySessions = 4
/** Text the kept histories may hold in all (stored, escaped characters). */
const historyCharsMax = 8 * 1024 * 1024
/** Milliseconds a history is kept at most: a resume storm is a burst. */
const historyTtl = 30_000
/** Artifacts one kept history may hold. */
const historyArtifactsMax = 100_000

interface History {
  readonly rev: number
  readonly createdAt: number
  readonly artifacts: ReadonlyArray<Artifact>
  /** Each artifact's created and last updated rev, by index. */
  readonly revs: ReadonlyArray<{ readonly created: number; readonly updated: number }>
  /** The text it holds (stored, escaped characters). */
  readonly chars: number
  /** When it was read. */
  readonly at: number
}

/**
 * What a read resuming after `from` gets, as the resume query selects it: the artifacts from
 * `from` on, and the earlier ones updated since `from` was created; all of them when `from` is
 * unknown.
 */
const resumeFrom = (history: History, from: number | undefined): ReadonlyArray<Artifact> => {
  if (from === undefined) return history.artifacts
  const at = history.artifacts.findIndex((a) => a.seq === from)
  if (at === -1) return history.artifacts
  const since = history.revs[at]!.created
  return history.artifacts.filter((a, i) => a.seq >= from || history.revs[i]!.updated > since)
}

/** Sessions whose tail chunks the store remembers (the most recently written). */
const tailSessions = 256
/** Fields per session whose tail chunks it remembers (the most recently appended to). */
const tailsPerSession = 16

/**
 * The tables, for either database: SQLite's INTEGER is 64-bit, PostgreSQL needs BIGINT for times
 * and revs, and an identity column standing in for SQLite's `rowid` (insertion order).
 */
const migrationsWith = (
  types: { readonly big: string; readonly order: string },
  more: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {}
) =>
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
    }),
    ...more
  })

/**
 * What needs attention, on the session row (issue 16). Sessions stored by an earlier version get
 * their unanswered permissions and usage totals counted from their artifacts, parsed here rather
 * than in SQL: PostgreSQL's jsonb refuses the `\u0000` escapes artifact fields may hold. A last
 * stop reason was never stored, so it starts null.
 */
const attentionColumns = (types: { readonly big: string; readonly real: string }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN pending_permissions INTEGER NOT NULL DEFAULT 0`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN input_tokens ${types.big} NOT NULL DEFAULT 0`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN output_tokens ${types.big} NOT NULL DEFAULT 0`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN cost_usd ${types.real}`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN last_stop_reason TEXT`)
    const rows = yield* sql<{ session_id: string; kind: string; fields: string }>`SELECT session_id, kind, fields
      FROM artifacts WHERE kind IN ('permission', 'usage')`
    const totals = new Map<string, { pending: number; input: number; output: number; cost: number | null }>()
    for (const r of rows) {
      const t = totals.get(r.session_id) ?? { pending: 0, input: 0, output: 0, cost: null }
      totals.set(r.session_id, t)
      const f = JSON.parse(r.fields) as Record<string, unknown>
      if (r.kind === "permission") {
        if (f.decision === null || f.decision === undefined) t.pending++
      } else {
        t.input += typeof f.inputTokens === "number" ? f.inputTokens : 0
        t.output += typeof f.outputTokens === "number" ? f.outputTokens : 0
        if (typeof f.costUsd === "number") t.cost = (t.cost ?? 0) + f.costUsd
      }
    }
    for (const [id, t] of totals) {
      yield* sql`UPDATE sessions SET pending_permissions = ${t.pending}, input_tokens = ${t.input},
        output_tokens = ${t.output}, cost_usd = ${t.cost} WHERE id = ${id}`
    }
  })

/**
 * Sessions a runner starts an agent for (issue 20): the agent profile, the runner, the worktree
 * (JSON); and the runners registered with `POST /runners` (only their token's hash is kept).
 */
const launchColumns = (types: { readonly big: string }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN agent TEXT`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN runner TEXT`)
    yield* sql.unsafe(`ALTER TABLE sessions ADD COLUMN workspace TEXT`)
    yield* sql.unsafe(`CREATE TABLE runners (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      token_hash TEXT NOT NULL,
      created_at ${types.big} NOT NULL
    )`)
  })

const sqliteMigrations = migrationsWith({ big: "INTEGER", order: "" }, {
  "0003_attention": attentionColumns({ big: "INTEGER", real: "REAL" }),
  "0004_launch": launchColumns({ big: "INTEGER" })
})
/**
 * PostgreSQL also coordinates server instances (see `Cluster.ts`): a short-lived log of committed
 * changes that other instances read back when notified, sandbox leases, and commands on their way
 * to the instance holding a sandbox.
 */
const pgMigrations = migrationsWith({ big: "BIGINT", order: ",\n        ord BIGINT GENERATED ALWAYS AS IDENTITY" }, {
  "0003_cluster": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // `created_at` tells a session from an earlier one under the same id (removed, created again).
    yield* sql`CREATE TABLE rein_changes (
      session_id TEXT NOT NULL,
      created_at BIGINT NOT NULL,
      rev_from BIGINT NOT NULL,
      rev BIGINT NOT NULL,
      body TEXT NOT NULL,
      at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`
    yield* sql`CREATE INDEX rein_changes_session ON rein_changes (session_id, rev)`
    yield* sql`CREATE INDEX rein_changes_at ON rein_changes (at)`
    yield* sql`CREATE TABLE rein_sandboxes (
      session_id TEXT PRIMARY KEY,
      instance TEXT NOT NULL,
      connection BIGINT NOT NULL,
      expires_at TIMESTAMPTZ NOT NULL
    )`
    yield* sql`CREATE INDEX rein_sandboxes_instance ON rein_sandboxes (instance)`
    yield* sql`CREATE TABLE rein_commands (
      id BIGSERIAL PRIMARY KEY,
      instance TEXT NOT NULL,
      session_id TEXT NOT NULL,
      body TEXT NOT NULL,
      at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`
    yield* sql`CREATE INDEX rein_commands_instance ON rein_commands (instance, id)`
    // The reducer's turn state (open delta, plan, usage) as of the session's rev, for an instance
    // that rebuilds the reducer from artifacts.
    yield* sql`ALTER TABLE sessions ADD COLUMN turn TEXT`
  }),
  "0004_attention": attentionColumns({ big: "BIGINT", real: "DOUBLE PRECISION" }),
  "0005_launch": launchColumns({ big: "BIGINT" }),
  // Runners across instances (issue 20): which instance holds each runner's job stream (a lease,
  // with what it offers), and jobs on their way to that instance.
  "0006_runner_presence": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE rein_runner_presence (
      runner_id TEXT PRIMARY KEY,
      instance TEXT NOT NULL,
      offer TEXT NOT NULL,
      expires_at TIMESTAMPTZ NOT NULL
    )`
    yield* sql`CREATE TABLE rein_runner_jobs (
      id BIGSERIAL PRIMARY KEY,
      instance TEXT NOT NULL,
      runner_id TEXT NOT NULL,
      body TEXT NOT NULL,
      at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`
    yield* sql`CREATE INDEX rein_runner_jobs_instance ON rein_runner_jobs (instance, id)`
  })
})

/** Runs one raw statement on the transaction's connection; queries are written with `?` placeholders. */
type Run = (query: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<any>, unknown>

/**
 * A commit's statements as a generator: it yields each statement and gets its rows back. Written
 * once, run by either driver: `drive`, an Effect per statement on the client's transaction
 * (PostgreSQL), or `driveSync`, all in one synchronous call (SQLite's hot path).
 */
interface Step {
  readonly query: string
  readonly params: ReadonlyArray<unknown>
}
type Steps<A> = Generator<Step, A, ReadonlyArray<any>>

function* query(query: string, params: ReadonlyArray<unknown>): Steps<ReadonlyArray<any>> {
  return yield { query, params }
}

const drive = <A>(steps: () => Steps<A>, run: Run): Effect.Effect<A, unknown> =>
  Effect.suspend(() => {
    const g = steps()
    const step = (rows: ReadonlyArray<any>): Effect.Effect<A, unknown> => {
      const next = g.next(rows)
      return next.done ? Effect.succeed(next.value) : Effect.flatMap(run(next.value.query, next.value.params), step)
    }
    return step([])
  })

const driveSync = <A>(g: Steps<A>, exec: SqliteConnection.Exec): A => {
  let next = g.next([])
  while (!next.done) next = g.next(exec(next.value.query, next.value.params))
  return next.value
}

/** Where the SQL of the two databases differs. */
export interface Dialect {
  readonly migrations: Migrator.Loader<never>
  /** Rewrites a raw statement's `?` placeholders for the driver (SQLite: unchanged). */
  readonly placeholders: (query: string) => string
  /** The column that orders rows of `sessions` by insertion. */
  readonly insertOrder: string
  /** Sets top-level JSON field `field` of artifact `seq` to `value`, with its time and rev. */
  readonly setField: (
    id: string,
    seq: number,
    field: string,
    value: unknown,
    at: number,
    rev: number
  ) => Steps<unknown>
  /** Run first in a read transaction so all its statements see one snapshot (SQLite: none needed). */
  readonly snapshotRead: string | undefined
  /** Whether a commit may be one statement of data-modifying CTEs (one round trip, no BEGIN/COMMIT). */
  readonly oneStatement: boolean
  /** The SQL condition on an `artifacts` row: a tool call not finished, a permission not answered (`isUnfinished`). */
  readonly unfinished: string
}

export const sqlite: Dialect = {
  migrations: sqliteMigrations,
  placeholders: (query) => query,
  insertOrder: "rowid",
  setField: (id, seq, field, value, at, rev) =>
    query(
      "UPDATE artifacts SET fields = json_set(fields, ?, json(?)), updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?",
      [`$.${field}`, JSON.stringify(value ?? null), at, rev, id, seq]
    ),
  snapshotRead: undefined,
  oneStatement: false,
  unfinished: `(kind = 'tool_call' AND json_extract(fields, '$.status') IN ('pending', 'running'))
    OR (kind = 'permission' AND json_extract(fields, '$.decision') IS NULL)`
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
  setField: function*(id, seq, field, value, at, rev) {
      const rows = yield* query("SELECT fields FROM artifacts WHERE session_id = ? AND seq = ?", [id, seq])
      if (rows[0] === undefined) return
      const fields = JSON.parse(rows[0].fields)
      fields[field] = value ?? null
      yield* query("UPDATE artifacts SET fields = ?, updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?", [
        JSON.stringify(fields),
        at,
        rev,
        id,
        seq
      ])
  },
  snapshotRead: "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
  oneStatement: true,
  // Matched as text: PostgreSQL's JSON operators refuse a document holding a \u0000 escape, which
  // artifact fields may. \`fields\` is compact JSON (JSON.stringify), where a quote inside a string
  // is escaped, so \`"status":"running"\` matches the top-level field only.
  unfinished: `(kind = 'tool_call' AND (fields LIKE '%"status":"pending"%' OR fields LIKE '%"status":"running"%'))
    OR (kind = 'permission' AND (fields LIKE '%"decision":null%' OR fields NOT LIKE '%"decision":%'))`
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
  readonly turn?: string | null
  readonly pending_permissions: number
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cost_usd: number | null
  readonly last_stop_reason: string | null
  readonly agent: string | null
  readonly runner: string | null
  readonly workspace: string | null
}

// Times and revs go through Number(): PostgreSQL's driver returns BIGINT as a string.
const toSession = (r: SessionRow): Session => ({
  id: r.id,
  status: r.status,
  summary: r.summary,
  project: r.project,
  createdAt: Number(r.created_at),
  lastHeartbeat: Number(r.last_heartbeat),
  pendingPermissions: Number(r.pending_permissions),
  usage: {
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    costUsd: r.cost_usd === null ? null : Number(r.cost_usd)
  },
  lastStopReason: r.last_stop_reason,
  agent: r.agent ?? null,
  runner: r.runner ?? null,
  workspace: r.workspace == null ? null : JSON.parse(r.workspace) as Workspace
})

const toStored = (r: SessionRow): StoredSession => ({
  session: toSession(r),
  rev: Number(r.rev),
  sandboxTokenHash: r.sandbox_token_hash,
  ...(typeof r.turn === "string" && { turn: JSON.parse(r.turn) as Turn })
})

/** Seqs as high as a page query may name: PostgreSQL's INTEGER column refuses a larger parameter. */
const seqMax = 2_147_483_647
/** Seqs bound in one `IN (...)` list. */
const inBatch = 500

const artifactColumns = "seq, kind, fields, created_at, updated_at"

/** Rows and chunks of the artifacts from `from` to `to` (seqs, inclusive): two range reads on the primary keys. */
function* readRange(id: string, from: number, to: number): Steps<{ rows: Array<ArtifactRow>; chunks: Array<ChunkRow> }> {
  if (to < from) return { rows: [], chunks: [] }
  const rows = yield* query(`SELECT ${artifactColumns} FROM artifacts WHERE session_id = ? AND seq >= ? AND seq <= ? ORDER BY seq`, [
    id,
    from,
    to
  ])
  const chunks = yield* query(
    "SELECT seq, field, text FROM artifact_chunks WHERE session_id = ? AND seq >= ? AND seq <= ? ORDER BY seq, field, n",
    [id, from, to]
  )
  return { rows: rows as Array<ArtifactRow>, chunks: chunks as Array<ChunkRow> }
}

/** Rows and chunks of the artifacts `seqs` (ascending), a batch of seqs per statement. */
function* readSeqs(id: string, seqs: ReadonlyArray<number>): Steps<{ rows: Array<ArtifactRow>; chunks: Array<ChunkRow> }> {
  const rows: Array<ArtifactRow> = []
  const chunks: Array<ChunkRow> = []
  for (let i = 0; i < seqs.length; i += inBatch) {
    const batch = seqs.slice(i, i + inBatch)
    const list = batch.map(() => "?").join(", ")
    rows.push(...(yield* query(`SELECT ${artifactColumns} FROM artifacts WHERE session_id = ? AND seq IN (${list}) ORDER BY seq`, [id, ...batch])))
    chunks.push(
      ...(yield* query(`SELECT seq, field, text FROM artifact_chunks WHERE session_id = ? AND seq IN (${list}) ORDER BY seq, field, n`, [
        id,
        ...batch
      ]))
    )
  }
  return { rows, chunks }
}

export interface MakeOptions {
  /**
   * PostgreSQL with several instances: every change is also logged to `rein_changes` and
   * announced with `pg_notify` on this channel, in its own transaction (see `Cluster.ts`).
   */
  readonly channel?: string | undefined
}

export const make = (dialect: Dialect, options: MakeOptions = {}) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // SQLite's synchronous transactions, when the connection offers them.
  const sync = Option.getOrUndefined(yield* Effect.serviceOption(SqliteConnection.Sync))
  yield* Migrator.make({})({ loader: dialect.migrations, table: "rein_migrations" })
  const channel = options.channel

  /**
   * Tail chunk (number, length) per artifact field, per session, valid at the session's `rev`:
   * another instance's commit moves the rev, and the next commit then reads the tails again.
   */
  const tails = new Map<string, { readonly rev: number; readonly createdAt: number | undefined; readonly fields: Map<string, Tail> }>()
  /**
   * After a commit: the tails it left are remembered (the cache is only a shortcut, a miss reads
   * the tail), or, when it failed, the session's are forgotten. The cache holds the sessions
   * written most recently, and in each the fields appended to most recently, so an idle session
   * costs nothing.
   */
  const rememberTails = (
    id: string,
    commit: Commit,
    fields: Map<string, Tail>,
    written: ReadonlyMap<string, Tail> | undefined
  ) => {
    if (written === undefined) return void tails.delete(id)
    for (const [key, tail] of written) {
      fields.delete(key)
      fields.set(key, tail)
    }
    while (fields.size > tailsPerSession) fields.delete(fields.keys().next().value!)
    tails.delete(id)
    tails.set(id, { rev: commit.rev, createdAt: commit.createdAt, fields })
    while (tails.size > tailSessions) tails.delete(tails.keys().next().value!)
  }

  /**
   * Whole histories, assembled, as of their session's rev: when many clients resume one session
   * at once, one read serves them all. Dropped when the session is written or removed here (and
   * found stale by rev when another instance wrote), bounded in sessions and in text held.
   */
  const histories = new Map<string, History>()
  let historyChars = 0
  const forget = (id: string) => {
    const h = histories.get(id)
    if (h === undefined) return
    histories.delete(id)
    historyChars -= h.chars
  }
  const keep = (id: string, history: History) => {
    forget(id)
    if (history.chars > historyCharsMax / 2 || history.artifacts.length > historyArtifactsMax) return
    histories.set(id, history)
    historyChars += history.chars
    for (const key of histories.keys()) {
      if (histories.size <= historySessions && historyChars <= historyCharsMax) break
      forget(key)
    }
  }
  /** The kept history of `id` at this rev, if any; histories kept longer than `historyTtl` go. */
  const kept = (id: string, rev: number, createdAt: number, now: number): History | undefined => {
    for (const [key, h] of histories) if (now - h.at > historyTtl) forget(key)
    const h = histories.get(id)
    if (h === undefined || h.rev !== rev || h.createdAt !== createdAt) return undefined
    // Most recently used last: the oldest leave first.
    histories.delete(id)
    histories.set(id, h)
    return h
  }

  /**
   * `body` in one synchronous transaction on SQLite; `viaClient` on PostgreSQL, or while one of the
   * client's own transactions is open on SQLite's connection.
   */
  const syncOr = <A, E>(body: (exec: SqliteConnection.Exec) => A, viaClient: Effect.Effect<A, E>): Effect.Effect<A, E | SqlError> =>
    sync === undefined
      ? viaClient
      : Effect.flatMap(sync.transaction(body), (r) => r === SqliteConnection.busy ? viaClient : Effect.succeed(r))

  /**
   * A read of several statements that see one snapshot: on SQLite one synchronous transaction,
   * on PostgreSQL a repeatable-read one through the client.
   */
  const read = <A>(steps: () => Steps<A>): Effect.Effect<A, StoreError> =>
    syncOr(
      (exec) => driveSync(steps(), exec),
      Effect.gen(function*() {
        if (dialect.snapshotRead !== undefined) yield* sql.unsafe(dialect.snapshotRead)
        // withTransaction provides the connection; the type system cannot see that.
        const [connection] = Option.getOrThrow(yield* Effect.serviceOption(SqlClient.TransactionConnection))
        return yield* drive(steps, (query, params) => connection.execute(dialect.placeholders(query), params, undefined))
      }).pipe(transaction(sql))
    ).pipe(StoreError.refail)

  /** The session's last seq (0 without artifacts). Seqs count from 1, gap-free, so it is also their number. */
  function* lastSeq(id: string): Steps<number> {
    const rows = yield* query("SELECT max(seq) AS last FROM artifacts WHERE session_id = ?", [id])
    return Number(rows[0]?.last ?? 0)
  }

  /** A page is a range of seqs, read by the primary keys: it costs what the page holds, not the session. */
  function* pageSteps(id: string, { after, before, limit }: PageQuery): Steps<Page> {
    const last = yield* lastSeq(id)
    const [from, to] = after !== undefined
      ? [after + 1, Math.min(last, after + limit)]
      : [Math.max(1, Math.min(last, (before ?? seqMax) - 1) - limit + 1), Math.min(last, (before ?? seqMax) - 1)]
    const { chunks, rows } = yield* readRange(id, from, to)
    return { artifacts: assemble(rows, chunks), more: after !== undefined ? to < last : from > 1 && to >= 1 }
  }

  /** The last `n`, and the older artifacts still changing (see `tailOf`, which the memory store runs). */
  function* tailSteps(id: string, n: number): Steps<{ rev: number; artifacts: Array<Artifact> }> {
    const session = yield* query("SELECT rev FROM sessions WHERE id = ?", [id])
    const rev = Number(session[0]?.rev ?? 0)
    const last = yield* lastSeq(id)
    const from = Math.max(1, last - n + 1)
    const older = from === 1 ? [] : yield* query(
      `SELECT seq FROM artifacts WHERE session_id = ? AND seq < ? AND (${dialect.unfinished})
      UNION SELECT max(seq) AS seq FROM artifacts WHERE session_id = ? AND seq < ?
        AND kind IN (${lastOfKinds.map((k) => `'${k}'`).join(", ")}) GROUP BY kind`,
      [id, from, id, from]
    )
    const extra = yield* readSeqs(id, older.map((r) => Number(r.seq)).sort((a, b) => a - b))
    const range = yield* readRange(id, from, last)
    return { rev, artifacts: [...assemble(extra.rows, extra.chunks), ...assemble(range.rows, range.chunks)] }
  }

  /** The tails only the database knows, read on the transaction's connection. */
  function* readTails(id: string, missing: ReadonlyArray<{ readonly seq: number; readonly field: string }>): Steps<Map<string, Tail>> {
    const read = new Map<string, Tail>()
    for (const { field, seq } of missing) {
      const rows = yield* query(
        "SELECT n, length(text) AS len FROM artifact_chunks WHERE session_id = ? AND seq = ? AND field = ? ORDER BY n DESC LIMIT 1",
        [id, seq, field]
      )
      read.set(tailKey(seq, field), (rows[0] as Tail | undefined) ?? noTail)
    }
    return read
  }

  /** One planned write as its own statement (the transaction path). */
  const runWrite = (id: string, w: Write): Steps<unknown> => {
    switch (w._tag) {
      case "artifact":
        return query(
          "INSERT INTO artifacts (session_id, seq, kind, fields, created_at, updated_at, created_rev, updated_rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          [id, w.seq, w.kind, w.fields, w.createdAt, w.updatedAt, w.rev, w.rev]
        )
      case "extend":
        return query("UPDATE artifact_chunks SET text = text || ? WHERE session_id = ? AND seq = ? AND field = ? AND n = ?", [
          w.text,
          id,
          w.seq,
          w.field,
          w.n
        ])
      case "chunk":
        return query("INSERT INTO artifact_chunks (session_id, seq, field, n, text) VALUES (?, ?, ?, ?, ?)", [id, w.seq, w.field, w.n, w.text])
      case "touch":
        return query("UPDATE artifacts SET updated_at = ?, updated_rev = ? WHERE session_id = ? AND seq = ?", [w.at, w.rev, id, w.seq])
      case "clear":
        return query("DELETE FROM artifact_chunks WHERE session_id = ? AND seq = ? AND field = ?", [id, w.seq, w.field])
      case "set":
        return dialect.setField(id, w.seq, w.field, w.value, w.at, w.rev)
    }
  }

  /**
   * The common commit as one statement: the compare-and-set on the session row, then (only if it
   * matched) the log row and the planned writes, and the NOTIFY. A single statement is atomic
   * without BEGIN/COMMIT, so a commit costs one round trip instead of five. A plan it cannot
   * express (a set, a row written twice or an artifact created and updated, which sibling
   * statements cannot see) takes the transaction path.
   */
  const oneStatement = (
    id: string,
    commit: Commit,
    plan: Plan,
    head: {
      readonly set: ReadonlyArray<string>
      readonly params: ReadonlyArray<unknown>
      readonly where: string
      readonly whereParams: ReadonlyArray<unknown>
    },
    log: { readonly body: string; readonly announcement: string } | undefined
  ): { readonly query: string; readonly params: Array<unknown> } | undefined => {
    if (!dialect.oneStatement || commit.expectedRev === undefined || commit.idempotencyKey !== undefined) return undefined
    const ctes: Array<string> = [`u AS (UPDATE sessions SET ${head.set.join(", ")} WHERE ${head.where} RETURNING id, created_at)`]
    const params: Array<unknown> = [...head.params, ...head.whereParams]
    const add = (cte: string, ...values: Array<unknown>) => {
      ctes.push(`w${ctes.length} AS (${cte})`)
      params.push(...values)
    }
    if (log !== undefined) {
      add(
        "INSERT INTO rein_changes (session_id, created_at, rev_from, rev, body) SELECT id, created_at, ?::bigint, ?::bigint, ?::text FROM u",
        commit.expectedRev + 1,
        commit.rev,
        log.body
      )
    }
    const touched = new Set<string>()
    const created = new Set<number>()
    /** The artifacts' times: one update each, with the last append's. */
    const times = new Map<number, { at: number; rev: number }>()
    const once = (seq: number, field: string, n: number) => {
      const key = `${seq}\u0000${field}\u0000${n}`
      if (touched.has(key)) return false
      touched.add(key)
      return true
    }
    for (const w of plan.writes) {
      switch (w._tag) {
        case "artifact":
          created.add(w.seq)
          add(
            "INSERT INTO artifacts (session_id, seq, kind, fields, created_at, updated_at, created_rev, updated_rev) " +
              "SELECT id, ?::integer, ?::text, ?::text, ?::bigint, ?::bigint, ?::bigint, ?::bigint FROM u",
            w.seq,
            w.kind,
            w.fields,
            w.createdAt,
            w.updatedAt,
            w.rev,
            w.rev
          )
          break
        case "extend":
          if (!once(w.seq, w.field, w.n)) return undefined
          add(
            "UPDATE artifact_chunks SET text = text || ?::text WHERE session_id = ? AND seq = ? AND field = ? AND n = ? " +
              "AND EXISTS (SELECT 1 FROM u)",
            w.text,
            id,
            w.seq,
            w.field,
            w.n
          )
          break
        case "chunk":
          if (!once(w.seq, w.field, w.n)) return undefined
          add(
            "INSERT INTO artifact_chunks (session_id, seq, field, n, text) SELECT id, ?::integer, ?::text, ?::integer, ?::text FROM u",
            w.seq,
            w.field,
            w.n,
            w.text
          )
          break
        case "touch":
          // An artifact created in this same statement: its row is not visible to the update.
          if (created.has(w.seq)) return undefined
          times.set(w.seq, { at: w.at, rev: w.rev })
          break
        case "clear":
        case "set":
          return undefined
      }
    }
    for (const [seq, { at, rev }] of times) {
      add(
        "UPDATE artifacts SET updated_at = ?::bigint, updated_rev = ?::bigint WHERE session_id = ? AND seq = ? " +
          "AND EXISTS (SELECT 1 FROM u)",
        at,
        rev,
        id,
        seq
      )
    }
    const last = log === undefined ? "SELECT id FROM u" : "SELECT pg_notify(?::text, ?::text) FROM u"
    if (log !== undefined) params.push(channel, log.announcement)
    return { query: `WITH ${ctes.join(",\n")}\n${last}`, params }
  }

  /** Sent when the surrounding transaction commits, like every NOTIFY. */
  const announce = (a: Announcement) => sql`SELECT pg_notify(${channel!}, ${encodeAnnouncement(a)})`

  return SessionStore.of({
    list: sql<SessionRow>`SELECT * FROM sessions ORDER BY created_at, ${sql.literal(dialect.insertOrder)}`.pipe(
      Effect.map((rows) =>
        rows.map(toStored)
      ),
      StoreError.refail
    ),
    get: (id) =>
      sql<SessionRow>`SELECT * FROM sessions WHERE id = ${id}`.pipe(
        Effect.map(([r]) =>
          r === undefined ? undefined : toStored(r)
        ),
        StoreError.refail
      ),
    create: (s, sandboxTokenHash = null) =>
      Effect.gen(function*() {
        const rows = yield* sql`INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat, rev, sandbox_token_hash,
            agent, runner, workspace)
          VALUES (${s.id}, ${s.status}, ${s.summary}, ${s.project}, ${s.createdAt}, ${s.lastHeartbeat}, 0, ${sandboxTokenHash},
            ${s.agent}, ${s.runner}, ${s.workspace === null ? null : JSON.stringify(s.workspace)})
          ON CONFLICT (id) DO NOTHING RETURNING id`
        if (rows.length === 0) return yield* new SessionExists({ id: s.id })
        if (channel !== undefined) yield* announce({ type: "session", id: s.id, rev: 0 })
      }).pipe(transaction(sql), StoreError.refailExcept(SessionExists)),
    remove: (id, expected) =>
      Effect.gen(function*() {
        const deleted = yield* (expected === undefined
          ? sql`DELETE FROM sessions WHERE id = ${id} RETURNING id`
          : sql`DELETE FROM sessions WHERE id = ${id} AND rev = ${expected.rev} AND created_at = ${expected.createdAt}
            RETURNING id`)
        if (deleted.length === 0 && expected !== undefined) return yield* new StaleSession({ id })
        yield* sql`DELETE FROM artifact_chunks WHERE session_id = ${id}`
        yield* sql`DELETE FROM artifacts WHERE session_id = ${id}`
        yield* sql`DELETE FROM idempotency_keys WHERE session_id = ${id}`
        if (channel !== undefined && expected !== undefined) {
          const body: LogBody = { removed: true }
          const rev = expected.rev + 1
          yield* sql`INSERT INTO rein_changes (session_id, created_at, rev_from, rev, body)
            VALUES (${id}, ${expected.createdAt}, ${rev}, ${rev}, ${JSON.stringify(body)})`
          yield* announce({ type: "session", id, rev })
        }
      }).pipe(
        transaction(sql),
        Effect.ensuring(Effect.sync(() => {
          tails.delete(id)
          forget(id)
        })),
        StoreError.refailExcept(StaleSession)
      ),
    update: (id, patch) => {
      const set: Record<string, unknown> = {}
      if (patch.status !== undefined) set.status = patch.status
      if (patch.summary !== undefined) set.summary = patch.summary
      if (patch.lastHeartbeat !== undefined) set.last_heartbeat = patch.lastHeartbeat
      if (Object.keys(set).length === 0) return Effect.void
      return sql`UPDATE sessions SET ${sql.update(set)} WHERE id = ${id}`.pipe(Effect.asVoid, StoreError.refail)
    },
    commit: (id, commit: Commit) => {
      const cached = tails.get(id)
      const valid = cached !== undefined &&
        (commit.expectedRev === undefined || (cached.rev === commit.expectedRev && cached.createdAt === commit.createdAt))
      // Appends start from the tails this instance knows, when no other instance wrote since.
      const known = valid ? cached.fields : new Map<string, Tail>()
      const set = ["rev = ?"]
      const params: Array<unknown> = [commit.rev]
      if (commit.lastHeartbeat !== undefined) set.push("last_heartbeat = ?"), params.push(commit.lastHeartbeat)
      if (commit.turn !== undefined && channel !== undefined) set.push("turn = ?"), params.push(JSON.stringify(commit.turn))
      if (commit.status !== undefined) set.push("status = ?"), params.push(commit.status)
      if (commit.summary !== undefined) set.push("summary = ?"), params.push(commit.summary)
      if (commit.pendingPermissions !== undefined) set.push("pending_permissions = ?"), params.push(commit.pendingPermissions)
      if (commit.usage !== undefined) {
        set.push("input_tokens = ?", "output_tokens = ?", "cost_usd = ?")
        params.push(commit.usage.inputTokens, commit.usage.outputTokens, commit.usage.costUsd)
      }
      if (commit.lastStopReason !== undefined) set.push("last_stop_reason = ?"), params.push(commit.lastStopReason)
      if (commit.workspace !== undefined) {
        set.push("workspace = ?"), params.push(commit.workspace === null ? null : JSON.stringify(commit.workspace))
      }
      params.push(id)
      const from = commit.expectedRev
      // The compare-and-set: this session (not an earlier one under the same id), at this rev.
      const where = from === undefined ? "id = ?" : commit.createdAt === undefined ? "id = ? AND rev = ?" : "id = ? AND rev = ? AND created_at = ?"
      const whereParams = from === undefined ? [] : commit.createdAt === undefined ? [from] : [from, commit.createdAt]
      const logged = channel !== undefined && from !== undefined && commit.rev > from
      const body: LogBody = {
        fields: {
          ...(commit.status !== undefined && { status: commit.status }),
          ...(commit.summary !== undefined && { summary: commit.summary }),
          ...(commit.pendingPermissions !== undefined && { pendingPermissions: commit.pendingPermissions }),
          ...(commit.usage !== undefined && { usage: commit.usage }),
          ...(commit.lastStopReason !== undefined && { lastStopReason: commit.lastStopReason }),
          ...(commit.workspace !== undefined && { workspace: commit.workspace })
        },
        lastHeartbeat: commit.lastHeartbeat,
        changes: commit.changes,
        turn: commit.turn
      }
      // JSON escapes what TEXT cannot hold (\u0000) and keeps lone surrogates.
      const log = logged
        ? { body: JSON.stringify(body), announcement: encodeAnnouncement({ type: "session", id, rev: commit.rev }) }
        : undefined
      const changes = coalesce(commit.changes)
      const planned = planWrites(changes, known)
      /** The tails the commit left, once it succeeded (a failed one forgets the session's). */
      let written: ReadonlyMap<string, Tail> | undefined
      const remember = Effect.onExit((exit: Exit.Exit<unknown, unknown>) =>
        Effect.sync(() => {
          forget(id)
          rememberTails(id, commit, known, Exit.isSuccess(exit) ? written : undefined)
        })
      )
      // Bounded, so the statement's text stays short (runs of appends count once).
      const single = "writes" in planned && changes.length <= 16
        ? oneStatement(id, commit, planned, { set, params, where, whereParams }, log)
        : undefined
      if (single !== undefined) {
        let i = 0
        written = (planned as Plan).tails
        // Not through `placeholders`: these statements vary in shape, so they are not cached. Every
        // `?` in them is a placeholder (no operator or literal uses one).
        return sql.unsafe(single.query.replace(/\?/g, () => `$${++i}`), single.params).pipe(
          Effect.flatMap((rows) => rows.length === 0 ? Effect.fail(new StaleSession({ id })) : Effect.void),
          remember,
          StoreError.refailExcept(StaleSession)
        )
      }
      /** The transaction's statements; "stale" when the compare-and-set found another rev. */
      const steps = function*(): Steps<"stale" | "gone" | undefined> {
        let updated: ReadonlyArray<unknown>
        if (log !== undefined && from !== undefined) {
          // One round trip: the compare-and-set, the log row and the NOTIFY, which PostgreSQL
          // sends on COMMIT. When the update finds nothing, neither of the others happens.
          updated = yield* query(
            `WITH u AS (UPDATE sessions SET ${set.join(", ")} WHERE ${where} RETURNING id, created_at),
            l AS (INSERT INTO rein_changes (session_id, created_at, rev_from, rev, body) SELECT id, created_at, ?, ?, ? FROM u)
            SELECT pg_notify(?, ?) FROM u`,
            [
              ...params,
              ...whereParams,
              from + 1,
              commit.rev,
              log.body,
              channel,
              log.announcement
            ]
          )
        } else {
          updated = yield* query(`UPDATE sessions SET ${set.join(", ")} WHERE ${where} RETURNING id`, [...params, ...whereParams])
        }
        // The row lock taken here orders writers of one session across instances; one that lost
        // the race (or finds the session gone) writes nothing.
        if (updated.length === 0 && from !== undefined) return "stale"
        // Writing artifacts of a session that is gone would leave orphan rows behind.
        if (updated.length === 0) return "gone"
        let plan = planned
        if ("missing" in plan) plan = planWrites(changes, new Map([...known, ...yield* readTails(id, plan.missing)]))
        if ("missing" in plan) throw new Error("a plan still missing tails it was given")
        for (const w of plan.writes) yield* runWrite(id, w)
        written = plan.tails
        if (commit.idempotencyKey !== undefined) {
          // Each key gets the next number of its session, so the window is exactly the last keys,
          // and trimming it is one indexed range delete.
          const last = yield* query("SELECT coalesce(max(n), 0) AS n FROM idempotency_keys WHERE session_id = ?", [id])
          const n = Number(last[0]?.n ?? 0) + 1
          yield* query("INSERT INTO idempotency_keys (session_id, key, n) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [
            id,
            commit.idempotencyKey,
            n
          ])
          yield* query("DELETE FROM idempotency_keys WHERE session_id = ? AND n <= ?", [id, n - idempotencyWindow])
        }
        return undefined
      }
      // Through the client: statements go straight to the transaction's connection as prepared
      // SQL, skipping per-statement compilation and spans.
      const viaClient = Effect.gen(function*() {
        // withTransaction provides the connection; the type system cannot see that.
        const [connection] = Option.getOrThrow(yield* Effect.serviceOption(SqlClient.TransactionConnection))
        return yield* drive(steps, (query, params) => connection.execute(dialect.placeholders(query), params, undefined))
      }).pipe(transaction(sql))
      return syncOr((exec) => driveSync(steps(), exec), viaClient).pipe(
        Effect.flatMap((r) =>
          r === "stale"
            ? Effect.fail(new StaleSession({ id }))
            : r === "gone"
            ? Effect.fail(new Error(`session ${id} is not in the store`))
            : Effect.void
        ),
        remember,
        StoreError.refailExcept(StaleSession)
      )
    },
    artifacts: (id, from) =>
      Effect.gen(function*() {
        if (dialect.snapshotRead !== undefined) yield* sql.unsafe(dialect.snapshotRead)
        const session = yield* sql<{ rev: number; created_at: number }>`SELECT rev, created_at FROM sessions WHERE id = ${id}`
        const rev = Number(session[0]?.rev ?? 0)
        const createdAt = Number(session[0]?.created_at ?? 0)
        const now = yield* Clock.currentTimeMillis
        const history = kept(id, rev, createdAt, now)
        if (history !== undefined) return { rev, artifacts: resumeFrom(history, from) }
        const anchor = from === undefined
          ? []
          : yield* sql<{ created_rev: number; last: number }>`SELECT created_rev,
              (SELECT max(seq) FROM artifacts WHERE session_id = ${id}) AS last
            FROM artifacts WHERE session_id = ${id} AND seq = ${from}`
        // A resume from the first half reads at most twice what it needs, and keeps the whole
        // history for the next readers at this rev; one near the end reads only its tail.
        if (from === undefined || anchor[0] === undefined || from - 1 < Number(anchor[0].last) / 2) {
          const rows = yield* sql<ArtifactRow & { created_rev: number; updated_rev: number }>`SELECT seq, kind, fields,
              created_at, updated_at, created_rev, updated_rev
            FROM artifacts WHERE session_id = ${id} ORDER BY seq`
          const chunks = yield* sql<ChunkRow>`SELECT seq, field, text FROM artifact_chunks
            WHERE session_id = ${id} ORDER BY seq, field, n`
          let chars = 0
          for (const c of chunks) chars += c.text.length
          const whole: History = {
            rev,
            createdAt,
            at: now,
            artifacts: assemble(rows, chunks),
            revs: rows.map((r) => ({ created: Number(r.created_rev), updated: Number(r.updated_rev) })),
            chars
          }
          keep(id, whole)
          return { rev, artifacts: resumeFrom(whole, from) }
        }
        const since = anchor[0].created_rev
        const rows = yield* sql<ArtifactRow>`SELECT seq, kind, fields, created_at, updated_at FROM artifacts
          WHERE session_id = ${id} AND (seq >= ${from} OR updated_rev > ${since}) ORDER BY seq`
        const chunks = yield* sql<ChunkRow>`SELECT c.seq, c.field, c.text FROM artifact_chunks c
          JOIN artifacts a ON a.session_id = c.session_id AND a.seq = c.seq
          WHERE c.session_id = ${id} AND (a.seq >= ${from} OR a.updated_rev > ${since})
          ORDER BY c.seq, c.field, c.n`
        return { rev, artifacts: assemble(rows, chunks) }
      }).pipe(transaction(sql), StoreError.refail),
    page: (id, q) => read(() => pageSteps(id, { ...q, ...(q.before !== undefined && { before: Math.min(q.before, seqMax) }) })),
    tail: (id, n) => read(() => tailSteps(id, n)),
    hasIdempotencyKey: (id, key) => {
      // Asked before every keyed batch: on SQLite, one synchronous read.
      return syncOr(
        (exec) => exec("SELECT 1 FROM idempotency_keys WHERE session_id = ? AND key = ?", [id, key]),
        sql`SELECT 1 FROM idempotency_keys WHERE session_id = ${id} AND key = ${key}`
      ).pipe(Effect.map((rows) => rows.length > 0), StoreError.refail)
    },
    // The health check's: on SQLite synchronous, so a probe costs no turn of the client's lock.
    ping: syncOr((exec) => exec("SELECT 1", []), sql`SELECT 1`).pipe(Effect.asVoid, StoreError.refail),
    runners: {
      list: sql<{ id: string; name: string; token_hash: string; created_at: number }>`SELECT * FROM runners ORDER BY created_at`.pipe(
        Effect.map((rows) => rows.map((r) => ({ id: r.id, name: r.name, tokenHash: r.token_hash, createdAt: Number(r.created_at) }))),
        StoreError.refail
      ),
      create: (r) =>
        sql`INSERT INTO runners (id, name, token_hash, created_at) VALUES (${r.id}, ${r.name}, ${r.tokenHash}, ${r.createdAt})`.pipe(
          Effect.asVoid,
          StoreError.refail
        ),
      remove: (id) =>
        sql`DELETE FROM runners WHERE id = ${id} RETURNING id`.pipe(Effect.map((rows) => rows.length > 0), StoreError.refail)
    }
  })
})
