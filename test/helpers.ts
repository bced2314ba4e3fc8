/**
 * Test helpers: a real server on a real socket, plain fetch, and an SSE
 * client built on eventsource-parser that records every event.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser"
import { connect, type Socket } from "node:net"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { createServer, type ReinServer } from "../src/createServer.js"
import type { ServerOptions } from "../src/Server.js"

export interface TestServer extends ReinServer {
  readonly url: string
  readonly request: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<TestResponse>
}

export interface TestResponse {
  readonly status: number
  readonly headers: Headers
  /** Parsed JSON body, or undefined when empty. */
  readonly body: any
  readonly text: string
}

export const start = async (options: ServerOptions = {}): Promise<TestServer> => {
  const server = await createServer(options)
  const url = `http://127.0.0.1:${server.port}`
  return Object.assign(server, {
    url,
    request: (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      request(url, method, path, body, headers)
  })
}

export const request = async (
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {}
): Promise<TestResponse> => {
  const res = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })
  const text = await res.text()
  let parsed: unknown
  try {
    parsed = text === "" ? undefined : JSON.parse(text)
  } catch {
    parsed = undefined
  }
  return { status: res.status, headers: res.headers, body: parsed, text }
}

export interface SseEvent {
  readonly event: string
  readonly id: string | undefined
  readonly data: any
}

export interface SseClient {
  readonly status: number
  readonly headers: Headers
  /** Every event received so far, in order. */
  readonly events: Array<SseEvent>
  /** Comments (e.g. keep-alive) received so far. */
  readonly comments: Array<string>
  /** Resolves with the first event (from index `from`) matching `predicate`; rejects after `timeoutMs`. */
  readonly waitFor: (predicate: (e: SseEvent) => boolean, timeoutMs?: number, from?: number) => Promise<SseEvent>
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>
  readonly isEnded: () => boolean
  readonly close: () => void
}

/** Opens an SSE stream; resolves once the response headers arrived. */
export const sse = async (url: string, headers: Record<string, string> = {}): Promise<SseClient> => {
  const controller = new AbortController()
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal })
  const events: Array<SseEvent> = []
  const comments: Array<string> = []
  const waiters = new Set<() => void>()
  const notify = () => waiters.forEach((w) => w())
  const parser = createParser({
    onEvent: (m: EventSourceMessage) => {
      events.push({ event: m.event ?? "message", id: m.id, data: m.data === "" ? undefined : JSON.parse(m.data) })
      notify()
    },
    onComment: (c) => {
      comments.push(c)
      notify()
    }
  })
  let done = false
  const ended = (async () => {
    if (res.body === null) return
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body as any as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }))
    } catch {
      // aborted by close(), or the connection was cut
    } finally {
      done = true
      notify()
    }
  })()
  const waitFor = (predicate: (e: SseEvent) => boolean, timeoutMs = 10_000, from = 0) =>
    new Promise<SseEvent>((resolve, reject) => {
      const check = () => {
        for (let i = from; i < events.length; i++) {
          if (predicate(events[i]!)) {
            cleanup()
            resolve(events[i]!)
            return true
          }
        }
        if (done) {
          cleanup()
          reject(new Error(`stream ended before the awaited event; got ${events.map((e) => e.event).join(",")}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for an SSE event; got ${events.map((e) => e.event).join(",")}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(listener)
      }
      const listener = () => void check()
      if (!check()) waiters.add(listener)
    })
  return {
    status: res.status,
    headers: res.headers,
    events,
    comments,
    waitFor,
    ended,
    isEnded: () => done,
    close: () => controller.abort()
  }
}

/** Waits until `check` returns true, polling; for state reached through the server, not timing. */
export const eventually = async (check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition") => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A temp dir removed by the returned cleanup. */
export const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "rein-test-"))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Client-side fold of an artifact stream: snapshots replace, created adds,
 * updated appends or sets. What any UI does; used to check convergence.
 */
export const foldArtifacts = (events: ReadonlyArray<SseEvent>, into = new Map<number, any>()) => {
  for (const e of events) {
    if (e.event === "artifact_snapshot" || e.event === "artifact_created") {
      into.set(e.data.artifact.seq, e.data.artifact)
    } else if (e.event === "artifact_updated") {
      const a = into.get(e.data.seq)
      if (a === undefined) throw new Error(`update for unknown artifact ${e.data.seq}`)
      const value = "append" in e.data ? (a[e.data.field] ?? "") + e.data.append : e.data.set
      into.set(e.data.seq, { ...a, [e.data.field]: value, updatedAt: e.data.updatedAt })
    }
  }
  return into
}

/** Artifacts as an array ordered by seq, for deep equality with GET /artifacts. */
export const sorted = (m: Map<number, any>) => [...m.values()].sort((a, b) => a.seq - b.seq)

/** A raw client that sends one GET and then never reads a byte (a stalled subscriber). */
export const stalledClient = (port: number, path: string) =>
  new Promise<Socket>((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`)
      socket.pause()
      resolve(socket)
    })
  })

/**
 * A fresh schema in the PostgreSQL database at `url`, and a URL whose connections use it as their
 * search path: each test gets its own tables (and, being named after it, its own NOTIFY channel).
 */
export const pgSchema = async (url: string) => {
  const schema = `t_${randomUUID().replaceAll("-", "")}`
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query(statement)
    } finally {
      await client.end()
    }
  }
  await admin(`CREATE SCHEMA ${schema}`)
  const u = new URL(url)
  u.searchParams.set("options", `-c search_path=${schema}`)
  return { url: u.toString(), drop: () => admin(`DROP SCHEMA ${schema} CASCADE`) }
}

/**
 * For a test that expects the server to warn: its WARN/ERROR log lines (Effect's logger writes
 * them with console.log) are kept here instead of printed, so a green run's log stays quiet and
 * the test can assert what was said. Other output passes through. Call `restore` when done.
 */
export const captureWarnings = () => {
  const original = console.log
  const lines: Array<string> = []
  console.log = (...args: Array<unknown>) => {
    const text = args.map(String).join(" ")
    if (/level=(WARN|ERROR)/.test(text)) lines.push(text)
    else original(...args)
  }
  return { lines, restore: () => void (console.log = original) }
}

/**
 * Polls until `check` passes on what `read` gives (an assertion that throws until it holds);
 * after `timeoutMs` the last failure is the test's error. Answers the value that passed.
 */
export const until = async <T>(read: () => Promise<T>, check: (value: T) => void, timeoutMs = 20_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    try {
      check(value)
      return value
    } catch (e) {
      if (Date.now() > deadline) throw e
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
