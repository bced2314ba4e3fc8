/**
 * Limits and failure modes: the stream cap, the per-subscriber buffer, a
 * failing store, a locked SQLite file, and shutdown with thousands of open
 * streams.
 */
import { Effect, Layer } from "effect"
import { createParser, type EventSourceMessage } from "eventsource-parser"
import { type ClientRequest, request as httpRequest, Agent, type IncomingMessage } from "node:http"
import { createRequire } from "node:module"
import { connect, type Socket } from "node:net"
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { StoreError } from "../src/Domain/Errors.js"
import { makeMemory, SessionStore } from "../src/SessionStore.js"
import {
  captureWarnings,
  eventually,
  foldArtifacts,
  request,
  sorted,
  sse,
  type SseClient,
  type SseEvent,
  start,
  tempDir,
  type TestServer
} from "./helpers.js"
import { ensureBuilt, type ServerProcess, spawnServer } from "./process.js"

/** better-sqlite3 ships no types; only what this file uses. */
interface SqliteDatabase {
  exec(sql: string): void
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new(file: string, options?: { timeout?: number }) => SqliteDatabase

const opened: Array<SseClient> = []
const servers: Array<TestServer> = []
const processes: Array<ServerProcess> = []
const sockets: Array<Socket> = []
const cleanups: Array<() => void> = []

const open = async (url: string, headers: Record<string, string> = {}) => {
  const c = await sse(url, headers)
  opened.push(c)
  return c
}
const startServer = async (options: Parameters<typeof start>[0] = {}) => {
  const s = await start({ bootstrapTimeout: 600_000, ...options })
  servers.push(s)
  return s
}
const spawned = async (args: ReadonlyArray<string>) => {
  const p = await spawnServer(args)
  processes.push(p)
  return p
}
const stopProcess = async (p: ServerProcess) => {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL")
  await p.exited
}

const closeAll = async () => {
  for (const c of opened.splice(0)) c.close()
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(processes.splice(0).map(stopProcess))
  for (const c of cleanups.splice(0)) c()
}
afterEach(closeAll)
afterAll(closeAll)

const expectJsonError = (res: { status: number; headers: Headers; body: any }, status: number, code: string) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  expect(res.headers.get("content-type")).toMatch(/application\/json/)
  expect(res.body?.error?.code).toBe(code)
  expect(String(res.body?.error?.message ?? "").length).toBeGreaterThan(0)
  if (status === 503) expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0)
}

/** A stream GET: a 200 stays open (returned as an SseClient), anything else is read as JSON. */
const tryStream = async (url: string) => {
  const controller = new AbortController()
  const res = await fetch(url, { headers: { accept: "text/event-stream" }, signal: controller.signal })
  if (res.status === 200) {
    controller.abort()
    return { status: 200, headers: res.headers, body: undefined as any }
  }
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text === "" ? undefined : JSON.parse(text) }
}

describe("maxConnections", () => {
  it("caps open streams with 503 + retry-after and frees a slot when a client leaves", async () => {
    const server = await startServer({ maxConnections: 2 })
    await server.createSession("m1")
    const a = await open(`${server.url}/sessions/stream`)
    const b = await open(`${server.url}/sessions/m1/stream`)
    expect(a.status).toBe(200)
    expect(b.status).toBe(200)
    await a.waitFor((e) => e.event === "snapshot_complete")
    await b.waitFor((e) => e.event === "snapshot_complete")

    // Every kind of stream is refused at the cap, and refusing the sandbox stream changes nothing.
    for (const path of ["/sessions/stream", "/sessions/m1/stream", "/sessions/m1/commands"]) {
      expectJsonError(await tryStream(`${server.url}${path}`), 503, "overloaded")
    }
    expect((await server.getSession("m1"))?.status).toBe("bootstrapping")
    // Plain routes are not capped.
    expect((await server.request("GET", "/sessions")).status).toBe(200)
    expect((await server.request("POST", "/sessions/m1/events", { type: "text_delta", delta: "x" })).status).toBe(202)
    await b.waitFor((e) => e.event === "artifact_created")

    // A client leaving frees its slot.
    a.close()
    let c: SseClient | undefined
    await eventually(async () => {
      const attempt = await sse(`${server.url}/sessions/stream`)
      if (attempt.status === 200) {
        c = attempt
        opened.push(attempt)
        return true
      }
      attempt.close()
      return false
    }, 10_000, "a slot to free up")
    await c!.waitFor((e) => e.event === "snapshot_complete")
    // ... and only that one.
    expectJsonError(await tryStream(`${server.url}/sessions/stream`), 503, "overloaded")
    // The streams that stayed open are unaffected.
    expect((await server.request("POST", "/sessions/m1/events", { type: "text_delta", delta: "y" })).status).toBe(202)
    await b.waitFor((e) => e.event === "artifact_updated" && e.data.append === "y")
    expect(b.isEnded()).toBe(false)
  })

  it("a refused stream and a removed session's ended stream do not leak slots", async () => {
    const server = await startServer({ maxConnections: 1 })
    await server.createSession("m1")
    /** Opens a stream on `path` as soon as a slot is free. */
    const openWhenFree = async (path: string) => {
      let client: SseClient | undefined
      await eventually(async () => {
        const attempt = await sse(`${server.url}${path}`)
        if (attempt.status === 200) {
          client = attempt
          opened.push(attempt)
          return true
        }
        expect(attempt.status).toBe(503)
        attempt.close()
        return false
      }, 10_000, `a free slot for ${path}`)
      await client!.waitFor((e) => e.event === "snapshot_complete")
      return client!
    }
    // Twenty rounds of: hold the one slot, be refused, leave; a leak would lock everyone out.
    for (let i = 0; i < 20; i++) {
      const s = await openWhenFree(i % 2 === 0 ? "/sessions/m1/stream" : "/sessions/stream")
      expectJsonError(await tryStream(`${server.url}/sessions/stream`), 503, "overloaded")
      expectJsonError(await tryStream(`${server.url}/sessions/m1/commands`), 503, "overloaded")
      s.close()
    }
    // A stream ended by the server (session removed) frees its slot too.
    const s = await openWhenFree("/sessions/m1/stream")
    expect((await server.request("DELETE", "/sessions/m1")).status).toBe(204)
    await s.ended
    const last = await openWhenFree("/sessions/stream")
    expect(last.isEnded()).toBe(false)
  })
})

/** Decodes an HTTP/1.1 response captured raw: its headers and its (possibly truncated) chunked body. */
const parseRawResponse = (raw: Buffer) => {
  const end = raw.indexOf("\r\n\r\n")
  if (end < 0) throw new Error("no response headers")
  const head = raw.subarray(0, end).toString("latin1")
  const chunked = /transfer-encoding:\s*chunked/i.test(head)
  let rest = raw.subarray(end + 4)
  if (!chunked) return { head, body: rest }
  const parts: Array<Buffer> = []
  for (;;) {
    const line = rest.indexOf("\r\n")
    if (line < 0) break
    const size = parseInt(rest.subarray(0, line).toString("latin1"), 16)
    if (!(size > 0)) break
    const data = rest.subarray(line + 2, line + 2 + size)
    parts.push(data)
    if (data.length < size) break // cut off mid-chunk
    rest = rest.subarray(line + 2 + size + 2)
  }
  return { head, body: Buffer.concat(parts) }
}

const parseSse = (body: Buffer): Array<SseEvent> => {
  const events: Array<SseEvent> = []
  const parser = createParser({
    onEvent: (m: EventSourceMessage) =>
      events.push({ event: m.event ?? "message", id: m.id, data: m.data === "" ? undefined : JSON.parse(m.data) })
  })
  parser.feed(body.toString("utf8"))
  return events
}

describe("subscriberBuffer", () => {
  it("a client that stops reading is cut off, others get everything, and it resumes and converges", async () => {
    const server = await startServer({ subscriberBuffer: 5 })
    await server.createSession("f1")

    // A raw client that reads until its snapshot is complete, then never reads again.
    const chunks: Array<Buffer> = []
    let closed = false
    const stalled = await new Promise<Socket>((resolve, reject) => {
      const socket = connect(server.port, "127.0.0.1", () => {
        socket.write(`GET /sessions/f1/stream HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`)
      })
      sockets.push(socket)
      socket.on("error", () => {})
      socket.on("close", () => (closed = true))
      const onData = (d: Buffer) => {
        chunks.push(d)
        if (Buffer.concat(chunks).includes("event: snapshot_complete")) {
          socket.off("data", onData)
          socket.pause()
          resolve(socket)
        }
      }
      socket.on("data", onData)
      setTimeout(() => reject(new Error("no snapshot_complete on the raw client")), 10_000)
    })
    const reader = await open(`${server.url}/sessions/f1/stream`)
    await reader.waitFor((e) => e.event === "snapshot_complete")

    // 400 deltas of 64 KiB (25 MiB) over 4 parts, plus a file_change every 10 posts; the reader keeps up.
    const deltaSize = 64 * 1024
    const delta = (i: number) => `<${i}>`.padEnd(deltaSize - 1, "x") + "\n"
    let posted = 0
    for (let post = 0; post < 100; post++) {
      const batch: Array<unknown> = Array.from({ length: 4 }, (_, j) => ({
        type: "text_delta",
        delta: delta(post * 4 + j),
        partId: `p${j}`
      }))
      if (post % 10 === 9) batch.splice(2, 0, { type: "file_change", path: `f${post}`, action: "modify" })
      const res = await server.request("POST", "/sessions/f1/events", batch)
      expect(res.status).toBe(202)
      posted += 4 * deltaSize
      const last = `<${post * 4 + 3}>`
      await reader.waitFor(
        (e) =>
          (e.event === "artifact_updated" && e.data.append?.startsWith(last)) ||
          (e.event === "artifact_created" && e.data.artifact.text?.startsWith(last)),
        30_000
      )
    }
    expect(reader.isEnded()).toBe(false)
    const stored = (await server.request("GET", "/sessions/f1/artifacts")).body as Array<any>
    expect(stored).toHaveLength(4 + 10)
    expect(sorted(foldArtifacts(reader.events))).toEqual(stored)

    // The stalled client was disconnected: once it reads, it gets a fraction of what was posted, then the close.
    stalled.on("data", (d: Buffer) => chunks.push(d))
    stalled.resume()
    await eventually(() => closed, 30_000, "the server to close the stalled connection")
    const raw = Buffer.concat(chunks)
    expect(raw.length).toBeLessThan(posted / 2)
    const { body, head } = parseRawResponse(raw)
    expect(head).toMatch(/^HTTP\/1\.1 200/)
    const seen = parseSse(body)
    expect(seen.some((e) => e.event === "snapshot_complete")).toBe(true)

    // It reconnects from the last id it parsed and converges to exactly what is stored.
    const lastId = seen.filter((e) => e.id !== undefined).at(-1)?.id
    const resumed = await open(`${server.url}/sessions/f1/stream`, lastId === undefined ? {} : { "last-event-id": lastId })
    await resumed.waitFor((e) => e.event === "snapshot_complete", 30_000)
    const mine = foldArtifacts(seen)
    expect(sorted(foldArtifacts(resumed.events, mine))).toEqual(stored)
  }, 120_000)
})

/** The in-memory store behind a switch: while `failing`, every method fails with StoreError. */
const switchableStore = () => {
  /** `refused` records each call made while failing, as "method:sessionId". */
  const state = { failing: false, refused: [] as Array<string> }
  const guard = <A, E>(call: string, effect: () => Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
    Effect.suspend((): Effect.Effect<A, E | StoreError> => {
      if (!state.failing) return effect()
      state.refused.push(call)
      return Effect.fail(new StoreError({ cause: new Error("disk full") }))
    })
  const layer = Layer.effect(
    SessionStore,
    Effect.map(makeMemory, (s) =>
      SessionStore.of({
        list: guard("list", () => s.list),
        create: (...a) => guard(`create:${a[0].id}`, () => s.create(...a)),
        get: (...a) => guard(`get:${a[0]}`, () => s.get(...a)),
        remove: (...a) => guard(`remove:${a[0]}`, () => s.remove(...a)),
        update: (...a) => guard(`update:${a[0]}`, () => s.update(...a)),
        commit: (...a) => guard(`commit:${a[0]}`, () => s.commit(...a)),
        artifacts: (...a) => guard(`artifacts:${a[0]}`, () => s.artifacts(...a)),
        page: (...a) => guard(`page:${a[0]}`, () => s.page(...a)),
        tail: (...a) => guard(`tail:${a[0]}`, () => s.tail(...a)),
        hasIdempotencyKey: (...a) => guard(`hasIdempotencyKey:${a[0]}`, () => s.hasIdempotencyKey(...a)),
        ping: guard("ping", () => s.ping),
        runners: s.runners
      }))
  )
  return { state, layer }
}

describe("a failing store", () => {
  it("answers 503 store_unavailable, applies nothing, and recovers without a gap", async () => {
    const { layer: store, state } = switchableStore()
    const server = await startServer({ store })
    expect((await server.request("POST", "/sessions/s1", { project: "p" })).status).toBe(201)
    const sandbox = await open(`${server.url}/sessions/s1/commands`)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    expect(
      (await server.request("POST", "/sessions/s1/events", [
        { type: "turn_start" },
        { type: "text_delta", delta: "hello" },
        { type: "tool_call_start", toolCallId: "t1", name: "read" }
      ])).status
    ).toBe(202)
    const watcher = await open(`${server.url}/sessions/s1/stream`)
    await watcher.waitFor((e) => e.event === "snapshot_complete")
    const list = await open(`${server.url}/sessions/stream`)
    await list.waitFor((e) => e.event === "snapshot_complete")
    const sessionBefore = await server.request("GET", "/sessions/s1")
    const listSeen = list.events.length
    const watcherSeen = watcher.events.length

    state.failing = true
    const failed: Array<[string, string, unknown, Record<string, string>?]> = [
      ["POST", "/sessions/s1/events", { type: "text_delta", delta: " FAILED-1" }],
      ["POST", "/sessions/s1/events", [{ type: "text_delta", delta: " FAILED-2" }, { type: "tool_call_start", toolCallId: "t9", name: "FAILED-3" }]],
      ["POST", "/sessions/s1/events", { type: "tool_call_end", toolCallId: "t1", output: "FAILED-4" }],
      ["POST", "/sessions/s1/events", { type: "summary", text: "FAILED-5" }],
      ["POST", "/sessions/s1/events", { type: "turn_end", stopReason: "end_turn" }],
      ["POST", "/sessions/s1/events", { type: "file_change", path: "FAILED-6", action: "create" }, { "idempotency-key": "k1" }],
      ["POST", "/sessions/s1/commands", { type: "prompt", text: "FAILED-7" }],
      ["POST", "/sessions/s2", { project: "p" }],
      ["DELETE", "/sessions/s1", undefined],
      ["GET", "/sessions/s1/artifacts", undefined],
      ["GET", "/healthz", undefined]
    ]
    for (let round = 0; round < 3; round++) {
      for (const [method, path, body, headers] of failed) {
        expectJsonError(await server.request(method, path, body, headers), 503, "store_unavailable")
      }
      expectJsonError(await tryStream(`${server.url}/sessions/s1/stream`), 503, "store_unavailable")
    }
    // The process keeps serving what needs no store.
    expect((await server.request("GET", "/sessions")).status).toBe(200)
    expect((await server.request("GET", "/sessions/s1")).body).toEqual(sessionBefore.body)
    expect((await server.request("GET", "/sessions/s2")).status).toBe(404)
    expect((await server.request("POST", "/sessions/s1/events", { type: "nope" })).status).toBe(400)

    state.failing = false
    expect(await server.request("GET", "/healthz")).toMatchObject({ status: 200, body: { ok: true } })
    // Nothing of the failed requests was applied, in the store or in memory.
    expect((await server.request("GET", "/sessions/s1")).body).toEqual(sessionBefore.body)
    expect((await server.request("GET", "/sessions/s2")).status).toBe(404)
    expectJsonError(await server.request("POST", "/sessions/s1/events", { type: "tool_call_end", toolCallId: "t9" }), 400, "bad_request")
    // The failed keyed request was not remembered: its retry is applied.
    expect(
      (await server.request("POST", "/sessions/s1/events", { type: "file_change", path: "k1", action: "create" }, { "idempotency-key": "k1" }))
        .status
    ).toBe(202)
    expect((await server.request("POST", "/sessions/s1/events", { type: "text_delta", delta: " world" })).status).toBe(202)
    expect((await server.request("POST", "/sessions/s1/events", { type: "tool_call_end", toolCallId: "t1", output: "ok" })).status).toBe(202)
    expect((await server.request("POST", "/sessions/s1/commands", { type: "prompt", text: "after" })).status).toBe(202)
    expect((await server.request("POST", "/sessions/s2", { project: "p" })).status).toBe(201)

    const stored = (await server.request("GET", "/sessions/s1/artifacts")).body as Array<any>
    expect(stored.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5])
    expect(stored.map((a) => a.kind)).toEqual(["text", "tool_call", "file_change", "text", "user_message"])
    expect(stored[0].text).toBe("hello")
    expect(stored[1]).toMatchObject({ toolCallId: "t1", status: "done", output: "ok" })
    expect(stored[2].path).toBe("k1")
    expect(stored[3].text).toBe(" world")
    expect(JSON.stringify(stored)).not.toContain("FAILED")

    // Live clients saw none of the failed changes, and converge.
    await watcher.waitFor((e) => e.event === "artifact_created" && e.data.artifact.seq === 5)
    expect(JSON.stringify(watcher.events.slice(watcherSeen))).not.toContain("FAILED")
    expect(sorted(foldArtifacts(watcher.events))).toEqual(stored)
    await list.waitFor((e) => e.event === "session_created" && e.data.session.id === "s2")
    // The accepted prompt is the first, so it names the session (issue 21); nothing of the failed ones shows.
    expect(list.events.slice(listSeen).map((e) => [e.event, e.data.fields ?? null])).toEqual([
      ["session_updated", { summary: "after" }],
      ["session_created", null]
    ])
    // The sandbox got only the command that was accepted.
    await sandbox.waitFor((e) => e.event === "command" && e.data.text === "after")
    expect(sandbox.events.filter((e) => e.event === "command").map((e) => e.data.text)).toEqual(["after"])
    expect((await server.request("GET", "/sessions/s1")).body.status).toBe("live")
    expect((await server.request("DELETE", "/sessions/s2")).status).toBe(204)
  })

  it("a sandbox that leaves during an outage leaves its session disconnected once the store recovers", async () => {
    const warnings = captureWarnings()
    onTestFinished(warnings.restore)
    const { layer: store, state } = switchableStore()
    const server = await startServer({ store })
    await server.createSession("gone")
    const sandbox = await open(`${server.url}/sessions/gone/commands`)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    expect((await server.getSession("gone"))?.status).toBe("live")
    const list = await open(`${server.url}/sessions/stream`)
    await list.waitFor((e) => e.event === "snapshot_complete")

    state.failing = true
    sandbox.close()
    await eventually(() => state.refused.includes("update:gone"), 10_000, "the disconnect to be attempted")
    expect((await server.request("POST", "/sessions/gone/commands", { type: "abort" })).status).toBe(409)
    state.failing = false
    expect((await server.request("GET", "/healthz")).status).toBe(200)

    // The sandbox is gone: the session must not stay "live" forever.
    await eventually(async () => (await server.getSession("gone"))?.status === "disconnected", 10_000, "gone to become disconnected")
    await list.waitFor((e) => e.event === "session_updated" && e.data.id === "gone" && e.data.fields.status === "disconnected")
    expect(warnings.lines.some((l) => l.includes("could not persist gone disconnected yet"))).toBe(true)
  })

  it("a bootstrap timeout that fires during an outage still removes the session once the store recovers", async () => {
    const warnings = captureWarnings()
    onTestFinished(warnings.restore)
    const { layer: store, state } = switchableStore()
    const server = await startServer({ store, bootstrapTimeout: 1_000 })
    await server.createSession("late")
    const list = await open(`${server.url}/sessions/stream`)
    await list.waitFor((e) => e.event === "snapshot_complete")

    state.failing = true
    await eventually(() => state.refused.includes("remove:late"), 10_000, "the bootstrap timeout to fire")
    state.failing = false
    expect((await server.request("GET", "/healthz")).status).toBe(200)

    // No sandbox came within the bootstrap timeout: the session must not stay "bootstrapping" forever.
    await eventually(async () => (await server.getSession("late")) === undefined, 10_000, "late to be removed")
    await list.waitFor((e) => e.event === "session_removed" && e.data.id === "late")
    expect(warnings.lines.some((l) => l.includes("bootstrap timeout of late could not remove it yet"))).toBe(true)
  })
})

describe("a locked SQLite database", () => {
  beforeAll(ensureBuilt, 120_000)

  it("answers 503 while another process holds the write lock, stays up, and recovers", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const file = `${tmp.dir}/rein.db`
    const server = await spawned(["--db", file, "--bootstrap-timeout", "600000"])
    expect((await request(server.url, "POST", "/sessions/l1")).status).toBe(201)
    expect((await request(server.url, "POST", "/sessions/l1/events", { type: "text_delta", delta: "a" })).status).toBe(202)

    const lock = new Database(file, { timeout: 10_000 })
    let locked = true
    try {
      lock.exec("BEGIN EXCLUSIVE")
      const started = Date.now()
      const res = await request(server.url, "POST", "/sessions/l1/events", { type: "text_delta", delta: "LOCKED" })
      expectJsonError(res, 503, "store_unavailable")
      // It waited for its busy timeout before giving up.
      expect(Date.now() - started).toBeGreaterThanOrEqual(4_000)
      // Still up and serving.
      expect((await request(server.url, "GET", "/sessions")).status).toBe(200)
      expect(server.child.exitCode).toBeNull()
      lock.exec("COMMIT")
      locked = false
    } finally {
      if (locked) lock.exec("ROLLBACK")
      lock.close()
    }
    expect((await request(server.url, "POST", "/sessions/l1/events", { type: "text_delta", delta: "b" })).status).toBe(202)
    expect((await request(server.url, "POST", "/sessions/l2")).status).toBe(201)
    const artifacts = (await request(server.url, "GET", "/sessions/l1/artifacts")).body as Array<any>
    expect(artifacts.map((a) => a.text)).toEqual(["ab"])
    expect((await request(server.url, "GET", "/healthz")).status).toBe(200)
  }, 60_000)
})

/** `n` streams over one keep-alive agent, each resolved once its first bytes arrived. */
const openStreams = async (base: string, paths: ReadonlyArray<string>) => {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity })
  const streams = await Promise.all(paths.map((path) =>
    new Promise<{ req: ClientRequest; res: IncomingMessage; ended: Promise<"end" | "aborted"> }>((resolve, reject) => {
      const req = httpRequest(`${base}${path}`, { agent, headers: { accept: "text/event-stream" } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`${path}: ${res.statusCode}`))
        const ended = new Promise<"end" | "aborted">((done) => {
          res.on("end", () => done("end"))
          res.on("aborted", () => done("aborted"))
          res.on("error", () => done("aborted"))
          res.on("close", () => done(res.complete ? "end" : "aborted"))
        })
        res.once("data", () => resolve({ req, res, ended }))
        res.resume()
      })
      req.on("error", reject)
      req.end()
    })
  ))
  return { streams, agent }
}

describe("shutdown", () => {
  beforeAll(ensureBuilt, 120_000)

  const shutdownWith = async (signal: "SIGTERM" | "SIGINT", count: number) => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const server = await spawned(["--db", `${tmp.dir}/rein.db`, "--bootstrap-timeout", "600000"])
    for (let i = 0; i < 10; i++) expect((await request(server.url, "POST", `/sessions/d${i}`)).status).toBe(201)
    const paths = Array.from({ length: count }, (_, i) => i % 2 === 0 ? "/sessions/stream" : `/sessions/d${i % 10}/stream`)
    const { agent, streams } = await openStreams(server.url, paths)
    try {
      const started = Date.now()
      server.child.kill(signal)
      expect(await server.exited).toBe(0)
      const elapsed = Date.now() - started
      expect(elapsed).toBeLessThan(15_000)
      // Every stream was ended by the server (a complete response, not a cut connection), none left hanging.
      const endings = await Promise.race([
        Promise.all(streams.map((s) => s.ended)),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("streams still open after exit")), 10_000))
      ])
      expect(endings.filter((e) => e !== "end")).toEqual([])
      expect(server.output()).not.toMatch(/error|defect|unhandled/i)
    } finally {
      for (const s of streams) s.req.destroy()
      agent.destroy()
    }
  }

  it("SIGTERM with 2 000 open streams exits 0 quickly and ends every stream", async () => {
    await shutdownWith("SIGTERM", 2_000)
  }, 120_000)

  it("SIGINT does the same", async () => {
    await shutdownWith("SIGINT", 200)
  }, 60_000)

  it("an in-flight POST at SIGTERM completes or is refused, never half-applied", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const db = `${tmp.dir}/rein.db`
    const first = await spawned(["--db", db, "--bootstrap-timeout", "600000"])
    expect((await request(first.url, "POST", "/sessions/i1")).status).toBe(201)

    // Batches of 50 file changes, each a distinct path, posted back to back from 4 posters.
    const outcome = new Map<string, "accepted" | "refused">()
    let stop = false
    let acks = 0
    const poster = async (name: string) => {
      for (let i = 0; !stop; i++) {
        const batch = `${name}${i}`
        const events = Array.from({ length: 50 }, (_, j) => ({ type: "file_change", path: `${batch}/${j}`, action: "create" }))
        try {
          const res = await request(first.url, "POST", "/sessions/i1/events", events)
          expect(res.status, res.text).toBe(202)
          outcome.set(batch, "accepted")
          acks++
        } catch (e) {
          if (e instanceof Error && e.name === "AssertionError") throw e
          outcome.set(batch, "refused")
          return
        }
      }
    }
    const posting = Promise.all(["a", "b", "c", "d"].map(poster))
    await eventually(() => acks >= 20, 30_000, "some acknowledged posts")
    first.child.kill("SIGTERM")
    expect(await first.exited).toBe(0)
    stop = true
    await posting

    const second = await spawned(["--db", db, "--bootstrap-timeout", "600000"])
    const artifacts = (await request(second.url, "GET", "/sessions/i1/artifacts")).body as Array<any>
    const perBatch = new Map<string, number>()
    for (const a of artifacts) {
      const batch = String(a.path).split("/")[0]!
      perBatch.set(batch, (perBatch.get(batch) ?? 0) + 1)
    }
    // All or nothing per batch; every accepted batch is there.
    for (const [batch, n] of perBatch) expect(n, batch).toBe(50)
    for (const [batch, o] of outcome) if (o === "accepted") expect(perBatch.get(batch), batch).toBe(50)
    for (const batch of perBatch.keys()) expect(outcome.has(batch), batch).toBe(true)
    expect(artifacts.map((a) => a.seq)).toEqual(artifacts.map((_, i) => i + 1))
  }, 60_000)
})
