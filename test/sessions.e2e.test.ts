/**
 * End-to-end tests of the session part of docs/protocol.md: every route and status
 * code, the status machine, the session stream, keep-alive, bootstrap
 * timeout, persistence across restart, close() and the createServer facade.
 * Real sockets, real fetch, the SSE client of helpers.ts.
 */
import * as Effect from "effect/Effect"
import { connect } from "node:net"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { noUsage, type Session } from "../src/Domain/Session.js"
import type { ServerOptions } from "../src/Server.js"
import { SessionStore } from "../src/SessionStore.js"
import * as Sqlite from "../src/SessionStore/Sqlite.js"
import { eventually, request, type SseClient, sse, start, type TestResponse, type TestServer, tempDir } from "./helpers.js"

const servers: Array<TestServer> = []
const clients: Array<SseClient> = []
const cleanups: Array<() => void> = []

const open = async (options?: ServerOptions) => {
  const server = await start(options)
  servers.push(server)
  return server
}

const stream = async (url: string, headers?: Record<string, string>) => {
  const client = await sse(url, headers)
  clients.push(client)
  return client
}

/** A session stream that has delivered its snapshots. */
const watchSessions = async (server: TestServer, query = "") => {
  const client = await stream(`${server.url}/sessions/stream${query}`)
  await client.waitFor((e) => e.event === "snapshot_complete")
  return client
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await Promise.all(servers.splice(0).map((s) => s.close()))
  for (const c of cleanups.splice(0)) c()
})

/** Resolves with `p`, or rejects after `ms` with `what`. */
const within = <A>(p: Promise<A>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))
  ])

/** Every error is `{ error: { code, message } }`, JSON, and the message names the problem. */
const expectError = (res: TestResponse, status: number, message: RegExp, code?: string) => {
  expect(res.status).toBe(status)
  expect(res.headers.get("content-type") ?? "").toMatch(/application\/json/)
  expect(res.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } })
  expect(res.body.error.code).not.toBe("")
  expect(res.body.error.message).toMatch(message)
  if (code !== undefined) expect(res.body.error.code).toBe(code)
}

const status = async (server: TestServer, id: string) => (await server.request("GET", `/sessions/${id}`)).body?.status

describe("POST /sessions/:id", () => {
  it("201 with the session record; the body is optional", async () => {
    const server = await open()
    const before = Date.now()
    const res = await server.request("POST", "/sessions/a1")
    expect(res.status).toBe(201)
    expect(res.headers.get("content-type") ?? "").toMatch(/application\/json/)
    expect(res.body).toEqual({
      id: "a1",
      status: "bootstrapping",
      summary: null,
      project: null,
      createdAt: expect.any(Number),
      lastHeartbeat: expect.any(Number),
      pendingPermissions: 0,
      usage: { inputTokens: 0, outputTokens: 0, costUsd: null },
      agent: null,
      runner: null,
      workspace: null,
      lastStopReason: null
    })
    expect(res.body.createdAt).toBeGreaterThanOrEqual(before - 1000)
    expect(res.body.createdAt).toBeLessThanOrEqual(Date.now() + 1000)
    expect(res.body.lastHeartbeat).toBe(res.body.createdAt)
    // The created record is what GET returns.
    const got = await server.request("GET", "/sessions/a1")
    expect(got.status).toBe(200)
    expect(got.body).toEqual(res.body)
  })

  it("an empty JSON object body is accepted too", async () => {
    const server = await open()
    const res = await server.request("POST", "/sessions/a2", {})
    expect(res.status).toBe(201)
    expect(res.body.project).toBeNull()
  })

  it("honours { project }", async () => {
    const server = await open()
    const res = await server.request("POST", "/sessions/w1", { project: "web" })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ id: "w1", project: "web", status: "bootstrapping", summary: null })
    expect((await server.request("GET", "/sessions/w1")).body.project).toBe("web")
  })

  it("accepts every id the rule allows", async () => {
    const server = await open()
    for (const id of ["a", "Z9", "a.b:c-1", "a_b", "0abc", "x".repeat(100)]) {
      const res = await server.request("POST", `/sessions/${id}`)
      expect(res.status, id).toBe(201)
      expect(res.body.id).toBe(id)
    }
  })

  it("accepts ids of 101 to 128 characters (the rule allows 128)", async () => {
    const server = await open()
    for (const length of [101, 127, 128]) {
      const id = "a".repeat(length)
      const res = await server.request("POST", `/sessions/${id}`)
      expect(res.status, `POST of a ${length}-character id`).toBe(201)
      expect(res.body.id).toBe(id)
      expect((await server.request("GET", `/sessions/${id}`)).status).toBe(200)
    }
  })

  it("400 for ids outside the rule, naming the id", async () => {
    const server = await open()
    for (const id of ["-x", ".x", "_x", "a%20b", "a%2Fb", "a*b", "\u00e9t\u00e9"]) {
      const res = await server.request("POST", `/sessions/${id}`)
      expectError(res, 400, /\bid\b/)
    }
    expect((await server.request("GET", "/sessions")).body).toEqual([])
  })

  it("400 (not 404) for an id of 129 characters", async () => {
    const server = await open()
    expectError(await server.request("POST", `/sessions/${"a".repeat(129)}`), 400, /\bid\b/)
    expect((await server.request("GET", "/sessions")).body).toEqual([])
  })

  it("400 for the reserved id \"stream\"", async () => {
    const server = await open()
    const res = await server.request("POST", "/sessions/stream")
    expectError(res, 400, /stream/)
    expect(res.body.error.message).toMatch(/\bid\b/)
    expect((await server.request("GET", "/sessions")).body).toEqual([])
  })

  it("400 for a body that does not match its schema, naming the field; nothing is created", async () => {
    const server = await open()
    expectError(await server.request("POST", "/sessions/b1", { project: 5 }), 400, /project/)
    expectError(await server.request("POST", "/sessions/b1", { project: ["web"] }), 400, /project/)
    // Every store must keep the same fields: PostgreSQL text cannot hold NUL.
    expectError(await server.request("POST", "/sessions/b1", { project: "we\u0000b" }), 400, /project: must not contain NUL/)
    expect((await server.request("GET", "/sessions/b1")).status).toBe(404)
    expect((await server.request("POST", "/sessions/b3")).status).toBe(201)
    expectError(await server.request("POST", "/sessions/b3/events", { type: "summary", text: "a\u0000" }), 400, /text: must not contain NUL/)
    expect((await server.request("GET", "/sessions/b3")).body.summary).toBeNull()
  })

  it("400 for malformed JSON; nothing is created", async () => {
    const server = await open()
    expectError(await server.request("POST", "/sessions/b2", "{\"project\":"), 400, /JSON/i)
    expect((await server.request("GET", "/sessions/b2")).status).toBe(404)
  })

  it("409 when the session exists; the existing one is unchanged", async () => {
    const server = await open()
    const first = await server.request("POST", "/sessions/dup", { project: "one" })
    expect(first.status).toBe(201)
    const second = await server.request("POST", "/sessions/dup", { project: "two" })
    expectError(second, 409, /dup/)
    expect(second.body.error.message).toMatch(/exist/i)
    expect((await server.request("GET", "/sessions/dup")).body).toEqual(first.body)
    expect((await server.request("GET", "/sessions")).body).toHaveLength(1)
  })
})

describe("GET /sessions and GET|DELETE /sessions/:id", () => {
  it("GET /sessions is [] with no sessions", async () => {
    const server = await open()
    const res = await server.request("GET", "/sessions")
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type") ?? "").toMatch(/application\/json/)
    expect(res.body).toEqual([])
  })

  it("lists sessions oldest first, and filters by ?project=", async () => {
    const server = await open()
    const created: Array<Session> = []
    for (const [id, project] of [["zeta", "web"], ["alpha", "api"], ["mid", "web"], ["none", undefined]] as const) {
      const res = await server.request("POST", `/sessions/${id}`, project === undefined ? undefined : { project })
      expect(res.status).toBe(201)
      created.push(res.body)
    }
    const all = await server.request("GET", "/sessions")
    expect(all.status).toBe(200)
    expect(all.body).toEqual(created)
    expect(all.body.map((s: Session) => s.id)).toEqual(["zeta", "alpha", "mid", "none"])
    const createdAts = all.body.map((s: Session) => s.createdAt)
    expect([...createdAts].sort((a, b) => a - b)).toEqual(createdAts)

    const web = await server.request("GET", "/sessions?project=web")
    expect(web.status).toBe(200)
    expect(web.body.map((s: Session) => s.id)).toEqual(["zeta", "mid"])
    expect((await server.request("GET", "/sessions?project=api")).body.map((s: Session) => s.id)).toEqual(["alpha"])
    expect((await server.request("GET", "/sessions?project=nope")).body).toEqual([])
  })

  it("GET /sessions/:id is 200 with the record, 404 (not_found, naming the id) when unknown", async () => {
    const server = await open()
    const created = (await server.request("POST", "/sessions/g1", { project: "p" })).body
    const got = await server.request("GET", "/sessions/g1")
    expect(got.status).toBe(200)
    expect(got.body).toEqual(created)
    expectError(await server.request("GET", "/sessions/ghost"), 404, /ghost/, "not_found")
  })

  it("DELETE is 204 and the session is gone; a second DELETE is 404", async () => {
    const server = await open()
    await server.request("POST", "/sessions/d1")
    await server.request("POST", "/sessions/d2")
    const del = await server.request("DELETE", "/sessions/d1")
    expect(del.status).toBe(204)
    expect(del.text).toBe("")
    expectError(await server.request("GET", "/sessions/d1"), 404, /d1/, "not_found")
    expect((await server.request("GET", "/sessions")).body.map((s: Session) => s.id)).toEqual(["d2"])
    expectError(await server.request("DELETE", "/sessions/d1"), 404, /d1/, "not_found")
    expectError(await server.request("DELETE", "/sessions/never"), 404, /never/, "not_found")
    // The id is free again.
    expect((await server.request("POST", "/sessions/d1")).status).toBe(201)
  })

  it("an unknown route is a 404 JSON error", async () => {
    const server = await open()
    expectError(await server.request("GET", "/nope"), 404, /nope/, "not_found")
    expectError(await server.request("POST", "/sessions/a/b/c"), 404, /sessions\/a\/b\/c/, "not_found")
  })
})

describe("POST /sessions/:id/commands", () => {
  it("202 delivers the command to the sandbox stream as `event: command`", async () => {
    const server = await open()
    await server.request("POST", "/sessions/c1")
    const sandbox = await stream(`${server.url}/sessions/c1/commands`)
    const prompt = await server.request("POST", "/sessions/c1/commands", { type: "prompt", text: "fix the bug" })
    expect(prompt.status).toBe(202)
    const first = await sandbox.waitFor((e) => e.event === "command")
    expect(first.data).toEqual({ type: "prompt", text: "fix the bug" })
    const abort = await server.request("POST", "/sessions/c1/commands", { type: "abort" })
    expect(abort.status).toBe(202)
    await eventually(() => sandbox.events.filter((e) => e.event === "command").length === 2, 10_000, "the second command")
    expect(sandbox.events.filter((e) => e.event === "command").map((e) => e.data)).toEqual([
      { type: "prompt", text: "fix the bug" },
      { type: "abort" }
    ])
  })

  it("409 with no sandbox connected; nothing is applied", async () => {
    const server = await open()
    await server.request("POST", "/sessions/c2")
    expectError(await server.request("POST", "/sessions/c2/commands", { type: "prompt", text: "hi" }), 409, /sandbox/i)
    expectError(await server.request("POST", "/sessions/c2/commands", { type: "abort" }), 409, /sandbox/i)
    // The rejected prompt was not recorded.
    expect((await server.request("GET", "/sessions/c2/artifacts")).body).toEqual([])
    expect(await status(server, "c2")).toBe("bootstrapping")
  })

  it("409 after the sandbox stream closed", async () => {
    const server = await open()
    await server.request("POST", "/sessions/c3")
    const sandbox = await stream(`${server.url}/sessions/c3/commands`)
    sandbox.close()
    await eventually(async () => (await status(server, "c3")) === "disconnected", 10_000, "disconnected")
    expectError(await server.request("POST", "/sessions/c3/commands", { type: "abort" }), 409, /sandbox/i)
  })

  it("404 for an unknown session", async () => {
    const server = await open()
    expectError(await server.request("POST", "/sessions/ghost/commands", { type: "abort" }), 404, /ghost/, "not_found")
  })

  it("400 for an unknown command type or a bad body, naming the field; nothing is delivered", async () => {
    const server = await open()
    await server.request("POST", "/sessions/c4")
    const sandbox = await stream(`${server.url}/sessions/c4/commands`)
    const post = (body: unknown) => server.request("POST", "/sessions/c4/commands", body)
    expectError(await post({ type: "dance" }), 400, /type/)
    expectError(await post({ type: "dance" }), 400, /dance/)
    expectError(await post({ text: "no type" }), 400, /type/)
    expectError(await post({ type: "prompt" }), 400, /text/)
    expectError(await post({ type: "prompt", text: 5 }), 400, /text/)
    expectError(await post({ type: "permission_reply", requestId: "r1", decision: "maybe" }), 400, /decision/)
    expectError(await post("{\"type\":"), 400, /JSON/i)
    expectError(await post(undefined), 400, /./)
    expectError(await post([{ type: "abort" }]), 400, /./)
    // Nothing of the rejected requests was applied: the first command the sandbox sees is the next valid one.
    expect((await post({ type: "abort" })).status).toBe(202)
    const first = await sandbox.waitFor((e) => e.event === "command")
    expect(first.data).toEqual({ type: "abort" })
    expect((await server.request("GET", "/sessions/c4/artifacts")).body).toEqual([])
  })
})

describe("GET /sessions/:id/commands (sandbox stream)", () => {
  it("connecting makes the session live, visible in GET and on /sessions/stream", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s1", { project: "p" })
    const watch = await watchSessions(server)
    const sandbox = await stream(`${server.url}/sessions/s1/commands`)
    expect(sandbox.status).toBe(200)
    expect(sandbox.headers.get("content-type") ?? "").toMatch(/^text\/event-stream/)
    expect(await status(server, "s1")).toBe("live")
    const updated = await watch.waitFor((e) => e.event === "session_updated")
    expect(updated.data).toEqual({ id: "s1", fields: { status: "live" } })
  })

  it("closing it makes the session disconnected and broadcasts it", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s2")
    const sandbox = await stream(`${server.url}/sessions/s2/commands`)
    const watch = await watchSessions(server)
    sandbox.close()
    const updated = await watch.waitFor((e) => e.event === "session_updated")
    expect(updated.data).toEqual({ id: "s2", fields: { status: "disconnected" } })
    expect(await status(server, "s2")).toBe("disconnected")
  })

  it("closing it from idle makes the session disconnected too", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s2i")
    const sandbox = await stream(`${server.url}/sessions/s2i/commands`)
    expect((await server.request("POST", "/sessions/s2i/events", { type: "turn_end" })).status).toBe(202)
    expect(await status(server, "s2i")).toBe("idle")
    const watch = await watchSessions(server)
    sandbox.close()
    const updated = await watch.waitFor((e) => e.event === "session_updated")
    expect(updated.data).toEqual({ id: "s2i", fields: { status: "disconnected" } })
  })

  it("reconnecting a disconnected session makes it live again", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s2r")
    const first = await stream(`${server.url}/sessions/s2r/commands`)
    first.close()
    await eventually(async () => (await status(server, "s2r")) === "disconnected", 10_000, "disconnected")
    const watch = await watchSessions(server)
    const second = await stream(`${server.url}/sessions/s2r/commands`)
    expect(await status(server, "s2r")).toBe("live")
    expect((await watch.waitFor((e) => e.event === "session_updated")).data).toEqual({
      id: "s2r",
      fields: { status: "live" }
    })
    expect((await server.request("POST", "/sessions/s2r/commands", { type: "abort" })).status).toBe(202)
    expect((await second.waitFor((e) => e.event === "command")).data).toEqual({ type: "abort" })
  })

  it("a second sandbox stream closes the first; the session stays live and commands go to the second", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s3")
    const first = await stream(`${server.url}/sessions/s3/commands`)
    const watch = await watchSessions(server)
    const second = await stream(`${server.url}/sessions/s3/commands`)
    await within(first.ended, 10_000, "the first sandbox stream to end")
    expect(second.isEnded()).toBe(false)
    expect(await status(server, "s3")).toBe("live")

    expect((await server.request("POST", "/sessions/s3/commands", { type: "prompt", text: "to the second" })).status)
      .toBe(202)
    expect((await second.waitFor((e) => e.event === "command")).data).toEqual({ type: "prompt", text: "to the second" })
    expect(first.events.some((e) => e.event === "command")).toBe(false)

    // A summary is a barrier on /sessions/stream: the old stream's close came before it and changed nothing.
    expect((await server.request("POST", "/sessions/s3/events", { type: "summary", text: "barrier" })).status).toBe(202)
    await watch.waitFor((e) => e.event === "session_updated" && e.data.fields.summary === "barrier")
    // (The first prompt names the session until a summary comes: issue 21.)
    expect(watch.events.filter((e) => e.event === "session_updated").map((e) => e.data)).toEqual([
      { id: "s3", fields: { summary: "to the second" } },
      { id: "s3", fields: { summary: "barrier" } }
    ])
    expect(await status(server, "s3")).toBe("live")

    // Closing the current one does disconnect it.
    second.close()
    const disconnected = await watch.waitFor((e) => e.event === "session_updated" && e.data.fields.status !== undefined)
    expect(disconnected.data).toEqual({ id: "s3", fields: { status: "disconnected" } })
  })

  it("404 for an unknown session, 400 for a bad id", async () => {
    const server = await open()
    expectError(await server.request("GET", "/sessions/ghost/commands"), 404, /ghost/, "not_found")
    expectError(await server.request("GET", "/sessions/-x/commands"), 400, /\bid\b/)
  })

  it("deleting the session ends the sandbox stream", async () => {
    const server = await open()
    await server.request("POST", "/sessions/s4")
    const sandbox = await stream(`${server.url}/sessions/s4/commands`)
    const watch = await watchSessions(server)
    expect((await server.request("DELETE", "/sessions/s4")).status).toBe(204)
    await within(sandbox.ended, 10_000, "the sandbox stream to end")
    expect((await watch.waitFor((e) => e.event === "session_removed")).data).toEqual({ id: "s4" })
    // The deleted session's sandbox close did not resurrect it or broadcast a status.
    expect(watch.events.some((e) => e.event === "session_updated")).toBe(false)
    expect((await server.request("GET", "/sessions/s4")).status).toBe(404)
  })
})

describe("events and the status machine", () => {
  it("turn_end: live -> idle; turn_start: idle -> live; a prompt: idle -> live; each broadcast", async () => {
    const server = await open()
    await server.request("POST", "/sessions/e1")
    const sandbox = await stream(`${server.url}/sessions/e1/commands`)
    const watch = await watchSessions(server)
    const post = (event: unknown) => server.request("POST", "/sessions/e1/events", event)
    const nextUpdate = async (from: number) => (await watch.waitFor((e) => e.event === "session_updated", 10_000, from)).data

    let from = watch.events.length
    expect((await post({ type: "turn_end", stopReason: "end_turn" })).status).toBe(202)
    expect(await status(server, "e1")).toBe("idle")
    expect(await nextUpdate(from)).toEqual({ id: "e1", fields: { status: "idle", lastStopReason: "end_turn" } })

    from = watch.events.length
    expect((await post({ type: "turn_start" })).status).toBe(202)
    expect(await status(server, "e1")).toBe("live")
    expect(await nextUpdate(from)).toEqual({ id: "e1", fields: { status: "live" } })

    from = watch.events.length
    expect((await post({ type: "turn_end" })).status).toBe(202)
    expect(await nextUpdate(from)).toEqual({ id: "e1", fields: { status: "idle", lastStopReason: null } })

    from = watch.events.length
    expect((await server.request("POST", "/sessions/e1/commands", { type: "prompt", text: "again" })).status).toBe(202)
    expect(await status(server, "e1")).toBe("live")
    // The session's first prompt also names it (issue 21).
    expect(await nextUpdate(from)).toEqual({ id: "e1", fields: { status: "live", summary: "again" } })
    expect((await sandbox.waitFor((e) => e.event === "command")).data).toEqual({ type: "prompt", text: "again" })
  })

  it("an abort on an idle session does not make it live", async () => {
    const server = await open()
    await server.request("POST", "/sessions/e1a")
    const sandbox = await stream(`${server.url}/sessions/e1a/commands`)
    await server.request("POST", "/sessions/e1a/events", { type: "turn_end" })
    expect(await status(server, "e1a")).toBe("idle")
    expect((await server.request("POST", "/sessions/e1a/commands", { type: "abort" })).status).toBe(202)
    await sandbox.waitFor((e) => e.event === "command")
    expect(await status(server, "e1a")).toBe("idle")
  })

  it("summary sets the session's summary and is broadcast with fields.summary", async () => {
    const server = await open()
    await server.request("POST", "/sessions/e2", { project: "p" })
    await stream(`${server.url}/sessions/e2/commands`)
    const watch = await watchSessions(server)
    expect((await server.request("POST", "/sessions/e2/events", { type: "summary", text: "Fixing the login bug" })).status)
      .toBe(202)
    const got = (await server.request("GET", "/sessions/e2")).body
    expect(got).toMatchObject({ id: "e2", summary: "Fixing the login bug", status: "live", project: "p" })
    expect((await watch.waitFor((e) => e.event === "session_updated")).data).toEqual({
      id: "e2",
      fields: { summary: "Fixing the login bug" }
    })
    // The same summary again changes nothing and is not broadcast; a new one is.
    const from = watch.events.length
    await server.request("POST", "/sessions/e2/events", { type: "summary", text: "Fixing the login bug" })
    await server.request("POST", "/sessions/e2/events", { type: "summary", text: "Done" })
    expect((await watch.waitFor((e) => e.event === "session_updated", 10_000, from)).data).toEqual({
      id: "e2",
      fields: { summary: "Done" }
    })
  })

  it("a heartbeat moves lastHeartbeat only, and is not broadcast", async () => {
    const server = await open()
    await server.request("POST", "/sessions/e3")
    await stream(`${server.url}/sessions/e3/commands`)
    const watch = await watchSessions(server)
    const before = (await server.request("GET", "/sessions/e3")).body
    // Let the clock move past the record's time, so a moved heartbeat is visible.
    await eventually(() => Date.now() > before.lastHeartbeat + 2, 1_000, "the clock to move")
    const from = watch.events.length
    expect((await server.request("POST", "/sessions/e3/events", { type: "heartbeat" })).status).toBe(202)
    const after = (await server.request("GET", "/sessions/e3")).body
    expect(after.lastHeartbeat).toBeGreaterThan(before.lastHeartbeat)
    expect(after).toEqual({ ...before, lastHeartbeat: after.lastHeartbeat })
    // The next broadcast after the heartbeat is the summary's, not one for the heartbeat.
    expect((await server.request("POST", "/sessions/e3/events", { type: "summary", text: "after heartbeat" })).status)
      .toBe(202)
    const next = await watch.waitFor((e) => e.event !== "session_snapshot", 10_000, from)
    expect(next.event).toBe("session_updated")
    expect(next.data).toEqual({ id: "e3", fields: { summary: "after heartbeat" } })
  })

  it("every accepted event sets lastHeartbeat", async () => {
    const server = await open()
    await server.request("POST", "/sessions/e4")
    await stream(`${server.url}/sessions/e4/commands`)
    const before = (await server.request("GET", "/sessions/e4")).body
    await eventually(() => Date.now() > before.lastHeartbeat + 2, 1_000, "the clock to move")
    expect((await server.request("POST", "/sessions/e4/events", { type: "text_delta", delta: "hi" })).status).toBe(202)
    expect((await server.request("GET", "/sessions/e4")).body.lastHeartbeat).toBeGreaterThan(before.lastHeartbeat)
  })
})

describe("GET /sessions/stream", () => {
  it("snapshots per session, snapshot_complete, then created / updated / removed", async () => {
    const server = await open()
    const a = (await server.request("POST", "/sessions/a", { project: "x" })).body
    const b = (await server.request("POST", "/sessions/b", { project: "y" })).body
    const c = (await server.request("POST", "/sessions/c")).body
    const watch = await stream(`${server.url}/sessions/stream`)
    expect(watch.status).toBe(200)
    expect(watch.headers.get("content-type") ?? "").toMatch(/^text\/event-stream/)
    expect(watch.headers.get("cache-control")).toBe("no-cache")
    await watch.waitFor((e) => e.event === "snapshot_complete")
    expect(watch.events.map((e) => e.event)).toEqual([
      "session_snapshot",
      "session_snapshot",
      "session_snapshot",
      "snapshot_complete"
    ])
    expect(watch.events.slice(0, 3).map((e) => e.data)).toEqual([{ session: a }, { session: b }, { session: c }])
    expect(watch.events[3]!.id).toBeUndefined()

    const d = await server.request("POST", "/sessions/d", { project: "z" })
    const created = await watch.waitFor((e) => e.event === "session_created")
    expect(created.data).toEqual({ session: d.body })

    await stream(`${server.url}/sessions/d/commands`)
    const updated = await watch.waitFor((e) => e.event === "session_updated")
    expect(updated.data).toEqual({ id: "d", fields: { status: "live" } })

    expect((await server.request("DELETE", "/sessions/a")).status).toBe(204)
    const removed = await watch.waitFor((e) => e.event === "session_removed")
    expect(removed.data).toEqual({ id: "a" })
    expect(watch.events.slice(4).map((e) => e.event)).toEqual(["session_created", "session_updated", "session_removed"])
  })

  it("with no sessions: just snapshot_complete", async () => {
    const server = await open()
    const watch = await watchSessions(server)
    expect(watch.events.map((e) => e.event)).toEqual(["snapshot_complete"])
  })

  it("?project=x filters snapshots and live events", async () => {
    const server = await open()
    await server.request("POST", "/sessions/x1", { project: "x" })
    await server.request("POST", "/sessions/y1", { project: "y" })
    await server.request("POST", "/sessions/n1")
    const watch = await watchSessions(server, "?project=x")
    expect(watch.headers.get("content-type") ?? "").toMatch(/^text\/event-stream/)
    expect(watch.events.filter((e) => e.event === "session_snapshot").map((e) => e.data.session.id)).toEqual(["x1"])

    // Other projects' changes first, then one of x as a marker: the bus is ordered, so anything
    // of y or of no project that leaked through would arrive before the marker.
    await server.request("POST", "/sessions/y2", { project: "y" })
    await stream(`${server.url}/sessions/y1/commands`)
    await server.request("POST", "/sessions/y1/events", { type: "summary", text: "y summary" })
    await server.request("DELETE", "/sessions/n1")
    await server.request("POST", "/sessions/n2")
    await server.request("POST", "/sessions/x2", { project: "x" })
    await watch.waitFor((e) => e.event === "session_created")
    await stream(`${server.url}/sessions/x1/commands`)
    await watch.waitFor((e) => e.event === "session_updated")
    await server.request("DELETE", "/sessions/x2")
    await watch.waitFor((e) => e.event === "session_removed")

    const live = watch.events.slice(watch.events.findIndex((e) => e.event === "snapshot_complete") + 1)
    expect(live.map((e) => [e.event, e.data.session?.id ?? e.data.id])).toEqual([
      ["session_created", "x2"],
      ["session_updated", "x1"],
      ["session_removed", "x2"]
    ])
  })

  it("an unfiltered stream sees every project", async () => {
    const server = await open()
    const watch = await watchSessions(server)
    await server.request("POST", "/sessions/p1", { project: "x" })
    await server.request("POST", "/sessions/p2", { project: "y" })
    await server.request("POST", "/sessions/p3")
    await eventually(() => watch.events.filter((e) => e.event === "session_created").length === 3, 10_000, "3 created")
    expect(watch.events.filter((e) => e.event === "session_created").map((e) => e.data.session.id)).toEqual([
      "p1",
      "p2",
      "p3"
    ])
  })
})

describe("keep-alive", () => {
  it("every stream sends `: keep-alive` comments at keepAliveInterval", async () => {
    const server = await open({ keepAliveInterval: 100 })
    await server.request("POST", "/sessions/k1")
    const sandbox = await stream(`${server.url}/sessions/k1/commands`)
    const sessions = await stream(`${server.url}/sessions/stream`)
    const artifacts = await stream(`${server.url}/sessions/k1/stream`)
    for (const [name, client] of [["sessions", sessions], ["sandbox", sandbox], ["artifacts", artifacts]] as const) {
      await eventually(
        () => client.comments.filter((c) => c.trim() === "keep-alive").length >= 2,
        10_000,
        `keep-alive comments on the ${name} stream`
      )
    }
    // Comments are not events: the session stream still holds only its snapshots.
    expect(sessions.events.map((e) => e.event)).toEqual(["session_snapshot", "snapshot_complete"])
  })
})

describe("bootstrap timeout", () => {
  it("removes a session whose sandbox never came; keeps those whose sandbox did", async () => {
    const server = await open({ bootstrapTimeout: 600 })
    const watch = await watchSessions(server)
    // Created first, so their timers would fire before the doomed one's if still running.
    await server.request("POST", "/sessions/kept")
    await stream(`${server.url}/sessions/kept/commands`)
    await server.request("POST", "/sessions/left")
    const left = await stream(`${server.url}/sessions/left/commands`)
    left.close()
    await eventually(async () => (await status(server, "left")) === "disconnected", 10_000, "left disconnected")
    await server.request("POST", "/sessions/doomed")

    const removed = await watch.waitFor((e) => e.event === "session_removed", 15_000)
    expect(removed.data).toEqual({ id: "doomed" })
    expectError(await server.request("GET", "/sessions/doomed"), 404, /doomed/, "not_found")
    expect(await status(server, "kept")).toBe("live")
    expect(await status(server, "left")).toBe("disconnected")
    expect(watch.events.filter((e) => e.event === "session_removed")).toHaveLength(1)
  })
})

describe("persistence across restart (SQLite file)", () => {
  it("sessions survive; live/idle become disconnected; bootstrapping ones keep only the time they had left", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const dbPath = join(tmp.dir, "rein.db")

    const first = await open({ dbPath, bootstrapTimeout: 60_000 })
    const boot = (await first.request("POST", "/sessions/boot", { project: "p" })).body
    await first.request("POST", "/sessions/live", { project: "p" })
    await stream(`${first.url}/sessions/live/commands`)
    await first.request("POST", "/sessions/live/events", { type: "summary", text: "working" })
    await first.request("POST", "/sessions/idle")
    await stream(`${first.url}/sessions/idle/commands`)
    await first.request("POST", "/sessions/idle/events", { type: "turn_end" })
    await first.request("POST", "/sessions/gone")
    await stream(`${first.url}/sessions/gone/commands`).then((c) => c.close())
    await eventually(async () => (await status(first, "gone")) === "disconnected", 10_000, "gone disconnected")
    const before = (await first.request("GET", "/sessions")).body as Array<Session>
    expect(Object.fromEntries(before.map((s) => [s.id, s.status]))).toEqual({
      boot: "bootstrapping",
      live: "live",
      idle: "idle",
      gone: "disconnected"
    })
    await first.close()

    // While the server is down, bootstrapping sessions created long ago are written straight to
    // the file: one with ~3 s of its 60 s left, one whose time ran out meanwhile.
    const now = Date.now()
    const old = (id: string, age: number): Session => ({
      id,
      status: "bootstrapping",
      summary: null,
      project: null,
      createdAt: now - age,
      lastHeartbeat: now - age,
      pendingPermissions: 0,
      usage: noUsage,
      lastStopReason: null,
    agent: null,
    runner: null,
    workspace: null
    })
    await Effect.runPromise(
      Effect.provide(
        Effect.flatMap(SessionStore, (store) =>
          Effect.zipRight(store.create(old("late", 57_000)), store.create(old("expired", 120_000)))),
        Sqlite.layer({ filename: dbPath })
      )
    )

    const second = await open({ dbPath, bootstrapTimeout: 60_000 })
    const byId = async () =>
      Object.fromEntries(((await second.request("GET", "/sessions")).body as Array<Session>).map((s) => [s.id, s]))
    const after = await byId()
    // "late" still had time left when the server started.
    expect(after.late?.status).toBe("bootstrapping")
    expect(after.boot).toEqual(boot)
    for (const s of before) {
      if (s.id === "boot") continue
      expect(after[s.id]).toEqual({ ...s, status: "disconnected" })
    }
    expect(after.live!.summary).toBe("working")
    expect(after.live!.project).toBe("p")

    // The expired one goes at once, the late one after its remaining ~3 s (not a fresh 60 s).
    await eventually(async () => (await second.request("GET", "/sessions/expired")).status === 404, 10_000, "expired removed")
    await eventually(async () => (await second.request("GET", "/sessions/late")).status === 404, 15_000, "late removed")
    const final = await byId()
    expect(Object.keys(final).sort()).toEqual(["boot", "gone", "idle", "live"])
    expect(final.boot!.status).toBe("bootstrapping")

    // A restarted disconnected session takes a sandbox again.
    await stream(`${second.url}/sessions/live/commands`)
    expect(await status(second, "live")).toBe("live")
  })

  it("a bootstrapping session still expires after restart", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const dbPath = join(tmp.dir, "rein.db")
    const first = await open({ dbPath, bootstrapTimeout: 1_000 })
    await first.request("POST", "/sessions/b1")
    await first.close()
    const second = await open({ dbPath, bootstrapTimeout: 1_000 })
    const watch = await stream(`${second.url}/sessions/stream`)
    await watch.waitFor((e) => e.event === "session_removed" && e.data.id === "b1", 15_000)
    expect((await second.request("GET", "/sessions/b1")).status).toBe(404)
  })

  it("deleted sessions stay deleted after restart", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const dbPath = join(tmp.dir, "rein.db")
    const first = await open({ dbPath })
    await first.request("POST", "/sessions/keep")
    await first.request("POST", "/sessions/drop")
    await first.request("DELETE", "/sessions/drop")
    await first.close()
    const second = await open({ dbPath })
    expect((await second.request("GET", "/sessions")).body.map((s: Session) => s.id)).toEqual(["keep"])
  })
})

describe("close()", () => {
  it("ends open streams, is quick, and frees the port", async () => {
    const server = await open()
    const port = server.port
    await server.request("POST", "/sessions/c1")
    const sandbox = await stream(`${server.url}/sessions/c1/commands`)
    const sessions = await watchSessions(server)
    const artifacts = await stream(`${server.url}/sessions/c1/stream`)
    await artifacts.waitFor((e) => e.event === "snapshot_complete")

    const t0 = Date.now()
    await within(server.close(), 10_000, "close() with open streams")
    // Normally a few ms; the bound only catches waiting on idle keep-alive sockets (seconds).
    expect(Date.now() - t0).toBeLessThan(1_500)
    await within(Promise.all([sandbox.ended, sessions.ended, artifacts.ended]), 5_000, "streams to end")
    // Ending by close() did not mark anything, and the port is free for a new server.
    const again = await open({ port })
    expect(again.port).toBe(port)
    const res = await request(`http://127.0.0.1:${port}`, "GET", "/sessions")
    expect(res.status).toBe(200)
    expect(res.body).toEqual([])
  })

  it("is quick even with a connected client that has not sent a request yet", async () => {
    // Browsers and HTTP client pools open connections ahead of use; they must not hold close() up.
    const server = await open()
    const socket = connect(server.port, "127.0.0.1")
    try {
      await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject))
      const t0 = Date.now()
      await within(server.close(), 5_000, "close() with an idle connection open")
      expect(Date.now() - t0).toBeLessThan(1_500)
    } finally {
      socket.destroy()
    }
  })

  it("frees the port of a server that had no streams", async () => {
    const server = await open()
    const port = server.port
    await server.close()
    const again = await open({ port })
    expect(again.port).toBe(port)
    expect((await again.request("GET", "/sessions")).status).toBe(200)
  })

  it("can be called twice", async () => {
    const server = await open()
    await server.close()
    await server.close()
  })
})

describe("createServer API", () => {
  it("getSession, createSession, getSessions", async () => {
    const server = await open()
    expect(await server.getSession("nope")).toBeUndefined()

    const created = await server.createSession("api1", "web")
    expect(created).toMatchObject({ id: "api1", status: "bootstrapping", summary: null, project: "web" })
    expect(await server.getSession("api1")).toEqual(created)
    // Visible over HTTP too.
    expect((await server.request("GET", "/sessions/api1")).body).toEqual(created)

    await expect(server.createSession("api1")).rejects.toBeDefined()
    await expect(server.createSession("-bad")).rejects.toBeDefined()
    await expect(server.createSession("stream")).rejects.toBeDefined()
    await expect(server.createSession("a".repeat(129))).rejects.toBeDefined()
    expect(await server.getSession("-bad")).toBeUndefined()

    const plain = await server.createSession("api2")
    expect(plain.project).toBeNull()
    await server.createSession("api3", "web")
    expect((await server.getSessions()).map((s) => s.id)).toEqual(["api1", "api2", "api3"])
    expect((await server.getSessions({})).map((s) => s.id)).toEqual(["api1", "api2", "api3"])
    expect((await server.getSessions({ project: "web" })).map((s) => s.id)).toEqual(["api1", "api3"])
    expect(await server.getSessions({ project: "none" })).toEqual([])
  })

  it("createSession is broadcast like POST", async () => {
    const server = await open()
    const watch = await watchSessions(server)
    const created = await server.createSession("api4", "p")
    expect((await watch.waitFor((e) => e.event === "session_created")).data).toEqual({ session: created })
  })

  it("an error of createSession names the problem", async () => {
    const server = await open()
    await server.createSession("dup")
    await expect(server.createSession("dup")).rejects.toMatchObject({ message: expect.stringMatching(/dup/) })
    await expect(server.createSession("-bad")).rejects.toMatchObject({ message: expect.stringMatching(/-bad/) })
  })
})
