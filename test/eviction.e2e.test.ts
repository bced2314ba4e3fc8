/**
 * Memory holds only the sessions in use: a session whose reducer state was dropped (evicted) is
 * rebuilt from the store when next written. Nothing observable may change: the same script over
 * real HTTP on a server that keeps every state resident and on servers that evict after every
 * write (or after a tiny idle time) gives exactly the same answers, streams and artifacts.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Either from "effect/Either"
import { afterAll, describe, expect, it } from "vitest"
import { applyChange, type Artifact } from "../src/Domain/Artifact.js"
import { noUsage } from "../src/Domain/Session.js"
import * as Reducer from "../src/Reducer.js"
import type { ServerOptions } from "../src/Server.js"
import { eventually, pgSchema, sse, start, type TestServer } from "./helpers.js"

const dirs: Array<string> = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
const dbFile = () => {
  const d = mkdtempSync(join(tmpdir(), "rein-evict-"))
  dirs.push(d)
  return join(d, "rein.db")
}

/** Times differ from run to run; everything else must not. */
const strip = (x: unknown): unknown => {
  if (Array.isArray(x)) return x.map(strip)
  if (typeof x === "object" && x !== null) {
    return Object.fromEntries(
      Object.entries(x).filter(([k]) => !["createdAt", "updatedAt", "lastHeartbeat", "at"].includes(k)).map(([k, v]) => [k, strip(v)])
    )
  }
  return x
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/**
 * The script: a turn of tool calls with an open text delta, a plan and usage spread over several
 * batches (each batch after the state may have been dropped), a duplicate tool call refused,
 * a permission answered through a connected sandbox, an idempotent retry, and the streams.
 */
const script = async (s: TestServer, pause: () => Promise<void>) => {
  const out: Array<unknown> = []
  const note = (what: string, x: unknown) => out.push([what, strip(x)])
  const id = "evicted"
  const post = async (events: unknown, headers: Record<string, string> = {}) => {
    const r = await s.request("POST", `/sessions/${id}/events`, events, headers)
    note("ingest", { status: r.status, body: r.body })
    await pause()
    return r
  }
  note("create", (await s.request("POST", `/sessions/${id}`, { project: "p" })).body)
  const sandbox = await sse(`${s.url}/sessions/${id}/commands`)
  try {
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    await post([
      { type: "turn_start" },
      { type: "plan", entries: [{ content: "look", status: "in_progress" }] },
      { type: "usage", inputTokens: 10, outputTokens: 2, costUsd: 0.5 },
      { type: "text_delta", delta: "Hello, " }
    ])
    await pause()
    // Continues the open text delta (the same artifact) across the eviction.
    await post({ type: "text_delta", delta: "first " })
    await post({ type: "text_delta", delta: "world." })
    // The plan and usage of the turn continue, not start over.
    await post([{ type: "plan", entries: [{ content: "look", status: "completed" }] }, { type: "usage", inputTokens: 5, outputTokens: 1 }])
    await post([
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "{\"cmd\":" },
      { type: "tool_call_start", toolCallId: "t2", name: "read" },
      { type: "text_delta", delta: "part", partId: "p1" }
    ])
    await post([{ type: "tool_call_input_delta", toolCallId: "t1", delta: "\"ls\"}" }, { type: "text_delta", delta: " two", partId: "p1" }])
    // Known tool calls are known after the rebuild: a second start is refused, unknown ends too.
    await post({ type: "tool_call_start", toolCallId: "t1", name: "again" })
    await post({ type: "tool_call_end", toolCallId: "nope" })
    await post({ type: "tool_call_end", toolCallId: "t1", output: "a b" })
    await post({ type: "permission_request", requestId: "r1", toolCallId: "t2", title: "Read /etc?" })
    const reply = await s.request("POST", `/sessions/${id}/commands`, { type: "permission_reply", requestId: "r1", decision: "allow_once" })
    note("reply", { status: reply.status, body: reply.body })
    note("command", (await sandbox.waitFor((e) => e.event === "command")).data)
    await pause()
    // Answered once: a second reply is a conflict, after the rebuild too.
    const again = await s.request("POST", `/sessions/${id}/commands`, { type: "permission_reply", requestId: "r1", decision: "reject" })
    note("reply again", { status: again.status, body: again.body })
    await pause()
    // An idempotent retry is applied once, whether the state was dropped in between or not.
    await post({ type: "file_change", path: "a.ts", action: "modify" }, { "idempotency-key": "k1" })
    await post({ type: "file_change", path: "a.ts", action: "modify" }, { "idempotency-key": "k1" })
    await post([{ type: "tool_call_end", toolCallId: "t2", isError: true }, { type: "turn_end", stopReason: "end_turn" }])
    // A new turn: plan and usage start over.
    await post([{ type: "turn_start" }, { type: "plan", entries: [] }, { type: "usage", inputTokens: 1, outputTokens: 1 }])
    await post([{ type: "tool_call_start", toolCallId: "t3", name: "bash" }, { type: "turn_end", stopReason: "cancelled" }])
  } finally {
    sandbox.close()
  }
  await eventually(async () => (await s.request("GET", `/sessions/${id}`)).body.status === "disconnected", 10_000, "disconnected")
  note("session", (await s.request("GET", `/sessions/${id}`)).body)
  const artifacts = (await s.request("GET", `/sessions/${id}/artifacts`)).body as Array<{ seq: number }>
  note("artifacts", artifacts)
  const full = await sse(`${s.url}/sessions/${id}/stream`)
  try {
    await full.waitFor((e) => e.event === "snapshot_complete")
    note("stream", full.events.map((e) => [e.event, e.id, e.data]))
  } finally {
    full.close()
  }
  for (const from of [1, 3, artifacts.length]) {
    const resumed = await sse(`${s.url}/sessions/${id}/stream`, { "last-event-id": String(from) })
    try {
      await resumed.waitFor((e) => e.event === "snapshot_complete")
      note(`resume ${from}`, resumed.events.map((e) => [e.event, e.id, e.data]))
    } finally {
      resumed.close()
    }
  }
  // A live stream opened on the evicted session sees the next write.
  const live = await sse(`${s.url}/sessions/${id}/stream`)
  try {
    await live.waitFor((e) => e.event === "snapshot_complete")
    await post({ type: "error", message: "late" })
    note("live", (await live.waitFor((e) => e.event !== "snapshot" && e.event !== "snapshot_complete")).data)
  } finally {
    live.close()
  }
  note("list", (await s.request("GET", "/sessions")).body)
  return out
}

const run = async (options: ServerOptions, pause: () => Promise<void> = async () => {}) => {
  const s = await start({ ...(options.pgUrl === undefined && { dbPath: dbFile() }), ...options })
  try {
    return await script(s, pause)
  } finally {
    await s.close()
  }
}

describe("eviction: a session rebuilt from the store behaves exactly as a resident one", () => {
  it("evicted after every write (residentSessions: 0) = always resident", async () => {
    const resident = await run({ residentSessions: 1_000_000, idleEvictAfter: 3_600_000 })
    const evicted = await run({ residentSessions: 0 })
    expect(evicted).toEqual(resident)
    // The script itself means something: the delta continued, the duplicate was refused, the retry applied once.
    const artifacts = (resident.find((x) => (x as Array<unknown>)[0] === "artifacts") as [string, Array<any>])[1]
    expect(artifacts.filter((a) => a.kind === "text" && a.partId === undefined).map((a) => a.text)).toEqual(["Hello, first world."])
    expect(artifacts.filter((a) => a.kind === "plan").map((a) => a.entries.length)).toEqual([1, 0])
    expect(artifacts.filter((a) => a.kind === "usage").map((a) => [a.inputTokens, a.outputTokens, a.costUsd])).toEqual([[15, 3, 0.5], [
      1,
      1,
      null
    ]])
    expect(artifacts.filter((a) => a.kind === "file_change")).toHaveLength(1)
    expect(artifacts.find((a) => a.toolCallId === "t3")?.status).toBe("cancelled")
    expect(resident).toContainEqual(["ingest", { status: 400, body: expect.objectContaining({ error: expect.anything() }) }])
    expect(resident).toContainEqual(["reply again", { status: 409, body: expect.anything() }])
  }, 60_000)

  it("evicted by idle time (idleEvictAfter) = always resident", async () => {
    const resident = await run({ residentSessions: 1_000_000, idleEvictAfter: 3_600_000 })
    // The sweep runs every 50 ms at the least: waiting 150 ms after each write leaves it idle long enough.
    const idle = await run({ idleEvictAfter: 1 }, () => sleep(150))
    expect(idle).toEqual(resident)
  }, 60_000)

  it("a restart keeps everything but the open turn, as before (the turn lives in memory only alone)", async () => {
    const db = dbFile()
    const a = await start({ dbPath: db, residentSessions: 0 })
    try {
      await a.request("POST", "/sessions/x", {})
      expect((await a.request("POST", "/sessions/x/events", [{ type: "tool_call_start", toolCallId: "t1", name: "n" }])).status).toBe(202)
    } finally {
      await a.close()
    }
    const b = await start({ dbPath: db, residentSessions: 0 })
    try {
      const dup = await b.request("POST", "/sessions/x/events", { type: "tool_call_start", toolCallId: "t1", name: "n" })
      expect(dup.status).toBe(400)
      expect((await b.request("POST", "/sessions/x/events", { type: "tool_call_end", toolCallId: "t1" })).status).toBe(202)
      expect((await b.request("GET", "/sessions/x/artifacts")).body.map((x: any) => x.status)).toEqual(["done"])
    } finally {
      await b.close()
    }
  }, 30_000)
})

const databaseUrl = process.env.DATABASE_URL
describe.skipIf(databaseUrl === undefined)("eviction on PostgreSQL (clustered)", () => {
  it("evicted after every write = always resident", async () => {
    const a = await pgSchema(databaseUrl!)
    const b = await pgSchema(databaseUrl!)
    try {
      const resident = await run({ pgUrl: a.url, residentSessions: 1_000_000, idleEvictAfter: 3_600_000 })
      const evicted = await run({ pgUrl: b.url, residentSessions: 0 })
      expect(evicted).toEqual(resident)
    } finally {
      await a.drop()
      await b.drop()
    }
  }, 60_000)
})

describe("eviction: the reducer state is exactly its artifacts plus the turn", () => {
  /** Plain data of a state, maps sorted, so two states compare by value. */
  const plain = (s: Reducer.ReducerState) => ({
    ...s,
    parts: Array.from(s.parts).sort(),
    toolCalls: Array.from(s.toolCalls).sort(),
    permissions: Array.from(s.permissions).sort()
  })
  it("fromArtifacts(artifacts, turnOf(state)) rebuilds the state after every batch", () => {
    const batches: ReadonlyArray<ReadonlyArray<Reducer.Input>> = [
      [{ type: "turn_start" }, { type: "plan", entries: [] }, { type: "text_delta", delta: "a" }],
      [{ type: "text_delta", delta: "b" }, { type: "usage", inputTokens: 1, outputTokens: 2, costUsd: 1 }],
      [{ type: "tool_call_start", toolCallId: "t1", name: "x" }, { type: "reasoning_delta", delta: "r", partId: "p" }],
      [{ type: "permission_request", requestId: "r1", title: "ok?" }, { type: "tool_call_end", toolCallId: "t1" }],
      [{ type: "permission_decision", requestId: "r1", decision: "allow_once" }, { type: "reasoning_delta", delta: "s" }],
      [{ type: "tool_call_start", toolCallId: "t2", name: "y" }, { type: "turn_end", stopReason: "cancelled" }],
      [{ type: "user_message", text: "hi" }, { type: "custom", name: "c" }, { type: "file_change", path: "p", action: "create" }]
    ]
    let state = Reducer.initial
    let artifacts: Array<Artifact> = []
    for (const batch of batches) {
      const r = Either.getOrThrow(Reducer.reduce(state, { status: "live", usage: noUsage }, batch, 1))
      state = r.state
      for (const c of r.changes) {
        if (c._tag === "created") artifacts.push(c.artifact)
        else artifacts = artifacts.map((a) => a.seq === c.seq ? applyChange(a, c) : a)
      }
      expect(plain(Reducer.fromArtifacts(artifacts, Reducer.turnOf(state)))).toEqual(plain(state))
    }
  })
})
