/**
 * Hostile input: random methods, paths, headers and bodies against one
 * server. Never a 5xx, never a reset connection, every 4xx a JSON error,
 * no prototype pollution, and a rejected request changes nothing.
 */
import fc from "fast-check"
import { request as httpRequest } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, start, type TestServer } from "./helpers.js"

interface Outcome {
  readonly status?: number
  readonly headers?: Record<string, string | Array<string> | undefined>
  readonly body?: Buffer
  readonly sse?: boolean
  /** A connection error, and whether it came before or after the response head. */
  readonly error?: Error
}

const MiB = 1024 * 1024

/** One request on its own connection; SSE responses are dropped after their head. */
const send = (port: number, method: string, path: string, headers: Record<string, string>, body?: Buffer | string) =>
  new Promise<Outcome>((resolve) => {
    let settled = false
    const done = (o: Outcome) => {
      if (!settled) {
        settled = true
        resolve(o)
      }
    }
    // Every body is framed (a GET's too), so what the server sees is one well-formed request.
    const framed = body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) }
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers: framed, agent: false }, (res) => {
      const base = { status: res.statusCode!, headers: res.headers }
      if (String(res.headers["content-type"] ?? "").includes("text/event-stream")) {
        res.destroy()
        req.destroy()
        return done({ ...base, sse: true })
      }
      const chunks: Array<Buffer> = []
      res.on("data", (d: Buffer) => chunks.push(d))
      res.on("end", () => done({ ...base, body: Buffer.concat(chunks) }))
      res.on("error", (error) => done({ ...base, body: Buffer.concat(chunks), error }))
      res.on("aborted", () => done({ ...base, body: Buffer.concat(chunks), error: new Error("response aborted") }))
    })
    req.on("error", (error) => done({ error }))
    req.setTimeout(30_000, () => req.destroy(new Error("request timed out")))
    if (body === undefined) req.end()
    else req.end(body)
  })

/** The observable state: the session list and every session's artifacts. */
const snapshot = async (server: TestServer) => {
  const list = await server.request("GET", "/sessions")
  expect(list.status).toBe(200)
  const out: Record<string, string> = { "/sessions": list.text }
  for (const s of list.body as Array<{ id: string }>) {
    const artifacts = await server.request("GET", `/sessions/${encodeURIComponent(s.id)}/artifacts`)
    expect(artifacts.status).toBe(200)
    out[s.id] = artifacts.text
  }
  return out
}

// ---------------------------------------------------------------------------
// Arbitraries

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 })
const pctJunk = fc.uint8Array({ minLength: 1, maxLength: 12 }).map((bytes) =>
  Array.from(bytes, (b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`).join("")
)

/** Valid ids that may exist; s1 is the session with known artifacts. */
const pool = ["s1", "s2", "x.y:z-1"] as const

const id = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...pool) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "stream",
      "..",
      ".",
      "%2e%2e",
      "__proto__",
      "constructor",
      "prototype",
      "hasOwnProperty",
      "-a",
      ".a",
      "_a",
      ":a",
      "a%20b",
      "a%2Fb",
      "%00",
      "%ZZ",
      "%E0%A4%A",
      "%FF%FE",
      "%C3%A9",
      "%F0%9F%98%80",
      "a%0Ab",
      "x".repeat(128),
      "x".repeat(129),
      "a".repeat(4_000),
      "%41".repeat(1_000)
    )
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: pctJunk },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,8}$/).map((s) => `${s}%`) }
)

const suffix = fc.constantFrom(
  "",
  "/",
  "/commands",
  "/events",
  "/artifacts",
  "/stream",
  "/stream/x",
  "/events/",
  "/nope",
  "/..",
  "/../../healthz",
  "?project=x",
  "?project=%ZZ",
  "/stream?project=__proto__",
  "/events?access_token=x"
)

const path = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(id, suffix).map(([i, s]) => `/sessions/${i}${s}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "/sessions",
      "/sessions/",
      "/sessions/stream",
      "/sessions/stream?project=a&project=b",
      "/sessions?project=__proto__",
      "/sessions?project[]=x",
      "/sessions?__proto__[polluted]=1",
      "/healthz",
      "/healthz/x",
      "/",
      "/%",
      "//sessions",
      "/sessions//events",
      "/sessions/s1//events",
      "/SESSIONS",
      "/sessions/s1/events/../../s2/events",
      "*"
    )
  },
  { weight: 1, arbitrary: fc.webPath().map((p) => (p.startsWith("/") ? p : `/${p}`)) },
  { weight: 1, arbitrary: fc.tuple(pctJunk, pctJunk).map(([a, b]) => `/${a}/${b}`) }
)

const method = fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")

const headers = fc.record(
  {
    "last-event-id": fc.oneof(
      printable,
      fc.constantFrom("0", "-1", "1e3", "1.5", " 2 ", "99999999999999999999", "NaN", "0x10", "", "3", "1")
    ),
    "idempotency-key": fc.oneof(
      printable,
      fc.constantFrom("", " ", "k".repeat(256), "k".repeat(257), "k".repeat(4_000), "__proto__", "constructor")
    ),
    "content-type": fc.oneof(
      printable,
      fc.constantFrom("application/json", "text/plain", "application/json; charset=latin1", "multipart/form-data; boundary=x", "")
    ),
    accept: fc.constantFrom("text/event-stream", "application/json", "*/*", "text/html")
  },
  { requiredKeys: [] }
)

const eventTypes = [
  "text_delta",
  "reasoning_delta",
  "tool_call_start",
  "tool_call_input_delta",
  "tool_call_end",
  "permission_request",
  "plan",
  "file_change",
  "error",
  "usage",
  "summary",
  "turn_start",
  "turn_end",
  "heartbeat",
  "custom"
]
const fieldNames = [
  "delta",
  "partId",
  "toolCallId",
  "name",
  "input",
  "output",
  "isError",
  "requestId",
  "title",
  "options",
  "entries",
  "path",
  "action",
  "diff",
  "message",
  "code",
  "inputTokens",
  "outputTokens",
  "costUsd",
  "text",
  "stopReason",
  "data",
  "project",
  "decision",
  "__proto__",
  "constructor"
]
const junkValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 1e308, -0, 0.5, "", "t1", "r1", "p0", [], {}, null, true, [{ content: 1, status: "done" }])
)
/** Events of known types with fields of random names and types. */
const wrongEvent = fc.tuple(
  fc.oneof(fc.constantFrom(...eventTypes), fc.constantFrom("prompt", "abort", "permission_reply", "TEXT_DELTA", "", "__proto__"), printable),
  fc.dictionary(fc.constantFrom(...fieldNames), junkValue, { maxKeys: 5 })
).map(([type, fields]) => ({ ...fields, type }))

/** A body with a short label, so a counterexample never prints megabytes. */
class Body {
  constructor(readonly bytes: Buffer | string) {}
  [fc.toStringMethod]() {
    const n = Buffer.byteLength(this.bytes)
    const text = typeof this.bytes === "string" ? this.bytes : this.bytes.toString("latin1")
    return n > 300 ? `<${JSON.stringify(text.slice(0, 60))}... ${n} bytes>` : JSON.stringify(text)
  }
}

const deepArray = "[".repeat(10_000) + "]".repeat(10_000)
const deepObject = "{\"a\":".repeat(10_000) + "1" + "}".repeat(10_000)

const rawBody: fc.Arbitrary<Buffer | string | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "",
      " ",
      "{",
      "[1,",
      "nul",
      "{'a':1}",
      "\"unterminated",
      "{\"type\":\"heartbeat\"}garbage",
      "\u0000",
      "NaN",
      "Infinity",
      "-",
      "[]",
      "{}",
      "null",
      "0",
      "\"str\"",
      "true",
      "\uFEFF{\"type\":\"heartbeat\"}",
      deepArray,
      deepObject,
      `[${deepArray}]`,
      `{"type":"custom","name":"deep","data":${deepArray}}`,
      `{"type":"text_delta","delta":${deepObject}}`,
      `{"project":${deepArray}}`,
      "{\"__proto__\":{\"polluted\":1}}",
      "{\"constructor\":{\"prototype\":{\"x\":1}}}",
      "{\"type\":\"text_delta\",\"delta\":\"d\",\"__proto__\":{\"polluted\":1}}",
      "[{\"__proto__\":{\"polluted\":1},\"type\":\"heartbeat\"}]",
      "{\"project\":\"p\",\"__proto__\":{\"polluted\":1},\"constructor\":{\"prototype\":{\"x\":1}}}",
      "{\"type\":\"custom\",\"name\":\"n\",\"data\":{\"__proto__\":{\"polluted\":1}}}",
      "{\"type\":\"usage\",\"inputTokens\":1e400,\"outputTokens\":1}",
      "{\"type\":\"usage\",\"inputTokens\":-1,\"outputTokens\":1}",
      "{\"type\":\"prompt\",\"text\":5}",
      "{\"type\":\"permission_reply\",\"requestId\":\"r1\",\"decision\":\"maybe\"}",
      "{\"type\":\"permission_reply\",\"requestId\":\"nope\",\"decision\":\"reject\"}",
      "{\"type\":\"tool_call_end\",\"toolCallId\":\"t9\"}",
      "{\"type\":\"tool_call_start\",\"toolCallId\":\"t1\",\"name\":\"dup\"}",
      "{\"type\":\"permission_request\",\"requestId\":\"r1\",\"title\":\"dup\"}",
      "[{\"type\":\"text_delta\",\"delta\":\"ok\"},{\"type\":\"tool_call_end\",\"toolCallId\":\"nope\"}]",
      "[{\"type\":\"turn_start\"},{\"type\":\"summary\",\"text\":7}]",
      JSON.stringify(Array.from({ length: 10_001 }, () => ({ type: "heartbeat" }))),
      JSON.stringify({ project: "p".repeat(257) })
    )
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      Buffer.from([0xff, 0xfe, 0x7b, 0x7d]),
      Buffer.concat([Buffer.from("{\"type\":\"text_delta\",\"delta\":\""), Buffer.from([0xc3, 0x28]), Buffer.from("\"}")]),
      Buffer.concat([Buffer.from("{\"project\":\""), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from("\"}")]),
      Buffer.concat([Buffer.from("{\"type\":\"prompt\",\"text\":\""), Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]), Buffer.from("\"}")])
    )
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      deepArray,
      deepObject,
      `{"project":${deepArray}}`,
      `{"type":"prompt","text":${deepArray}}`,
      `{"type":"text_delta","delta":${deepArray}}`,
      `[{"type":"heartbeat"},{"type":"summary","text":${deepObject}}]`,
      `{"type":"custom","name":"deep","data":${deepObject}}`
    )
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(MiB + 1, 2 * MiB).map((n) => JSON.stringify({ type: "text_delta", delta: "x".repeat(n) }))
  },
  { weight: 1, arbitrary: fc.constant("x".repeat(2 * MiB)) },
  { weight: 1, arbitrary: fc.constant(JSON.stringify({ type: "text_delta", delta: "y".repeat(MiB - 100) })) },
  { weight: 4, arbitrary: wrongEvent.map((e) => JSON.stringify(e)) },
  { weight: 3, arbitrary: fc.array(fc.oneof(wrongEvent, junkValue), { maxLength: 8 }).map((a) => JSON.stringify(a)) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) }
)

const body = rawBody.map((b) => (b === undefined ? undefined : new Body(b)))

const hostileRequest = fc.record({ method, path, headers, body }).map((r) =>
  // s1 keeps its known artifacts: a DELETE of it goes to s2 instead.
  r.method === "DELETE" && /^\/sessions\/s1(\/|\?|$)/.test(r.path) ? { ...r, path: r.path.replace("/sessions/s1", "/sessions/s2") } : r
)

// ---------------------------------------------------------------------------

const seed = async (server: TestServer) => {
  expect((await server.request("POST", "/sessions/s1", { project: "p" })).status).toBe(201)
  const events = [
    { type: "turn_start" },
    { type: "text_delta", delta: "hello" },
    { type: "tool_call_start", toolCallId: "t1", name: "read", input: "{}" },
    { type: "permission_request", requestId: "r1", toolCallId: "t1", title: "may I?" },
    { type: "plan", entries: [{ content: "a", status: "pending" }] },
    { type: "usage", inputTokens: 1, outputTokens: 2 },
    { type: "text_delta", delta: "part", partId: "p0" }
  ]
  expect((await server.request("POST", "/sessions/s1/events", events)).status).toBe(202)
}

const unpolluted = () => {
  const probe = {} as Record<string, unknown>
  expect(probe.polluted).toBeUndefined()
  expect(probe.x).toBeUndefined()
  expect(Object.prototype).not.toHaveProperty("polluted")
  expect(Object.prototype).not.toHaveProperty("x")
  expect(Object.keys(Object.prototype)).toEqual([])
}

describe("hostile requests", () => {
  let server: TestServer
  beforeAll(async () => {
    // A short keep-alive bounds how long a dropped stream with an unread body stays open (see the explicit case).
    server = await start({ bootstrapTimeout: 600_000, keepAliveInterval: 1_000 })
    await seed(server)
  })
  afterAll(() => server?.close())

  it("never 5xx, never a reset, every 4xx a JSON error, and a rejected request changes nothing", async () => {
    let rejected = 0
    let accepted = 0
    await fc.assert(
      fc.asyncProperty(hostileRequest, async (r) => {
        const before = await snapshot(server)
        const size = r.body === undefined ? 0 : Buffer.byteLength(r.body.bytes)
        const outcome = await send(server.port, r.method, r.path, r.headers, r.body?.bytes)
        const what = `${r.method} ${r.path.slice(0, 200)} (${size} bytes): ${outcome.status} ${outcome.error?.message ?? ""}`
        if (outcome.error !== undefined) {
          // Only a body over the limit may be cut off (the server stops reading it); nothing else is reset.
          expect(size, what).toBeGreaterThan(MiB)
        }
        if (outcome.status !== undefined) expect(outcome.status, what).toBeLessThan(500)
        const status = outcome.status
        if (status !== undefined && status >= 400 && status < 500 && r.method !== "HEAD" && outcome.error === undefined) {
          expect(String(outcome.headers?.["content-type"]), what).toMatch(/^application\/json/)
          const parsed = JSON.parse(outcome.body!.toString("utf8"))
          expect(typeof parsed.error?.code, what).toBe("string")
          expect(parsed.error.code.length, what).toBeGreaterThan(0)
          expect(typeof parsed.error.message, what).toBe("string")
          expect(parsed.error.message.length, what).toBeGreaterThan(0)
        }
        unpolluted()
        if (status === undefined || status >= 400) {
          // Refused (or cut off for an oversized body): nothing of it may be applied.
          rejected++
          expect(await snapshot(server), what).toEqual(before)
        } else if (status !== undefined) {
          accepted++
          // A sandbox stream that was opened and dropped leaves its session disconnected; wait for it.
          const m = /^\/sessions\/([^/?]+)\/commands(\?|$)/.exec(r.path)
          if (outcome.sse && m !== null) {
            const sid = decodeURIComponent(m[1]!)
            await eventually(async () => (await server.getSession(sid))?.status !== "live", 10_000, `${sid} to disconnect`)
          }
        }
      }),
      { numRuns: 1_500, interruptAfterTimeLimit: 35_000 }
    )
    // Both kinds were exercised.
    expect(rejected).toBeGreaterThan(100)
    expect(accepted).toBeGreaterThan(5)
    unpolluted()

    // The server still answers normally.
    expect((await server.request("GET", "/healthz")).body).toEqual({ ok: true })
    expect((await server.request("POST", "/sessions/after")).status).toBe(201)
    expect((await server.request("POST", "/sessions/after/events", { type: "text_delta", delta: "still fine" })).status).toBe(202)
    const artifacts = await server.request("GET", "/sessions/after/artifacts")
    expect(artifacts.body.map((a: any) => a.text)).toEqual(["still fine"])
    const s1 = await server.request("GET", "/sessions/s1/artifacts")
    expect(s1.status).toBe(200)
    expect(s1.body[0].seq).toBe(1)
  }, 120_000)
})

describe("explicit hostile cases", () => {
  let server: TestServer
  beforeAll(async () => {
    server = await start({ bootstrapTimeout: 600_000 })
    await seed(server)
  })
  afterAll(() => server?.close())

  const expect400 = (o: Outcome, what: string) => {
    expect(o.error, what).toBeUndefined()
    expect(o.status, what).toBe(400)
    const parsed = JSON.parse(o.body!.toString("utf8"))
    expect(parsed.error.code, what).toBe("bad_request")
    expect(parsed.error.message, what).toMatch(/id/)
  }

  it("ids outside the id rule are 400 on every route that takes an id", async () => {
    const invalid = [
      "-a",
      ".a",
      "_a",
      ":a",
      "a%20b",
      "a%2Fb",
      "a%0Ab",
      "%00",
      "%C3%A9",
      "%F0%9F%98%80",
      "a%2Cb",
      "a%40b",
      "a~b",
      "a!b",
      "a*b",
      "x".repeat(129),
      "x".repeat(1_000)
    ]
    const routes: Array<[string, string, string | undefined]> = [
      ["GET", "", undefined],
      ["POST", "", "{}"],
      ["DELETE", "", undefined],
      ["POST", "/commands", JSON.stringify({ type: "abort" })],
      ["GET", "/commands", undefined],
      ["POST", "/events", JSON.stringify({ type: "heartbeat" })],
      ["GET", "/artifacts", undefined],
      ["GET", "/stream", undefined]
    ]
    const before = await snapshot(server)
    for (const bad of invalid) {
      for (const [m, s, b] of routes) {
        const what = `${m} /sessions/${bad.slice(0, 40)}${s}`
        expect400(await send(server.port, m, `/sessions/${bad}${s}`, { "content-type": "application/json" }, b), what)
      }
    }
    // "stream" is reserved: every route but the session list stream refuses it.
    for (const [m, s, b] of routes) {
      if (m === "GET" && s === "") continue
      expect400(await send(server.port, m, `/sessions/stream${s}`, { "content-type": "application/json" }, b), `${m} /sessions/stream${s}`)
    }
    expect(await snapshot(server)).toEqual(before)
    // The longest valid id is fine.
    const longest = "a".repeat(128)
    expect((await server.request("POST", `/sessions/${longest}`)).status).toBe(201)
    expect((await server.request("DELETE", `/sessions/${longest}`)).status).toBe(204)
  })

  it("a very long id is 400 too, not a 404 from the router", async () => {
    for (const n of [1_025, 2_000, 8_000]) {
      for (const [m, s] of [["GET", ""], ["POST", ""], ["DELETE", ""], ["POST", "/events"], ["GET", "/artifacts"], ["GET", "/stream"]] as const) {
        const what = `${m} /sessions/<${n} chars>${s}`
        expect400(await send(server.port, m, `/sessions/${"a".repeat(n)}${s}`, { "content-type": "application/json" }, m === "POST" ? "{}" : undefined), what)
      }
    }
  })

  it("bad percent-encoding in an id is a 4xx JSON error, not a crash", async () => {
    for (const bad of ["%ZZ", "%E0%A4%A", "%FF%FE", "%", "a%2"]) {
      for (const [m, s] of [["GET", ""], ["POST", ""], ["POST", "/events"], ["GET", "/stream"], ["GET", "/commands"]] as const) {
        const o = await send(server.port, m, `/sessions/${bad}${s}`, { "content-type": "application/json" }, m === "POST" ? "{}" : undefined)
        const what = `${m} /sessions/${bad}${s}`
        expect(o.error, what).toBeUndefined()
        expect(o.status, what).toBeGreaterThanOrEqual(400)
        expect(o.status, what).toBeLessThan(500)
        expect(JSON.parse(o.body!.toString("utf8")).error.code, what).toMatch(/^(bad_request|not_found)$/)
      }
    }
  })

  it("a deeply nested value where a string is expected is a 400, on every route with a body", async () => {
    const before = await snapshot(server)
    for (const depth of [100, 3_000, 10_000]) {
      const deep = "[".repeat(depth) + "]".repeat(depth)
      for (const [p, b] of [
        ["/sessions/new-deep", `{"project":${deep}}`],
        ["/sessions/s1/events", `{"type":"text_delta","delta":${deep}}`],
        ["/sessions/s1/events", `[{"type":"heartbeat"},{"type":"summary","text":${deep}}]`],
        ["/sessions/s1/commands", `{"type":"prompt","text":${deep}}`],
        ["/sessions/s1/events", deep]
      ] as const) {
        const o = await send(server.port, "POST", p, { "content-type": "application/json" }, b)
        const what = `POST ${p} ${b.slice(0, 40)}... (depth ${depth})`
        expect(o.error, what).toBeUndefined()
        expect(o.status, what).toBe(400)
        expect(JSON.parse(o.body!.toString()).error.code, what).toBe("bad_request")
      }
    }
    expect(await snapshot(server)).toEqual(before)
  })

  it("deeply nested JSON in an opaque field is either refused or stored and served back intact", async () => {
    const before = await snapshot(server)
    const cases = [
      `{"type":"custom","name":"deep","data":${deepArray}}`,
      `{"type":"custom","name":"deep","data":${deepObject}}`,
      `{"type":"permission_request","requestId":"deep","title":"t","options":[${deepArray}]}`
    ]
    for (const c of cases) {
      const o = await send(server.port, "POST", "/sessions/s1/events", { "content-type": "application/json" }, c)
      expect(o.error).toBeUndefined()
      expect([202, 400]).toContain(o.status)
      if (o.status === 400) {
        expect(await snapshot(server)).toEqual(before)
        continue
      }
      // Accepted: it must be readable back, over GET and over the stream.
      const artifacts = await server.request("GET", "/sessions/s1/artifacts")
      expect(artifacts.status).toBe(200)
      const last = artifacts.body.at(-1)
      expect(JSON.stringify(last.data ?? last.options)).toBe(JSON.stringify(JSON.parse(c).data ?? JSON.parse(c).options))
      const stream = await send(server.port, "GET", "/sessions/s1/stream", {})
      expect(stream.status).toBe(200)
    }
  })

  it("an oversized body is 413 (declared or streamed) and the connection is usable for the answer", async () => {
    const big = JSON.stringify({ type: "text_delta", delta: "x".repeat(2 * MiB) })
    const before = await snapshot(server)
    const declared = await send(server.port, "POST", "/sessions/s1/events", { "content-type": "application/json" }, big)
    expect(declared.status).toBe(413)
    expect(JSON.parse(declared.body!.toString()).error.code).toBe("payload_too_large")
    // Chunked, without a content-length.
    const chunked = await new Promise<Outcome>((resolve) => {
      const req = httpRequest(
        { host: "127.0.0.1", port: server.port, method: "POST", path: "/sessions/s1/events", agent: false, headers: { "transfer-encoding": "chunked" } },
        (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (d: Buffer) => chunks.push(d))
          res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }))
          res.on("error", (error) => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), error }))
        }
      )
      req.on("error", (error) => resolve({ error }))
      for (let i = 0; i < 32; i++) req.write("x".repeat(64 * 1024))
      req.end()
    })
    expect(chunked.status).toBe(413)
    expect(JSON.parse(chunked.body!.toString()).error.code).toBe("payload_too_large")
    expect(await snapshot(server)).toEqual(before)
  })

  it("a body no route reads (a GET's) does not cut off a large answer on a closing connection", async () => {
    // The server finishes its answer while the client still sends; closing then with unread bytes
    // would make the kernel reset the connection and lose the answer's tail (found by the property above).
    expect((await server.request("POST", "/sessions/linger")).status).toBe(201)
    const delta = "z".repeat(MiB - 1_000)
    expect((await server.request("POST", "/sessions/linger/events", [{ type: "turn_start" }, { type: "text_delta", delta }])).status).toBe(202)
    const sent = JSON.stringify({ type: "text_delta", delta: "y".repeat(MiB - 100) })
    for (let i = 0; i < 10; i++) {
      // agent: false sends connection: close.
      const o = await send(server.port, "GET", "/sessions/linger/artifacts", {}, sent)
      expect(o.error?.message).toBeUndefined()
      expect(o.status).toBe(200)
      expect(JSON.parse(o.body!.toString()).find((a: { kind: string }) => a.kind === "text")?.text).toBe(delta)
    }
    expect((await server.request("DELETE", "/sessions/linger")).status).toBe(204)
  })

  it("a stream request that carried a body still notices its client leaving", async () => {
    // The GET stream routes do not read a body; an unread body must not hide the client's close.
    for (const size of [100, 200_000]) {
      const sid = `ub${size}`
      expect((await server.request("POST", `/sessions/${sid}`)).status).toBe(201)
      const o = await send(server.port, "GET", `/sessions/${sid}/commands`, {}, "x".repeat(size))
      expect(o.status).toBe(200)
      expect(o.sse).toBe(true)
      // Default keep-alive is 15 s: a close noticed only by the next keep-alive write is too late.
      await eventually(async () => (await server.getSession(sid))?.status === "disconnected", 5_000, `${sid} (${size}-byte body) to disconnect`)
    }
  })

  it("prototype pollution attempts reach nothing", async () => {
    for (const b of [
      "{\"__proto__\":{\"polluted\":1}}",
      "{\"constructor\":{\"prototype\":{\"x\":1}}}",
      "{\"project\":\"p\",\"__proto__\":{\"polluted\":1}}",
      "{\"type\":\"custom\",\"name\":\"n\",\"data\":{\"__proto__\":{\"polluted\":1},\"constructor\":{\"prototype\":{\"x\":1}}}}",
      "[{\"type\":\"heartbeat\",\"__proto__\":{\"polluted\":1}}]"
    ]) {
      for (const p of ["/sessions/pp", "/sessions/s1/events", "/sessions/s1/commands"]) {
        const o = await send(server.port, "POST", p, { "content-type": "application/json" }, b)
        expect(o.error).toBeUndefined()
        expect(o.status).toBeLessThan(500)
        unpolluted()
      }
      await server.request("DELETE", "/sessions/pp")
    }
    // Ids that name Object.prototype members are just ids.
    expect((await server.request("GET", "/sessions/__proto__")).status).toBe(400) // ids start with a letter or digit
    for (const name of ["constructor", "hasOwnProperty", "toString", "valueOf"]) {
      expect((await server.request("GET", `/sessions/${name}`)).status).toBe(404)
      expect((await server.request("POST", `/sessions/${name}/events`, { type: "heartbeat" })).status).toBe(404)
    }
    const created = await server.request("POST", "/sessions/constructor")
    expect(created.status).toBe(201)
    expect((await server.request("GET", "/sessions/constructor")).body.id).toBe("constructor")
    expect((await server.request("DELETE", "/sessions/constructor")).status).toBe(204)
    unpolluted()
  })
})
