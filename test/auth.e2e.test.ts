/**
 * Auth hardening: the client token, per-session sandbox tokens, `?access_token=`
 * on GET streams only, `/healthz` without auth, persistence of sandbox tokens,
 * and the CLI's `--token` / `REIN_TOKEN` / non-loopback warning.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { eventually, request, sse, type SseClient, start, tempDir, type TestResponse, type TestServer } from "./helpers.js"
import { ensureBuilt, type ServerProcess, spawnServer } from "./process.js"

const TOKEN = "t0ken"
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** Everything opened by a test, closed after it. */
const opened: Array<SseClient> = []
const servers: Array<TestServer> = []
const processes: Array<ServerProcess> = []

const open = async (url: string, headers: Record<string, string> = {}) => {
  const c = await sse(url, headers)
  opened.push(c)
  return c
}

afterEach(async () => {
  for (const c of opened.splice(0)) c.close()
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(processes.splice(0).map(async (p) => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM")
    await p.exited
  }))
})

const startServer = async (options: Parameters<typeof start>[0] = {}) => {
  const s = await start({ bootstrapTimeout: 600_000, ...options })
  servers.push(s)
  return s
}

const expectError = (res: TestResponse | { status: number; body: any; headers: Headers }, status: number, code: string) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status)
  expect(res.headers.get("content-type")).toMatch(/application\/json/)
  expect(res.body?.error?.code).toBe(code)
  expect(typeof res.body?.error?.message).toBe("string")
  expect(res.body.error.message.length).toBeGreaterThan(0)
}

/** A GET on an SSE route: status, headers and (for errors) the JSON body; a 200 stream is aborted after its headers. */
const probeStream = async (url: string, headers: Record<string, string> = {}) => {
  const controller = new AbortController()
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal })
  if (res.status === 200) {
    controller.abort()
    return { status: res.status, headers: res.headers, body: undefined as any }
  }
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text === "" ? undefined : JSON.parse(text) }
}

interface Route {
  readonly name: string
  readonly stream: boolean
  /** Performs the route against `base` with `headers`; `query` is appended to the path. */
  readonly run: (base: string, headers: Record<string, string>, query?: string) => Promise<{ status: number; headers: Headers; body: any }>
}

/** Every route of the protocol, against session `a1` (and `new1` for create/delete). */
const routes = (ids: { readonly a: string; readonly fresh: string; readonly doomed: string }): Array<Route> => {
  const plain = (method: string, path: string, body?: unknown): Route => ({
    name: `${method} ${path}`,
    stream: false,
    run: (base, headers, query = "") => request(base, method, path + query, body, headers)
  })
  const stream = (path: string): Route => ({
    name: `GET ${path}`,
    stream: true,
    run: (base, headers, query = "") => probeStream(base + path + query, headers)
  })
  return [
    plain("GET", "/sessions"),
    plain("GET", `/sessions/${ids.a}`),
    plain("POST", `/sessions/${ids.fresh}`, { project: "p" }),
    plain("DELETE", `/sessions/${ids.doomed}`),
    plain("POST", `/sessions/${ids.a}/commands`, { type: "abort" }),
    stream(`/sessions/${ids.a}/commands`),
    plain("POST", `/sessions/${ids.a}/events`, { type: "heartbeat" }),
    plain("GET", `/sessions/${ids.a}/artifacts`),
    stream(`/sessions/${ids.a}/stream`),
    stream("/sessions/stream")
  ]
}

describe("auth with a client token", () => {
  it("every route is 401 without a token and 403 with a wrong one, and nothing is applied", async () => {
    const server = await startServer({ token: TOKEN })
    await server.createSession("a1")
    await server.createSession("doomed")
    const before = await server.getSessions()
    for (const route of routes({ a: "a1", fresh: "new1", doomed: "doomed" })) {
      const none = await route.run(server.url, {})
      expectError(none, 401, "unauthorized")
      expect(none.headers.get("www-authenticate"), route.name).toMatch(/^Bearer/)
      expectError(await route.run(server.url, bearer("wrong")), 403, "forbidden")
      expectError(await route.run(server.url, bearer(TOKEN + "x")), 403, "forbidden")
      expectError(await route.run(server.url, { authorization: TOKEN }), 403, "forbidden")
      expectError(await route.run(server.url, { authorization: "Basic dDBrZW46" }), 403, "forbidden")
    }
    // Nothing of a refused request happened: no session created or removed, no status change.
    expect(await server.getSessions()).toEqual(before)
    expect((await server.request("GET", "/sessions/a1/artifacts", undefined, bearer(TOKEN))).body).toEqual([])
  })

  it("every route works with the right bearer token", async () => {
    const server = await startServer({ token: TOKEN })
    await server.createSession("a1")
    await server.createSession("doomed")
    const auth = bearer(TOKEN)
    expect((await server.request("GET", "/sessions", undefined, auth)).status).toBe(200)
    expect((await server.request("GET", "/sessions/a1", undefined, auth)).body.id).toBe("a1")
    const created = await server.request("POST", "/sessions/new1", { project: "p" }, auth)
    expect(created.status).toBe(201)
    expect(created.body.project).toBe("p")
    expect((await server.request("DELETE", "/sessions/doomed", undefined, auth)).status).toBe(204)

    const sandbox = await open(`${server.url}/sessions/a1/commands`, auth)
    expect(sandbox.status).toBe(200)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    expect((await server.request("POST", "/sessions/a1/commands", { type: "prompt", text: "hi" }, auth)).status).toBe(202)
    await sandbox.waitFor((e) => e.event === "command" && e.data.text === "hi")
    expect((await server.request("POST", "/sessions/a1/events", { type: "text_delta", delta: "yo" }, auth)).status).toBe(202)
    const artifacts = await server.request("GET", "/sessions/a1/artifacts", undefined, auth)
    expect(artifacts.status).toBe(200)
    expect(artifacts.body.map((a: any) => a.kind)).toEqual(["user_message", "text"])

    const stream = await open(`${server.url}/sessions/a1/stream`, auth)
    expect(stream.status).toBe(200)
    await stream.waitFor((e) => e.event === "snapshot_complete")
    expect(stream.events.filter((e) => e.event === "artifact_snapshot")).toHaveLength(2)
    const list = await open(`${server.url}/sessions/stream`, auth)
    expect(list.status).toBe(200)
    await list.waitFor((e) => e.event === "snapshot_complete")
    expect(list.events.filter((e) => e.event === "session_snapshot").map((e) => e.data.session.id).sort()).toEqual(["a1", "new1"])
  })

  it("auth comes first: without a token, an invalid id or body is 401, not a validation answer", async () => {
    const server = await startServer({ token: TOKEN })
    await server.createSession("a1")
    const cases: Array<[string, string, unknown]> = [
      ["GET", "/sessions/-bad", undefined],
      ["POST", "/sessions/-bad", {}],
      ["DELETE", "/sessions/-bad", undefined],
      ["POST", "/sessions/-bad/commands", { type: "abort" }],
      ["GET", "/sessions/-bad/artifacts", undefined],
      ["POST", "/sessions/-bad/events", { type: "heartbeat" }],
      ["POST", "/sessions/a1/events", "{not json"],
      ["POST", "/sessions/a1/commands", { type: "nope" }],
      ["POST", "/sessions/nope/events", { type: "heartbeat" }]
    ]
    for (const [method, path, body] of cases) {
      const res = await server.request(method, path, body)
      expect(res.status, `${method} ${path}`).toBe(401)
      expect(res.body?.error?.code, `${method} ${path}`).toBe("unauthorized")
    }
    for (const path of ["/sessions/-bad/commands", "/sessions/-bad/stream", "/sessions/nope/commands", "/sessions/nope/stream"]) {
      expectError(await probeStream(`${server.url}${path}`), 401, "unauthorized")
    }
  })

  it("the bearer scheme is case-insensitive and the token is exact", async () => {
    const server = await startServer({ token: TOKEN })
    expect((await server.request("GET", "/sessions", undefined, { authorization: `bearer ${TOKEN}` })).status).toBe(200)
    expectError(await server.request("GET", "/sessions", undefined, { authorization: "Bearer T0KEN" }), 403, "forbidden")
    expectError(await server.request("GET", "/sessions", undefined, { authorization: "Bearer t0ke" }), 403, "forbidden")
    expectError(await server.request("GET", "/sessions", undefined, { authorization: "Bearer" }), 403, "forbidden")
  })

  it("GET /healthz is 200 {ok:true} without auth even with a token set", async () => {
    const server = await startServer({ token: TOKEN })
    const res = await server.request("GET", "/healthz")
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ ok: true })
    expect((await server.request("GET", "/healthz", undefined, bearer("wrong"))).status).toBe(200)
  })
})

describe("sandbox tokens", () => {
  it("are returned once, in the 201 body only", async () => {
    const server = await startServer({ token: TOKEN })
    const auth = bearer(TOKEN)
    const list = await open(`${server.url}/sessions/stream`, auth)
    await list.waitFor((e) => e.event === "snapshot_complete")
    const created = await server.request("POST", "/sessions/s1", undefined, auth)
    expect(created.status).toBe(201)
    const token = created.body.sandboxToken
    expect(typeof token).toBe("string")
    expect(token.length).toBeGreaterThanOrEqual(20)
    expect(token).not.toBe(TOKEN)

    const one = await server.request("GET", "/sessions/s1", undefined, auth)
    expect(one.status).toBe(200)
    expect(one.body).not.toHaveProperty("sandboxToken")
    expect(one.text).not.toContain(token)
    const all = await server.request("GET", "/sessions", undefined, auth)
    expect(all.body).toHaveLength(1)
    expect(all.text).not.toContain(token)
    expect(all.body[0]).not.toHaveProperty("sandboxToken")
    const createdEvent = await list.waitFor((e) => e.event === "session_created")
    expect(createdEvent.data.session.id).toBe("s1")
    expect(JSON.stringify(createdEvent.data)).not.toContain(token)
    expect(createdEvent.data.session).not.toHaveProperty("sandboxToken")
    const later = await open(`${server.url}/sessions/stream`, auth)
    await later.waitFor((e) => e.event === "snapshot_complete")
    expect(JSON.stringify(later.events)).not.toContain(token)
    expect(JSON.stringify(list.events)).not.toContain(token)
    // The programmatic API does not leak it either.
    expect(JSON.stringify(await server.getSessions())).not.toContain(token)

    // Each session gets its own token.
    const other = await server.request("POST", "/sessions/s2", undefined, auth)
    expect(typeof other.body.sandboxToken).toBe("string")
    expect(other.body.sandboxToken).not.toBe(token)
  })

  it("open their own session's sandbox routes and nothing else", async () => {
    const server = await startServer({ token: TOKEN })
    const auth = bearer(TOKEN)
    const s1 = (await server.request("POST", "/sessions/s1", undefined, auth)).body.sandboxToken as string
    const s2 = (await server.request("POST", "/sessions/s2", undefined, auth)).body.sandboxToken as string
    await server.request("POST", "/sessions/doomed", undefined, auth)
    const own = bearer(s1)

    // Its own sandbox routes.
    const sandbox = await open(`${server.url}/sessions/s1/commands`, own)
    expect(sandbox.status).toBe(200)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    const posted = await server.request("POST", "/sessions/s1/events", [{ type: "turn_start" }, { type: "text_delta", delta: "ok" }], own)
    expect(posted.status).toBe(202)
    expect((await server.request("GET", "/sessions/s1/artifacts", undefined, auth)).body.map((a: any) => a.text)).toEqual(["ok"])

    // Every client route, even of its own session, is 403.
    const before = await server.getSessions()
    for (const route of routes({ a: "s1", fresh: "new1", doomed: "doomed" })) {
      if (route.name === "GET /sessions/s1/commands" || route.name === "POST /sessions/s1/events") continue
      expectError(await route.run(server.url, own), 403, "forbidden")
    }
    // The other session's sandbox routes are 403 too.
    expectError(await probeStream(`${server.url}/sessions/s2/commands`, own), 403, "forbidden")
    expectError(await server.request("POST", "/sessions/s2/events", { type: "text_delta", delta: "no" }, own), 403, "forbidden")
    // And an unknown session's (no oracle for which ids exist).
    expectError(await probeStream(`${server.url}/sessions/nope/commands`, own), 403, "forbidden")
    expectError(await server.request("POST", "/sessions/nope/events", { type: "heartbeat" }, own), 403, "forbidden")
    // s2's token cannot drive s1.
    expectError(await server.request("POST", "/sessions/s1/events", { type: "text_delta", delta: "no" }, bearer(s2)), 403, "forbidden")
    expectError(await probeStream(`${server.url}/sessions/s1/commands`, bearer(s2)), 403, "forbidden")

    // Nothing of the refused requests was applied; the sandbox stream is still s1's.
    expect(await server.getSessions()).toEqual(before)
    expect((await server.request("GET", "/sessions/s1/artifacts", undefined, auth)).body.map((a: any) => a.text)).toEqual(["ok"])
    expect((await server.request("GET", "/sessions/s2/artifacts", undefined, auth)).body).toEqual([])
    expect(sandbox.isEnded()).toBe(false)
    expect(sandbox.events.filter((e) => e.event === "command")).toEqual([])
    // The client token still opens the sandbox routes (an operator can act as the sandbox).
    expect((await server.request("POST", "/sessions/s2/events", { type: "heartbeat" }, auth)).status).toBe(202)
  })

  it("stop working when their session is deleted and a new session of the same id gets a new one", async () => {
    const server = await startServer({ token: TOKEN })
    const auth = bearer(TOKEN)
    const old = (await server.request("POST", "/sessions/s1", undefined, auth)).body.sandboxToken as string
    expect((await server.request("DELETE", "/sessions/s1", undefined, auth)).status).toBe(204)
    const fresh = (await server.request("POST", "/sessions/s1", undefined, auth)).body.sandboxToken as string
    expect(fresh).not.toBe(old)
    expectError(await server.request("POST", "/sessions/s1/events", { type: "heartbeat" }, bearer(old)), 403, "forbidden")
    expect((await server.request("POST", "/sessions/s1/events", { type: "heartbeat" }, bearer(fresh))).status).toBe(202)
  })

  it("survive a restart on the same SQLite file", async () => {
    const tmp = tempDir()
    try {
      const dbPath = `${tmp.dir}/rein.db`
      const first = await startServer({ token: TOKEN, dbPath })
      const auth = bearer(TOKEN)
      const s1 = (await first.request("POST", "/sessions/s1", undefined, auth)).body.sandboxToken as string
      const s2 = (await first.request("POST", "/sessions/s2", undefined, auth)).body.sandboxToken as string
      expect((await first.request("POST", "/sessions/s1/events", { type: "text_delta", delta: "before" }, bearer(s1))).status).toBe(202)
      await first.close()
      servers.splice(servers.indexOf(first), 1)

      const second = await startServer({ token: TOKEN, dbPath })
      const sandbox = await open(`${second.url}/sessions/s1/commands`, bearer(s1))
      expect(sandbox.status).toBe(200)
      await sandbox.waitFor((e) => e.event === "snapshot_complete")
      expect((await second.request("POST", "/sessions/s1/events", { type: "text_delta", delta: " after" }, bearer(s1))).status).toBe(202)
      const artifacts = await second.request("GET", "/sessions/s1/artifacts", undefined, auth)
      expect(artifacts.body.map((a: any) => a.text)).toEqual(["before", " after"])
      // Still scoped: not another session's routes, not client routes; and no token leaks after restart.
      expectError(await second.request("POST", "/sessions/s2/events", { type: "heartbeat" }, bearer(s1)), 403, "forbidden")
      expectError(await second.request("GET", "/sessions/s1", undefined, bearer(s1)), 403, "forbidden")
      expect((await second.request("POST", "/sessions/s2/events", { type: "heartbeat" }, bearer(s2))).status).toBe(202)
      const list = await second.request("GET", "/sessions", undefined, auth)
      expect(list.text).not.toContain(s1)
      expect(list.text).not.toContain(s2)
    } finally {
      for (const c of opened.splice(0)) c.close()
      await Promise.all(servers.splice(0).map((s) => s.close()))
      tmp.cleanup()
    }
  })
})

describe("?access_token=", () => {
  it("opens the GET stream routes", async () => {
    const server = await startServer({ token: TOKEN })
    const sandboxToken = (await server.request("POST", "/sessions/a1", undefined, bearer(TOKEN))).body.sandboxToken as string
    await server.createSession("b1")
    const q = `?access_token=${TOKEN}`
    for (const path of ["/sessions/stream", "/sessions/a1/stream", "/sessions/b1/commands"]) {
      const c = await open(`${server.url}${path}${q}`)
      expect(c.status, path).toBe(200)
      expect(c.headers.get("content-type")).toMatch(/text\/event-stream/)
      await c.waitFor((e) => e.event === "snapshot_complete")
    }
    // A project filter and the token together.
    const filtered = await open(`${server.url}/sessions/stream?project=x&access_token=${TOKEN}`)
    expect(filtered.status).toBe(200)
    // A sandbox token in the query opens its own command stream only.
    const sandbox = await open(`${server.url}/sessions/a1/commands?access_token=${encodeURIComponent(sandboxToken)}`)
    expect(sandbox.status).toBe(200)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    expectError(await probeStream(`${server.url}/sessions/b1/commands?access_token=${encodeURIComponent(sandboxToken)}`), 403, "forbidden")
    expectError(await probeStream(`${server.url}/sessions/a1/stream?access_token=${encodeURIComponent(sandboxToken)}`), 403, "forbidden")
    // A wrong query token is 403.
    for (const path of ["/sessions/stream", "/sessions/a1/stream", "/sessions/b1/commands"]) {
      expectError(await probeStream(`${server.url}${path}?access_token=wrong`), 403, "forbidden")
      expectError(await probeStream(`${server.url}${path}?access_token=`), 403, "forbidden")
    }
  })

  it("is ignored on every other route", async () => {
    const server = await startServer({ token: TOKEN })
    await server.createSession("a1")
    await server.createSession("doomed")
    const before = await server.getSessions()
    const q = `?access_token=${TOKEN}`
    for (const route of routes({ a: "a1", fresh: "new1", doomed: "doomed" })) {
      if (route.stream) continue
      expectError(await route.run(server.url, {}, q), 401, "unauthorized")
    }
    expectError(await request(server.url, "GET", `/sessions${q}`), 401, "unauthorized")
    expect(await server.getSessions()).toEqual(before)
    expect((await server.request("GET", "/sessions/a1/artifacts", undefined, bearer(TOKEN))).body).toEqual([])
  })
})

describe("without a token", () => {
  it("no route needs auth and no sandbox token is issued", async () => {
    const server = await startServer()
    const created = await server.request("POST", "/sessions/a1", { project: "p" })
    expect(created.status).toBe(201)
    expect(created.body).not.toHaveProperty("sandboxToken")
    expect(Object.keys(created.body).sort()).toEqual([
      "agent",
      "createdAt",
      "id",
      "lastHeartbeat",
      "lastStopReason",
      "pendingPermissions",
      "project",
      "runner",
      "status",
      "summary",
      "usage",
      "workspace"
    ])
    await server.createSession("doomed")
    expect((await server.request("GET", "/sessions")).status).toBe(200)
    expect((await server.request("GET", "/sessions/a1")).status).toBe(200)
    const sandbox = await open(`${server.url}/sessions/a1/commands`)
    expect(sandbox.status).toBe(200)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    expect((await server.request("POST", "/sessions/a1/commands", { type: "prompt", text: "x" })).status).toBe(202)
    expect((await server.request("POST", "/sessions/a1/events", { type: "text_delta", delta: "y" })).status).toBe(202)
    expect((await server.request("GET", "/sessions/a1/artifacts")).body).toHaveLength(2)
    const stream = await open(`${server.url}/sessions/a1/stream`)
    expect(stream.status).toBe(200)
    const list = await open(`${server.url}/sessions/stream`)
    expect(list.status).toBe(200)
    expect((await server.request("DELETE", "/sessions/doomed")).status).toBe(204)
    // A stray Authorization header changes nothing.
    expect((await server.request("GET", "/sessions", undefined, bearer("anything"))).status).toBe(200)
    expect((await server.request("GET", "/healthz")).body).toEqual({ ok: true })
  })

  it("an empty token option means no auth", async () => {
    const server = await startServer({ token: "" })
    expect((await server.request("GET", "/sessions")).status).toBe(200)
    expect((await server.request("POST", "/sessions/a1")).body).not.toHaveProperty("sandboxToken")
  })
})

describe("the CLI", () => {
  beforeAll(ensureBuilt, 120_000)
  const spawned = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
    const p = await spawnServer(["--db", ":memory:", ...args], env)
    processes.push(p)
    return p
  }

  it("--token enables auth", async () => {
    const p = await spawned(["--token", "x"])
    expectError(await request(p.url, "GET", "/sessions"), 401, "unauthorized")
    expectError(await request(p.url, "GET", "/sessions", undefined, bearer("y")), 403, "forbidden")
    expect((await request(p.url, "GET", "/sessions", undefined, bearer("x"))).status).toBe(200)
    const created = await request(p.url, "POST", "/sessions/c1", undefined, bearer("x"))
    expect(created.status).toBe(201)
    expect(typeof created.body.sandboxToken).toBe("string")
    expect((await request(p.url, "GET", "/healthz")).status).toBe(200)
  })

  it("REIN_TOKEN enables auth", async () => {
    const p = await spawned([], { REIN_TOKEN: "x" })
    expectError(await request(p.url, "GET", "/sessions"), 401, "unauthorized")
    expect((await request(p.url, "GET", "/sessions", undefined, bearer("x"))).status).toBe(200)
  })

  it("without a token the CLI needs no auth", async () => {
    const p = await spawned([], { REIN_TOKEN: "" })
    // An empty REIN_TOKEN must not lock everyone out, nor be a token anyone can send.
    expect((await request(p.url, "GET", "/sessions")).status).toBe(200)
  })

  it("warns on stderr when binding a non-loopback host without a token", async () => {
    const p = await spawned(["--host", "0.0.0.0"])
    await eventually(() => /WARNING/.test(p.output()), 10_000, "the warning")
    const line = p.output().split("\n").find((l) => l.includes("WARNING"))!
    expect(line).toMatch(/token/i)
    expect((await request(p.url, "GET", "/sessions")).status).toBe(200)
  })

  it("does not warn on a non-loopback host with a token, nor on loopback", async () => {
    const withToken = await spawned(["--host", "0.0.0.0", "--token", "x"])
    const loopback = await spawned([])
    // The warning is written right after the listening line; a served request comes after both.
    expect((await request(withToken.url, "GET", "/sessions", undefined, bearer("x"))).status).toBe(200)
    expect((await request(loopback.url, "GET", "/sessions")).status).toBe(200)
    expect(withToken.output()).not.toMatch(/WARNING/)
    expect(loopback.output()).not.toMatch(/WARNING/)
  })
})

afterAll(async () => {
  for (const c of opened.splice(0)) c.close()
  await Promise.all(servers.splice(0).map((s) => s.close()))
})
