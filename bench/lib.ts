/**
 * Bench plumbing: child servers (Rein via the CLI, and the floor), a
 * keep-alive HTTP client (undici), a light SSE client (node:http plus a
 * minimal parser), load loops and statistics.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { StringDecoder } from "node:string_decoder"
import { fileURLToPath } from "node:url"
import { Pool, request } from "undici"

// ---------------------------------------------------------------------------
// Child servers

export interface Child {
  readonly url: string
  readonly pid: number
  /** Directory holding `rein.db` when the bench started Rein itself on SQLite. */
  readonly dbDir: string | undefined
  /** What the process wrote to stderr so far (the first 10 000 characters). */
  readonly stderr: () => string
  /** Stops the process (SIGTERM, then SIGKILL after 5 s). */
  readonly stop: () => Promise<void>
  /** Removes what the child left on disk (its temp dir). */
  readonly cleanup: () => void
}

const binJs = fileURLToPath(new URL("../../dist/bin.js", import.meta.url))
const floorJs = fileURLToPath(new URL("./floor.js", import.meta.url))

const spawnListening = (args: ReadonlyArray<string>, onFail?: () => void): Promise<Omit<Child, "dbDir" | "cleanup">> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let done = false
    const timer = setTimeout(() => fail(new Error(`server did not start within 20 s: ${out}${err}`)), 20_000)
    const fail = (e: Error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      onFail?.()
      reject(e)
    }
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    child.once("error", fail)
    child.once("exit", (code, signal) => fail(new Error(`server exited (${code ?? signal}) before listening: ${out}${err}`)))
    child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      if (err.length < 10_000) err += s.slice(0, 10_000 - err.length)
    })
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      if (done) return
      out += s
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m === null) return
      done = true
      clearTimeout(timer)
      const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM")
          const t = setTimeout(() => child.kill("SIGKILL"), 5_000)
          await exited
          clearTimeout(t)
        }
      }
      resolve({ url: m[1]!, pid: child.pid!, stop, stderr: () => err })
    })
  })

/**
 * `node dist/bin.js --port 0 --db <tmp>/rein.db`: the same code path as the CLI. With `pg`,
 * `--pg <pg>` instead (the database is the caller's: nothing is created or removed).
 */
export const startRein = async (bin = binJs, pg?: string): Promise<Child> => {
  if (pg !== undefined) {
    const child = await spawnListening([bin, "--port", "0", "--pg", pg, "--bootstrap-timeout", "3600000"])
    return { ...child, dbDir: undefined, cleanup: () => {} }
  }
  const dbDir = mkdtempSync(join(tmpdir(), "rein-bench-"))
  const cleanup = () => rmSync(dbDir, { recursive: true, force: true })
  const child = await spawnListening(
    [bin, "--port", "0", "--db", join(dbDir, "rein.db"), "--bootstrap-timeout", "3600000"],
    cleanup
  )
  return { ...child, dbDir, cleanup }
}

/** The floor: no-op `node:http` and SSE servers, in their own process. */
export const startFloor = async (): Promise<Child> => ({
  ...(await spawnListening([floorJs])),
  dbDir: undefined,
  cleanup: () => {}
})

/** Resident set size of a process in KiB (Linux), or undefined. */
export const rssKiB = (pid: number): number | undefined => {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

/** CPU time a process has used so far (user + system), in ms (Linux), or undefined. */
export const cpuMs = (pid: number): number | undefined => {
  try {
    // Fields after the command's closing parenthesis: state is the 3rd field, utime the 14th, stime the 15th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks
  } catch {
    return undefined
  }
}
/** USER_HZ: 100 on every Linux this runs on (the kernel's ABI since 2.6). */
const clockTicks = 100

/** Sum of the sizes of the given files that exist. */
export const fileBytes = (...paths: ReadonlyArray<string>): number => {
  let total = 0
  for (const p of paths) {
    try {
      total += statSync(p).size
    } catch {
      // absent
    }
  }
  return total
}

// ---------------------------------------------------------------------------
// HTTP client

export const pool = (url: string, connections: number, pipelining = 1): Pool =>
  new Pool(url, { connections, pipelining, keepAliveTimeout: 30_000, connect: { timeout: 10_000 } })

const jsonHeaders = { "content-type": "application/json" }

/** Starts a JSON POST. Pipelining POSTs on one connection keeps their order (HTTP/1.1 answers in order). */
const send = (p: Pool, path: string, body: string, pipelined: boolean) =>
  p.request({
    method: "POST",
    path,
    body,
    headers: jsonHeaders,
    ...(pipelined ? { idempotent: true, blocking: false } : {})
  })

/** POST a JSON string; resolves the status once the response is fully read. */
export const post = async (p: Pool, path: string, body: string, pipelined = false): Promise<number> => {
  const res = await send(p, path, body, pipelined)
  await res.body.dump()
  return res.statusCode
}

/** POST expecting a 2xx; throws with the body otherwise. */
export const postOk = async (p: Pool, path: string, body: string, pipelined = false): Promise<void> => {
  const res = await send(p, path, body, pipelined).catch((e: Error) => {
    throw new Error(`POST ${path}: ${e.message}`, { cause: e })
  })
  if (res.statusCode >= 300) throw new Error(`POST ${path}: ${res.statusCode} ${await res.body.text()}`)
  await res.body.dump()
}

/**
 * A `fetch` for `SandboxConnection`'s posts, over undici's `request`: Node 20's fetch costs
 * 400-700 us of client CPU per POST (WHATWG streams, abort signals, a DOMException when the
 * body is cancelled), so one bench process driving hundreds of sandboxes would measure itself.
 * Other requests (the command stream, read as a web stream) go to the global fetch.
 */
export const leanFetch = async (input: string, init?: RequestInit): Promise<Response> => {
  if (init?.method !== "POST" || typeof init.body !== "string") return globalThis.fetch(input, init)
  const res = await request(input, { method: "POST", headers: init.headers as Record<string, string>, body: init.body })
  if (res.statusCode < 300) {
    await res.body.dump()
    return new Response(null, { status: res.statusCode })
  }
  const headers = new Headers()
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v)
  return new Response(await res.body.text(), { status: res.statusCode, headers })
}

export const getText = async (p: Pool, path: string): Promise<{ status: number; text: string }> => {
  const res = await p.request({ method: "GET", path })
  return { status: res.statusCode, text: await res.body.text() }
}

// ---------------------------------------------------------------------------
// SSE client

/**
 * A minimal SSE parser for the framing both servers use (`\n` line ends,
 * one `data:` line per event). Comments and empty blocks are skipped.
 */
export class SseParser {
  private buf = ""
  constructor(private readonly onEvent: (event: string, data: string, id: string | undefined) => void) {}

  push(chunk: string): void {
    const buf = this.buf.length === 0 ? chunk : this.buf + chunk
    let start = 0
    for (;;) {
      const end = buf.indexOf("\n\n", start)
      if (end === -1) break
      this.block(buf, start, end)
      start = end + 2
    }
    this.buf = start === 0 ? buf : buf.slice(start)
  }

  private block(buf: string, start: number, end: number): void {
    let event = "message"
    let data: string | undefined
    let id: string | undefined
    let i = start
    while (i < end) {
      let nl = buf.indexOf("\n", i)
      if (nl === -1 || nl > end) nl = end
      if (buf.charCodeAt(i) !== 58 /* ':' comment */) {
        const colon = buf.indexOf(":", i)
        if (colon !== -1 && colon < nl) {
          const v = buf.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1
          const field = buf.slice(i, colon)
          const value = buf.slice(v, nl)
          if (field === "data") data = data === undefined ? value : `${data}\n${value}`
          else if (field === "event") event = value
          else if (field === "id") id = value
        }
      }
      i = nl + 1
    }
    if (data !== undefined) this.onEvent(event, data, id)
  }
}

export interface SseConnection {
  /** Resolves with the response status once headers arrived. */
  readonly opened: Promise<number>
  /** Resolves when the stream ends (server end, error or close()). */
  readonly ended: Promise<void>
  readonly close: () => void
  /** Body bytes received (after de-chunking). */
  readonly bytes: () => number
}

/**
 * An SSE stream over a raw socket: one GET, a response head parsed once, then
 * the body de-chunked by hand and fed to the parser. Much lighter per event
 * than node:http's client, so 500 subscribers x 200 events/s or 5 000 idle
 * streams do not make the client the bottleneck.
 */
export const sse = (
  url: string,
  path: string,
  onEvent: (event: string, data: string, id: string | undefined) => void,
  headers: Record<string, string> = {}
): SseConnection => {
  const u = new URL(url)
  const parser = new SseParser(onEvent)
  const decoder = new StringDecoder("utf8")
  let bytes = 0
  let endResolve!: () => void
  const ended = new Promise<void>((r) => (endResolve = r))
  let openResolve!: (status: number) => void
  let openReject!: (e: Error) => void
  const opened = new Promise<number>((resolve, reject) => {
    openResolve = resolve
    openReject = reject
  })
  opened.catch(() => {})

  const socket = net.connect({ host: u.hostname, port: Number(u.port), noDelay: true })
  let head = ""
  let headDone = false
  let chunkedBody = false
  // De-chunking state: bytes left in the current chunk, or -1 while reading a size line.
  let left = -1
  let sizeLine = ""
  let skipCrlf = 0

  const body = (b: Buffer) => {
    if (b.length === 0) return
    bytes += b.length
    parser.push(decoder.write(b))
  }

  const dechunk = (b: Buffer) => {
    let i = 0
    while (i < b.length) {
      if (skipCrlf > 0) {
        const n = Math.min(skipCrlf, b.length - i)
        skipCrlf -= n
        i += n
      } else if (left === -1) {
        const nl = b.indexOf(10, i)
        if (nl === -1) {
          sizeLine += b.toString("latin1", i)
          return
        }
        sizeLine += b.toString("latin1", i, nl)
        i = nl + 1
        left = parseInt(sizeLine.trim(), 16)
        sizeLine = ""
        if (left === 0) {
          socket.end()
          return
        }
      } else {
        const n = Math.min(left, b.length - i)
        body(b.subarray(i, i + n))
        i += n
        left -= n
        if (left === 0) {
          left = -1
          skipCrlf = 2
        }
      }
    }
  }

  socket.on("data", (b: Buffer) => {
    if (headDone) return chunkedBody ? dechunk(b) : body(b)
    head += b.toString("latin1")
    const end = head.indexOf("\r\n\r\n")
    if (end === -1) return
    headDone = true
    const status = Number(head.slice(9, 12))
    chunkedBody = /\r\ntransfer-encoding:\s*chunked/i.test(head.slice(0, end))
    openResolve(status)
    const rest = Buffer.from(head.slice(end + 4), "latin1")
    head = ""
    if (chunkedBody) dechunk(rest)
    else body(rest)
  })
  socket.once("connect", () => {
    let req = `GET ${path} HTTP/1.1\r\nhost: ${u.host}\r\naccept: text/event-stream\r\n`
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
    socket.write(`${req}\r\n`)
  })
  socket.once("error", (e) => openReject(e))
  socket.once("close", () => {
    openReject(new Error("closed before the response"))
    endResolve()
  })
  return { opened, ended, close: () => socket.destroy(), bytes: () => bytes }
}

// ---------------------------------------------------------------------------
// Load, time, statistics

export const now = (): number => performance.now()
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Client CPU over a span, as a share of one core (percent). */
export const cpuMeter = () => {
  const c0 = process.cpuUsage()
  const t0 = now()
  return () => {
    const c = process.cpuUsage(c0)
    return (100 * (c.user + c.system) / 1000) / Math.max(1, now() - t0)
  }
}

export interface LoopResult {
  readonly count: number
  readonly ms: number
  readonly latencies: Float64Array
}

/**
 * `workers` closed loops, each running `op(worker, i)` back to back, until
 * `maxCount` operations in total or `maxMs` have passed.
 */
export const closedLoop = async (
  workers: number,
  maxCount: number,
  maxMs: number,
  op: (worker: number, i: number) => Promise<unknown>
): Promise<LoopResult> => {
  const latencies = new Float64Array(maxCount)
  let issued = 0
  let count = 0
  const t0 = now()
  const deadline = t0 + maxMs
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    while (issued < maxCount && now() < deadline) {
      const i = issued++
      const s = now()
      await op(w, i)
      latencies[count++] = now() - s
    }
  }))
  return { count, ms: now() - t0, latencies: latencies.subarray(0, count) }
}

/** Runs `f` over `items` with at most `limit` in flight. */
export const mapLimit = async <A, B>(items: ReadonlyArray<A>, limit: number, f: (a: A, i: number) => Promise<B>) => {
  const out: Array<B> = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await f(items[i]!, i)
    }
  }))
  return out
}

export const percentile = (xs: ArrayLike<number>, p: number): number => {
  if (xs.length === 0) return NaN
  const sorted = Float64Array.from(xs).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export const median = (xs: ReadonlyArray<number>): number => percentile(xs, 50)

/** Rejects when `p` takes longer than `ms`. */
export const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> => {
  let t: NodeJS.Timeout
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms)))
  ]).finally(() => clearTimeout(t))
}

/** Distinct, valid session ids for one run (so a --target server can be reused). */
export const runTag = (): string => `b${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
