/**
 * No request is left hanging at any moment of an instance's life, over real
 * sockets to the real CLI process (`node dist/bin.js`): while it starts (the
 * socket listens before the store, cluster listener and routes are built) and
 * while it shuts down, and while its database is silent, every request on every route is answered promptly:
 * served, or 503 with `retry-after` and a JSON error. Every request has a
 * client-side timeout: an unanswered one fails the test instead of waiting.
 *
 * PostgreSQL runs need `DATABASE_URL` (set by test/globalSetup.ts when
 * PostgreSQL is installed); each gets its own schema.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net"
import { join } from "node:path"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Pg from "../src/SessionStore/Pg.js"
import { pgSchema, tempDir } from "./helpers.js"
import { binPath, ensureBuilt } from "./process.js"

const databaseUrl = process.env.DATABASE_URL
const noPg = databaseUrl === undefined || databaseUrl === ""

/** How long any single request may take to be answered. Generous: the machine may be loaded. */
const ANSWER_WITHIN = 10_000

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

beforeAll(() => ensureBuilt(), 180_000)

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createTcpServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

/** One request of every kind the server has: reads, writes, streams, the dashboard, bad input, no route. */
const routes: ReadonlyArray<readonly [string, string, unknown?]> = [
  ["GET", "/healthz"],
  ["GET", "/sessions"],
  ["POST", "/sessions/s1", { project: "p" }],
  ["GET", "/sessions/stream"],
  ["GET", "/sessions/s1"],
  ["GET", "/sessions/s1/stream"],
  ["GET", "/sessions/s1/commands"],
  ["POST", "/sessions/s1/events", { type: "text_delta", delta: "x" }],
  ["GET", "/sessions/s1/artifacts"],
  ["DELETE", "/sessions/s1"],
  ["POST", "/sessions/s2", "{not json"],
  ["GET", "/"],
  ["GET", "/no/such/route"]
]

type Outcome =
  | { readonly kind: "refused" }
  | { readonly kind: "closed" }
  | { readonly kind: "answered"; readonly status: number; readonly headers: Headers; readonly body: string }

/**
 * One request with a client-side timeout. A refused connection (nothing listens yet, or no
 * longer) is an answer too: the client knows at once. Streams are read up to their headers.
 */
const attempt = async (
  base: string,
  [method, path, body]: readonly [string, string, unknown?],
  within = ANSWER_WITHIN
): Promise<Outcome> => {
  const signal = AbortSignal.timeout(within)
  let res: Response
  try {
    res = await fetch(base + path, {
      method,
      signal,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
    })
  } catch (e) {
    const code = (e as { cause?: { code?: string } }).cause?.code
    if (code === "ECONNREFUSED") return { kind: "refused" }
    // The server closed the connection without answering (an idle keep-alive dropped while
    // shutting down, as the request was on its way): the client knows at once, and retries.
    if (code === "ECONNRESET" || code === "UND_ERR_SOCKET") return { kind: "closed" }
    throw new Error(`${method} ${path}: no answer within ${within} ms (${String(e)})`)
  }
  const stream = res.headers.get("content-type")?.startsWith("text/event-stream") ?? false
  if (stream) {
    await res.body?.cancel()
    return { kind: "answered", status: res.status, headers: res.headers, body: "" }
  }
  try {
    return { kind: "answered", status: res.status, headers: res.headers, body: await res.text() }
  } catch (e) {
    throw new Error(`${method} ${path}: status ${res.status} but its body did not come within ${ANSWER_WITHIN} ms (${String(e)})`)
  }
}

/** A 503 as the protocol has it: retry-after and a JSON error with a code. */
const expectUnavailable = (o: Outcome, code: string, what: string) => {
  expect(o.kind, what).toBe("answered")
  if (o.kind !== "answered") return
  expect(o.status, `${what}: ${o.body}`).toBe(503)
  expect(o.headers.get("retry-after"), what).toBe("1")
  expect(o.headers.get("content-type"), what).toMatch(/^application\/json/)
  expect(JSON.parse(o.body).error.code, what).toBe(code)
  expect(JSON.parse(o.body).error.message, what).toEqual(expect.any(String))
}

interface Cli {
  readonly child: ChildProcess
  readonly base: string
  readonly output: () => string
  readonly listening: Promise<void>
  readonly exited: Promise<number | string>
}

/** The CLI on a port chosen here (or given), so requests can be sent before it says it is listening. */
const launch = async (args: ReadonlyArray<string>, port?: number): Promise<Cli> => {
  port ??= await freePort()
  const child = spawn(process.execPath, [binPath, "--port", String(port), ...args], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  const exited = new Promise<number | string>((r) => child.once("exit", (code, signal) => r(code ?? signal ?? -1)))
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL")
      await exited
    }
  })
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not listening after 30 s: ${out}`)), 30_000)
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      if (/listening on http/.test(out)) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()))
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`exited (${code}) before listening: ${out}`))
    })
  })
  listening.catch(() => {})
  return { child, base: `http://127.0.0.1:${port}`, output: () => out, listening, exited }
}

/** Resolves once a TCP connection to the port is accepted (the socket listens), polling. */
const accepting = async (base: string) => {
  const port = Number(new URL(base).port)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1")
      s.once("connect", () => {
        s.destroy()
        resolve(true)
      })
      s.once("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`nothing accepted connections on ${base} within 30 s`)
}

/**
 * Requests on every route, sent continuously from before the process starts until it has said
 * it is listening and answered a few rounds: each is answered (or refused) within the timeout;
 * while starting, the only refusal is a 503 `starting`; afterwards it is a server that serves.
 */
const raceStart = async (args: ReadonlyArray<string>) => {
  const senders: Array<Promise<void>> = []
  const outcomes: Array<{ readonly at: "before" | "after"; readonly route: string; readonly o: Outcome }> = []
  let cli: Cli | undefined
  let stop = false
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  let listened = false
  // Eight clients, each going round the routes as fast as answers come back.
  for (let c = 0; c < 8; c++) {
    senders.push((async () => {
      for (let i = c; !stop; i++) {
        const route = routes[i % routes.length]!
        const at = listened ? "after" : "before"
        const o = await attempt(base, route)
        outcomes.push({ at, route: `${route[0]} ${route[1]}`, o })
        if (o.kind === "refused") await new Promise((r) => setTimeout(r, 2))
      }
    })())
  }
  try {
    // Launched after the clients are already knocking.
    await new Promise((r) => setTimeout(r, 50))
    cli = await launch(args, port)
    await cli.listening
    listened = true
    // A few full rounds after it said it listens.
    const seen = outcomes.length
    while (outcomes.length < seen + 8 * routes.length) await new Promise((r) => setTimeout(r, 20))
  } finally {
    stop = true
    // Every sender ends: an unanswered request rejects after ANSWER_WITHIN and fails the test here.
    await Promise.all(senders)
  }
  for (const { at, route, o } of outcomes) {
    if (o.kind === "refused") {
      // Refused only before it listened: once it said so, the socket accepts.
      expect(at, `${route} refused after listening`).toBe("before")
      continue
    }
    if (o.kind === "closed") throw new Error(`${route}: the connection closed without an answer while starting`)
    if (at === "before" && o.status === 503) expectUnavailable(o, "starting", `${route} while starting`)
    else expect(o.status, `${route} (${at} it said it listens): ${o.body}`).toBeLessThan(500)
  }
  return { cli: cli!, outcomes }
}

/** A TCP proxy that holds every connection (passing nothing) until `release`: a database slow to answer. */
const holdingProxy = async (target: URL) => {
  const held: Array<Socket> = []
  const sockets = new Set<Socket>()
  let released = false
  const pipe = (client: Socket) => {
    const upstream = connect(Number(target.port || 5432), target.hostname)
    sockets.add(upstream)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    client.pipe(upstream).pipe(client)
    client.resume()
  }
  const server: TcpServer = createTcpServer((client) => {
    sockets.add(client)
    if (released) return pipe(client)
    client.pause()
    held.push(client)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const via = new URL(target)
  via.hostname = "127.0.0.1"
  via.port = String((server.address() as { port: number }).port)
  return {
    url: via.toString(),
    /** How many connections wait. */
    held: () => held.length,
    release: () => {
      released = true
      for (const c of held.splice(0)) pipe(c)
    },
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((r) => server.close(() => r()))
    }
  }
}

const schema = async () => {
  const s = await pgSchema(databaseUrl!)
  cleanups.push(s.drop)
  return s.url
}

describe.skipIf(noPg)("starting on PostgreSQL", () => {
  it("while the database has not answered yet, every route gets 503 starting at once; then it serves", async () => {
    const db = await holdingProxy(new URL(await schema()))
    cleanups.push(db.close)
    const cli = await launch(["--pg", db.url])
    // The socket listens while the store's first connection waits at the proxy.
    await accepting(cli.base)
    const early = await Promise.all(routes.flatMap((r) => [attempt(cli.base, r), attempt(cli.base, r)]))
    early.forEach((o, i) => expectUnavailable(o, "starting", `${routes[i >> 1]!.join(" ")} while starting`))
    // Nothing became ready meanwhile: the store was never reached.
    expect(db.held()).toBeGreaterThan(0)
    db.release()
    await cli.listening
    const later = await attempt(cli.base, ["GET", "/healthz"])
    expect(later.kind === "answered" && later.status).toBe(200)
    // A keep-alive connection that got a 503 while starting is served on the same connection now.
    const created = await attempt(cli.base, ["POST", "/sessions/after-start", { project: "p" }])
    expect(created.kind === "answered" && created.status).toBe(201)
  })

  it("many requests racing the start: each answered within the timeout, none left hanging", async () => {
    const { outcomes } = await raceStart(["--pg", await schema()])
    // The race was real: requests went out before it listened, and after.
    expect(outcomes.some((x) => x.at === "before")).toBe(true)
    expect(outcomes.some((x) => x.at === "after" && x.o.kind === "answered" && x.o.status === 200)).toBe(true)
  })
})

describe("starting on SQLite", () => {
  it("many requests racing the start: each answered within the timeout, none left hanging", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const { outcomes } = await raceStart(["--db", join(tmp.dir, "rein.db")])
    expect(outcomes.some((x) => x.at === "before")).toBe(true)
    expect(outcomes.some((x) => x.at === "after" && x.o.kind === "answered" && x.o.status === 200)).toBe(true)
  })
})

/** A raw HTTP/1.1 connection: what it received so far, and when it closed. */
const rawConnection = async (base: string) => {
  const socket = connect(Number(new URL(base).port), "127.0.0.1")
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  let received = ""
  const waiters = new Set<() => void>()
  socket.on("data", (d: Buffer) => {
    received += d.toString()
    waiters.forEach((w) => w())
  })
  const closed = new Promise<void>((r) => socket.once("close", () => r()))
  socket.on("error", () => {})
  cleanups.push(() => socket.destroy())
  return {
    write: (s: string) => socket.write(s),
    received: () => received,
    closed,
    /** Resolves once `check` holds on what was received, failing after ANSWER_WITHIN. */
    waitFor: (check: (s: string) => boolean, what: string) =>
      new Promise<void>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer)
          waiters.delete(test)
        }
        const test = () => {
          if (check(received)) {
            done()
            resolve()
          }
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`${what}: not within ${ANSWER_WITHIN} ms; received: ${received}`))
        }, ANSWER_WITHIN)
        waiters.add(test)
        test()
      })
  }
}

describe("shutting down", () => {
  it("a request in flight when the shutdown starts is served; the next one on its connection gets 503 shutting_down; new connections are refused", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const cli = await launch(["--db", join(tmp.dir, "rein.db")])
    await cli.listening
    const conn = await rawConnection(cli.base)
    const body = JSON.stringify({ project: "p" })
    // "100 Continue" tells the request reached the server (it is in flight) before its body is sent.
    conn.write(
      `POST /sessions/d1 HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nexpect: 100-continue\r\n\r\n`
    )
    await conn.waitFor((s) => s.startsWith("HTTP/1.1 100 Continue"), "100 Continue")
    cli.child.kill("SIGTERM")
    // Shutting down has begun once new connections are refused.
    const deadline = Date.now() + ANSWER_WITHIN
    while ((await attempt(cli.base, ["GET", "/healthz"])).kind !== "refused") {
      expect(Date.now(), "new connections refused after SIGTERM").toBeLessThan(deadline)
      await new Promise((r) => setTimeout(r, 10))
    }
    // The body, and a second request behind it on the same connection.
    conn.write(body + "GET /sessions HTTP/1.1\r\nHost: x\r\n\r\n")
    await conn.waitFor((s) => /HTTP\/1\.1 503[^]*\r\n\r\n[^]*\}\}/.test(s), "the second request's answer")
    const received = conn.received()
    expect(received).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /)
    const answer = received.slice(received.indexOf("HTTP/1.1 503"))
    expect(answer).toMatch(/\r\nretry-after: 1\r\n/i)
    expect(answer).toMatch(/\r\nconnection: close\r\n/i)
    expect(answer).toMatch(/\r\ncontent-type: application\/json\r\n/i)
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error.code).toBe("shutting_down")
    await conn.closed
    expect(await cli.exited).toBe(0)
  })

  it("requests racing the shutdown: each answered or refused within the timeout", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const cli = await launch(["--db", join(tmp.dir, "rein.db")])
    await cli.listening
    let stop = false
    const outcomes: Array<Outcome> = []
    const senders = Array.from({ length: 8 }, (_, c) =>
      (async () => {
        for (let i = c; !stop; i++) {
          const o = await attempt(cli.base, routes[i % routes.length]!)
          outcomes.push(o)
          if (o.kind !== "answered") return
        }
      })())
    // Some answered while up, then the signal.
    while (outcomes.length < 2 * routes.length) await new Promise((r) => setTimeout(r, 10))
    cli.child.kill("SIGTERM")
    const code = await cli.exited
    stop = true
    await Promise.all(senders)
    expect(code).toBe(0)
    for (const o of outcomes) {
      if (o.kind === "answered" && o.status === 503) expectUnavailable(o, "shutting_down", "during shutdown")
      else if (o.kind === "answered") expect(o.status, o.body).toBeLessThan(500)
    }
  })
})

/** A TCP proxy in front of PostgreSQL that can freeze: keep every connection open and pass nothing. */
const freezingProxy = async (target: URL) => {
  const sockets = new Set<Socket>()
  let frozen = false
  const server: TcpServer = createTcpServer((client) => {
    sockets.add(client)
    if (frozen) return
    const upstream = connect(Number(target.port || 5432), target.hostname)
    sockets.add(upstream)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const via = new URL(target)
  via.hostname = "127.0.0.1"
  via.port = String((server.address() as { port: number }).port)
  return {
    url: via.toString(),
    freeze: () => {
      frozen = true
      for (const s of sockets) s.unpipe().pause()
    },
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((r) => server.close(() => r()))
    }
  }
}

describe.skipIf(noPg)("losing the database", () => {
  it("a database that goes silent (connections open, nothing answers): every route is still answered, 503 where it needs the store", async () => {
    const db = await freezingProxy(new URL(await schema()))
    cleanups.push(db.close)
    const cli = await launch(["--pg", db.url, "--lease-ttl", "1000"])
    await cli.listening
    expect(await attempt(cli.base, ["POST", "/sessions/s1", { project: "p" }])).toMatchObject({ status: 201 })
    db.freeze()
    for (const round of [1, 2]) {
      // A statement on a silent connection gives up after the store's deadline, and so does the
      // rollback after it: two deadlines at most, plus room for a loaded machine.
      const outcomes = await Promise.all(routes.map((r) => attempt(cli.base, r, 2 * Pg.deadline + ANSWER_WITHIN)))
      outcomes.forEach((o, i) => {
        const what = `${routes[i]!.join(" ")} with the database frozen, round ${round}`
        expect(o.kind, what).toBe("answered")
        if (o.kind === "answered" && o.status >= 500) expectUnavailable(o, "store_unavailable", what)
      })
    }
  })
})
