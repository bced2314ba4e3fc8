/**
 * What tells a person a session needs them (issue 16), end to end over real HTTP: the record's
 * `pendingPermissions`, `usage` and `lastStopReason`, their `session_updated` fields, and the
 * `?attention=1` list and stream; through a restart on a SQLite file, a file (and a PostgreSQL
 * database) written by the previous version, eviction of the reducer state, and two instances
 * sharing PostgreSQL.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { ReinClient, type SessionsState } from "../src/client/index.js"
import type { ServerOptions } from "../src/Server.js"
import * as Sql from "../src/SessionStore/Sql.js"
import { pgSchema, type SseClient, sse, start, type TestServer, tempDir } from "./helpers.js"

const databaseUrl = process.env.DATABASE_URL
const noPg = databaseUrl === undefined || databaseUrl === ""

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const boot = async (options: ServerOptions = {}) => {
  const server = await start(options)
  cleanups.push(() => server.close())
  return server
}

const stream = async (url: string) => {
  const client = await sse(url)
  cleanups.push(() => client.close())
  expect(client.status).toBe(200)
  await client.waitFor((e) => e.event === "snapshot_complete")
  return client
}

/** A sandbox: the command stream held open, and events posted. */
const sandbox = async (s: TestServer, id: string) => {
  const commands = await stream(`${s.url}/sessions/${id}/commands`)
  const post = async (...events: Array<unknown>) => {
    const r = await s.request("POST", `/sessions/${id}/events`, events)
    expect(r.status, JSON.stringify(r.body)).toBe(202)
  }
  return { commands, post }
}

const reply = async (s: TestServer, id: string, requestId: string, decision = "allow_once") => {
  const r = await s.request("POST", `/sessions/${id}/commands`, { type: "permission_reply", requestId, decision })
  expect(r.status, JSON.stringify(r.body)).toBe(202)
}

const record = async (s: TestServer, id: string) => {
  const r = await s.request("GET", `/sessions/${id}`)
  expect(r.status).toBe(200)
  return r.body
}

const ids = async (s: TestServer, query: string) => {
  const r = await s.request("GET", `/sessions${query}`)
  expect(r.status, JSON.stringify(r.body)).toBe(200)
  return (r.body as Array<{ id: string }>).map((x) => x.id)
}

/** Waits for the next `session_updated` of `id` (after `from`) and returns its fields. */
const nextUpdate = async (c: SseClient, id: string, from: number) =>
  (await c.waitFor((e) => e.event === "session_updated" && e.data.id === id, 10_000, from)).data.fields

/** The list a client keeps from a session stream: snapshots, created, updated, removed. */
const fold = (c: SseClient) => {
  const m = new Map<string, any>()
  for (const e of c.events) {
    if (e.event === "session_snapshot" || e.event === "session_created") m.set(e.data.session.id, e.data.session)
    else if (e.event === "session_updated") m.set(e.data.id, { ...m.get(e.data.id), ...e.data.fields })
    else if (e.event === "session_removed") m.delete(e.data.id)
  }
  return m
}

const zero = { inputTokens: 0, outputTokens: 0, costUsd: null }

describe("attention fields over HTTP", () => {
  it("a batch sets pendingPermissions, usage and lastStopReason, on the record and in session_updated, filtered by project", async () => {
    const s = await boot()
    const created = await s.request("POST", "/sessions/a1", { project: "web" })
    expect(created.body).toMatchObject({ pendingPermissions: 0, usage: zero, lastStopReason: null })
    await s.request("POST", "/sessions/other", { project: "cli" })
    const web = await stream(`${s.url}/sessions/stream?project=web`)
    const all = await stream(`${s.url}/sessions/stream`)
    const sb = await sandbox(s, "a1")
    const other = await sandbox(s, "other")
    // The sandbox's own update (live) first: it may arrive after the batch below is posted.
    await web.waitFor((e) => e.event === "session_updated" && e.data.id === "a1" && e.data.fields.status === "live", 10_000)

    let from = web.events.length
    await sb.post(
      { type: "turn_start" },
      { type: "usage", inputTokens: 100, outputTokens: 20, costUsd: 0.5 },
      { type: "permission_request", requestId: "r1", title: "Write a.ts?" },
      { type: "permission_request", requestId: "r2", title: "Run tests?" },
      { type: "usage", inputTokens: 10, outputTokens: 2 }
    )
    expect(await record(s, "a1")).toMatchObject({
      pendingPermissions: 2,
      usage: { inputTokens: 110, outputTokens: 22, costUsd: 0.5 },
      lastStopReason: null
    })
    // One batch, one notice with every field it changed.
    expect(await nextUpdate(web, "a1", from)).toEqual({
      pendingPermissions: 2,
      usage: { inputTokens: 110, outputTokens: 22, costUsd: 0.5 }
    })

    from = web.events.length
    await reply(s, "a1", "r1")
    expect(await nextUpdate(web, "a1", from)).toEqual({ pendingPermissions: 1 })
    expect((await record(s, "a1")).pendingPermissions).toBe(1)

    // Usage adds up across turns; the end of the turn that asked cancels r2.
    from = web.events.length
    await sb.post(
      { type: "turn_end", stopReason: "end_turn" },
      { type: "turn_start" },
      { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.25 },
      { type: "turn_end", stopReason: "cancelled" }
    )
    expect(await nextUpdate(web, "a1", from)).toEqual({
      status: "idle",
      pendingPermissions: 0,
      usage: { inputTokens: 111, outputTokens: 23, costUsd: 0.75 },
      lastStopReason: "cancelled"
    })
    const artifacts = (await s.request("GET", "/sessions/a1/artifacts")).body as Array<any>
    expect(artifacts.filter((a) => a.kind === "permission").map((a) => a.decision)).toEqual(["allow_once", "cancelled"])

    // The other project's session changes reach the full stream, not the filtered one.
    const before = web.events.length
    const beforeAll = all.events.length
    await other.post({ type: "turn_end", stopReason: "error" })
    expect(await nextUpdate(all, "other", beforeAll)).toEqual({ status: "idle", lastStopReason: "error" })
    await sb.post({ type: "summary", text: "marker" })
    await nextUpdate(web, "a1", before)
    expect(web.events.slice(before).every((e) => e.data?.id !== "other")).toBe(true)

    // What every stream's fold holds is what the server lists, field for field.
    const listed = (await s.request("GET", "/sessions")).body as Array<any>
    const strip = ({ lastHeartbeat: _, ...rest }: any) => rest
    expect([...fold(all).values()].map(strip)).toEqual(listed.map(strip))
  })

  it("?attention=1 lists only sessions that need someone; on the stream they enter as created and leave as removed", async () => {
    const s = await boot()
    for (const id of ["calm", "asks", "fails"]) await s.request("POST", `/sessions/${id}`, { project: id === "fails" ? "x" : null })
    const calm = await sandbox(s, "calm")
    const asks = await sandbox(s, "asks")
    const fails = await sandbox(s, "fails")
    await calm.post({ type: "turn_start" }, { type: "turn_end", stopReason: "end_turn" })
    await asks.post({ type: "turn_start" }, { type: "permission_request", requestId: "p1", title: "ok?" })
    expect(await ids(s, "?attention=1")).toEqual(["asks"])
    expect(await ids(s, "?attention=0")).toEqual(["calm", "asks", "fails"])

    const view = await stream(`${s.url}/sessions/stream?attention=1`)
    const viewX = await stream(`${s.url}/sessions/stream?attention=1&project=x`)
    expect(view.events.filter((e) => e.event === "session_snapshot").map((e) => e.data.session.id)).toEqual(["asks"])
    expect(viewX.events.filter((e) => e.event === "session_snapshot")).toEqual([])

    // An error ending the last turn brings a session in, whole.
    let from = view.events.length
    await fails.post({ type: "turn_start" }, { type: "turn_end", stopReason: "error" })
    const entered = await view.waitFor((e) => e.event === "session_created", 10_000, from)
    expect(entered.data.session).toMatchObject({ id: "fails", lastStopReason: "error", status: "idle" })
    expect((await viewX.waitFor((e) => e.event === "session_created")).data.session.id).toBe("fails")
    expect(await ids(s, "?attention=1")).toEqual(["asks", "fails"])
    expect(await ids(s, "?attention=1&project=x")).toEqual(["fails"])

    // Still needing someone: its changes are updates; answered, it leaves (it is not deleted).
    from = view.events.length
    await asks.post({ type: "permission_request", requestId: "p2", title: "and this?" })
    expect(await nextUpdate(view, "asks", from)).toEqual({ pendingPermissions: 2 })
    await reply(s, "asks", "p1")
    await reply(s, "asks", "p2", "reject")
    await view.waitFor((e) => e.event === "session_removed" && e.data.id === "asks", 10_000, from)
    expect((await record(s, "asks")).pendingPermissions).toBe(0)
    // A new turn that ends well takes the failed one out too.
    from = view.events.length
    await fails.post({ type: "turn_start" }, { type: "turn_end", stopReason: "end_turn" })
    await view.waitFor((e) => e.event === "session_removed" && e.data.id === "fails", 10_000, from)
    await viewX.waitFor((e) => e.event === "session_removed" && e.data.id === "fails")
    // Sessions that never needed anyone never showed up; the fold is the list.
    await calm.post({ type: "summary", text: "calm stays out" })
    expect(view.events.some((e) => JSON.stringify(e.data ?? {}).includes("calm"))).toBe(false)
    expect(fold(view).size).toBe(0)
    expect(await ids(s, "?attention=1")).toEqual([])

    // Deleted while in the view: removed once.
    await asks.post({ type: "permission_request", requestId: "p3", title: "again?" })
    await view.waitFor((e) => e.event === "session_created" && e.data.session.id === "asks", 10_000, from)
    from = view.events.length
    expect((await s.request("DELETE", "/sessions/asks")).status).toBe(204)
    await view.waitFor((e) => e.event === "session_removed" && e.data.id === "asks", 10_000, from)
    expect(fold(view).size).toBe(0)
  })

  it("the typed client: listSessions and watchSessions with attention keep exactly the server's view", async () => {
    const s = await boot()
    const client = new ReinClient({ baseUrl: s.url })
    await client.createSession("k1", { project: "p" })
    await client.createSession("k2", { project: "p" })
    const states: Array<SessionsState> = []
    const watch = client.watchSessions({ attention: true, project: "p", onChange: (st) => states.push(st) })
    cleanups.push(() => watch.close())
    const ids = (st: SessionsState) => st.sessions.map((x) => x.id)
    const until = async (what: string, ok: (st: SessionsState) => boolean) => {
      const deadline = Date.now() + 10_000
      while (!(watch.state.synced && ok(watch.state))) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(watch.state.sessions)}`)
        await new Promise((r) => setTimeout(r, 10))
      }
    }
    await until("the empty view", (st) => st.sessions.length === 0)
    const k1 = await sandbox(s, "k1")
    await k1.post({ type: "turn_start" }, { type: "permission_request", requestId: "w", title: "?" })
    await until("k1 in the view", (st) => ids(st).join() === "k1" && st.sessions[0]!.pendingPermissions === 1)
    expect(await client.listSessions({ attention: true, project: "p" })).toEqual(watch.state.sessions)
    expect((await client.listSessions({ attention: true, project: "other" })).length).toBe(0)
    await client.replyPermission("k1", "w", "allow_once")
    await until("k1 out of the view", (st) => st.sessions.length === 0)
    expect(await client.listSessions({ attention: true })).toEqual([])
    expect(states.some((st) => ids(st).includes("k2"))).toBe(false)
  })

  it("attention must be 0 or 1: 400 naming it, on both routes", async () => {
    const s = await boot()
    for (const path of ["/sessions?attention=yes", "/sessions/stream?attention=2"]) {
      const r = await s.request("GET", path)
      expect(r.status).toBe(400)
      expect(r.body.error.code).toBe("bad_request")
      expect(r.body.error.message).toMatch(/^attention: must be 1 or 0/)
    }
  })

  it("survives a restart on a SQLite file", async () => {
    const { cleanup, dir } = tempDir()
    cleanups.push(cleanup)
    const dbPath = join(dir, "rein.db")
    const first = await start({ dbPath })
    await first.request("POST", "/sessions/keep")
    const sb = await sandbox(first, "keep")
    await sb.post(
      { type: "turn_start" },
      { type: "usage", inputTokens: 7, outputTokens: 3, costUsd: 0.125 },
      { type: "turn_end", stopReason: "error" },
      { type: "turn_start" },
      { type: "permission_request", requestId: "r1", title: "a" },
      { type: "permission_request", requestId: "r2", title: "b" }
    )
    await reply(first, "keep", "r1")
    const before = await record(first, "keep")
    sb.commands.close()
    await first.close()

    const second = await boot({ dbPath })
    const after = await record(second, "keep")
    expect(after).toEqual({ ...before, status: "disconnected" })
    expect(after).toMatchObject({ pendingPermissions: 1, usage: { inputTokens: 7, outputTokens: 3, costUsd: 0.125 }, lastStopReason: "error" })
    expect(await ids(second, "?attention=1")).toEqual(["keep"])
    // The rebuilt reducer continues the count and the totals.
    const again = await sandbox(second, "keep")
    await reply(second, "keep", "r2")
    await again.post({ type: "usage", inputTokens: 1, outputTokens: 1 }, { type: "turn_end" })
    expect(await record(second, "keep")).toMatchObject({
      pendingPermissions: 0,
      usage: { inputTokens: 8, outputTokens: 4, costUsd: 0.125 },
      lastStopReason: null
    })
  })

  it("a SQLite file written by the previous version gets the counts from its artifacts", async () => {
    const { cleanup, dir } = tempDir()
    cleanups.push(cleanup)
    const filename = join(dir, "old.db")
    await Effect.runPromise(
      writePreviousVersion(Sql.sqlite, 2).pipe(Effect.provide(SqliteClient.layer({ filename })), Effect.scoped)
    )
    const s = await boot({ dbPath: filename })
    expect(await record(s, "old")).toMatchObject({
      status: "disconnected",
      pendingPermissions: 2,
      usage: { inputTokens: 30, outputTokens: 5, costUsd: 0.5 },
      lastStopReason: null
    })
    expect(await record(s, "empty")).toMatchObject({ pendingPermissions: 0, usage: zero, lastStopReason: null })
    expect(await ids(s, "?attention=1")).toEqual(["old"])
    // And it goes on from there.
    const sb = await sandbox(s, "old")
    await reply(s, "old", "q1")
    await sb.post({ type: "usage", inputTokens: 1, outputTokens: 0, costUsd: 0.25 })
    expect(await record(s, "old")).toMatchObject({ pendingPermissions: 1, usage: { inputTokens: 31, outputTokens: 5, costUsd: 0.75 } })
  })

  it("with the reducer state evicted after every write, the count goes on from the store", async () => {
    const { cleanup, dir } = tempDir()
    cleanups.push(cleanup)
    const s = await boot({ dbPath: join(dir, "rein.db"), residentSessions: 0 })
    await s.request("POST", "/sessions/ev")
    const sb = await sandbox(s, "ev")
    const list = await stream(`${s.url}/sessions/stream`)
    await sb.post({ type: "turn_start" }, { type: "permission_request", requestId: "a", title: "a" })
    await sb.post({ type: "permission_request", requestId: "b", title: "b" }, { type: "usage", inputTokens: 2, outputTokens: 2 })
    await sb.post({ type: "usage", inputTokens: 3, outputTokens: 1, costUsd: 1 })
    // Everything before the reply has arrived (the list is in order): the count reached 2, then the cost.
    await list.waitFor((e) => e.event === "session_updated" && e.data.id === "ev" && e.data.fields.usage?.costUsd === 1, 10_000)
    const beforeReply = list.events.length
    await reply(s, "ev", "b")
    expect(await record(s, "ev")).toMatchObject({ pendingPermissions: 1, usage: { inputTokens: 5, outputTokens: 3, costUsd: 1 } })
    // The reply's own update first (a stream may deliver it after the GET above answered), so the next is the turn's.
    await list.waitFor((e) => e.event === "session_updated" && e.data.id === "ev" && e.data.fields.pendingPermissions === 1, 10_000, beforeReply)
    // A cancelled turn (judged on a rebuilt state) cancels the one left.
    const from = list.events.length
    await sb.post({ type: "turn_end", stopReason: "cancelled" })
    expect(await nextUpdate(list, "ev", from)).toEqual({ status: "idle", pendingPermissions: 0, lastStopReason: "cancelled" })
    expect(fold(list).get("ev")).toMatchObject({ pendingPermissions: 0, usage: { inputTokens: 5, outputTokens: 3, costUsd: 1 } })
  })
})

/**
 * A database as the previous version left it: its migrations (the first `upTo`), a session with
 * two unanswered permissions (one answered), two turns' usage, and one session with nothing.
 */
const writePreviousVersion = (dialect: Sql.Dialect, upTo: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrator.make({})({
      loader: Effect.map(dialect.migrations, (all) => all.filter(([id]) => id <= upTo)),
      table: "rein_migrations"
    })
    const now = Date.now()
    for (const id of ["old", "empty"]) {
      yield* sql`INSERT INTO sessions (id, status, summary, project, created_at, last_heartbeat, rev)
        VALUES (${id}, 'live', NULL, NULL, ${now}, ${now}, 5)`
    }
    const artifact = (seq: number, kind: string, fields: Record<string, unknown>) =>
      sql`INSERT INTO artifacts (session_id, seq, kind, fields, created_at, updated_at, created_rev, updated_rev)
        VALUES ('old', ${seq}, ${kind}, ${JSON.stringify(fields)}, ${now}, ${now}, ${seq}, ${seq})`
    const permission = (requestId: string, decision: string | null) => ({
      requestId,
      toolCallId: null,
      // NUL as JSON escapes it: PostgreSQL's jsonb would refuse this row.
      title: `write\u0000 ${requestId}?`,
      options: null,
      decision,
      optionId: null
    })
    yield* artifact(1, "permission", permission("q1", null))
    yield* artifact(2, "permission", permission("q2", "allow_once"))
    yield* artifact(3, "usage", { inputTokens: 10, outputTokens: 5, costUsd: null, context: null })
    yield* artifact(4, "usage", { inputTokens: 20, outputTokens: 0, costUsd: 0.5, context: { used: 1, size: 2 } })
    yield* artifact(5, "permission", permission("q3", null))
  })

describe.skipIf(noPg)("attention fields across two instances on PostgreSQL", () => {
  const schema = async () => {
    const s = await pgSchema(databaseUrl!)
    cleanups.push(s.drop)
    return s.url
  }

  it("each change reaches the other instance's record, stream and attention view; answered there, it leaves both", async () => {
    const url = await schema()
    const a = await boot({ pgUrl: url, leaseTtl: 1_000 })
    const b = await boot({ pgUrl: url, leaseTtl: 1_000 })
    await a.request("POST", "/sessions/c1", { project: "web" })
    const onB = await stream(`${b.url}/sessions/stream?project=web`)
    const viewB = await stream(`${b.url}/sessions/stream?attention=1`)
    const viewA = await stream(`${a.url}/sessions/stream?attention=1`)
    const sb = await sandbox(a, "c1")
    await onB.waitFor((e) => e.event === "session_updated" && e.data.fields.status === "live")

    let from = onB.events.length
    await sb.post(
      { type: "turn_start" },
      { type: "permission_request", requestId: "r1", title: "deploy?" },
      { type: "usage", inputTokens: 40, outputTokens: 4, costUsd: 0.2 }
    )
    expect(await nextUpdate(onB, "c1", from)).toEqual({ pendingPermissions: 1, usage: { inputTokens: 40, outputTokens: 4, costUsd: 0.2 } })
    expect((await viewB.waitFor((e) => e.event === "session_created")).data.session).toMatchObject({ id: "c1", pendingPermissions: 1 })
    await viewA.waitFor((e) => e.event === "session_created")
    expect(await record(b, "c1")).toMatchObject({ pendingPermissions: 1, usage: { inputTokens: 40, outputTokens: 4, costUsd: 0.2 } })
    expect(await ids(b, "?attention=1")).toEqual(["c1"])

    // Answered on B (the sandbox is on A): the count falls on both, and the session leaves both views.
    from = onB.events.length
    await reply(b, "c1", "r1")
    expect((await sb.commands.waitFor((e) => e.event === "command" && e.data.type === "permission_reply")).data.requestId).toBe("r1")
    expect(await nextUpdate(onB, "c1", from)).toEqual({ pendingPermissions: 0 })
    await viewA.waitFor((e) => e.event === "session_removed")
    await viewB.waitFor((e) => e.event === "session_removed")
    expect(await record(a, "c1")).toMatchObject({ pendingPermissions: 0 })

    // An error ending the turn on A: B's record and view learn it; more usage adds up.
    from = onB.events.length
    await sb.post({ type: "usage", inputTokens: 2, outputTokens: 1, costUsd: 0.05 }, { type: "turn_end", stopReason: "error" })
    expect(await nextUpdate(onB, "c1", from)).toEqual({
      status: "idle",
      usage: { inputTokens: 42, outputTokens: 5, costUsd: 0.25 },
      lastStopReason: "error"
    })
    await viewB.waitFor((e) => e.event === "session_created" && e.data.session.lastStopReason === "error")
    expect(await record(b, "c1")).toEqual(await record(a, "c1"))

    // Events posted through B continue A's totals (B's reducer rebuilt from the store).
    await b.request("POST", "/sessions/c1/events", [{ type: "turn_start" }, { type: "permission_request", requestId: "r2", title: "x" }])
    expect(await record(a, "c1")).toMatchObject({ pendingPermissions: 1, usage: { inputTokens: 42, outputTokens: 5, costUsd: 0.25 } })
  })

  it("a database written by the previous version gets the counts from its artifacts", async () => {
    const url = await schema()
    await Effect.runPromise(
      writePreviousVersion(Sql.pg, 3).pipe(
        Effect.provide(PgClient.layer({ url: Redacted.make(url) })),
        Effect.scoped
      )
    )
    const s = await boot({ pgUrl: url, leaseTtl: 1_000 })
    expect(await record(s, "old")).toMatchObject({
      pendingPermissions: 2,
      usage: { inputTokens: 30, outputTokens: 5, costUsd: 0.5 },
      lastStopReason: null
    })
    expect(await ids(s, "?attention=1")).toEqual(["old"])
  })
})
