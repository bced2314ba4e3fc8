/**
 * The floor: what plain `node:http` costs for the same traffic, so every
 * Rein figure can be read as a ratio. It runs in its own process (spawned by
 * the bench) and prints `floor listening on http://127.0.0.1:PORT`.
 *
 * It does no work of its own beyond moving the same bytes:
 * - POST /sessions/:id/events: reads the body, keeps it (for replay), and when
 *   the session has subscribers writes each event in it, wrapped as an
 *   `artifact_created` frame, to every one of them; then answers 202.
 * - GET /sessions/:id/stream: replays kept events as `artifact_snapshot`
 *   frames numbered from 1 (from `Last-Event-ID`), `snapshot_complete`, then
 *   live frames.
 * - GET /sessions/:id/commands: a sandbox's command stream: `snapshot_complete`,
 *   then held open (the floor never sends a command).
 * - POST /sessions/:id: keeps a session record, answers 201 with it.
 * - GET /sessions, GET /sessions/stream: those records as JSON / snapshots.
 * - Anything else: 202 (POST) or 204.
 */
import * as http from "node:http"

interface Topic {
  /** Bodies as received, not yet split into events (a batch body is parsed only when a stream needs it). */
  readonly pending: Array<Buffer>
  /** One replay frame per event, numbered from 1 like Rein's seqs. */
  readonly frames: Array<Buffer>
  readonly subscribers: Set<http.ServerResponse>
}

const topics = new Map<string, Topic>()
const records = new Map<string, string>()

const topic = (id: string): Topic => {
  let t = topics.get(id)
  if (t === undefined) {
    t = { pending: [], frames: [], subscribers: new Set() }
    topics.set(id, t)
  }
  return t
}

const frame = (event: string, id: number, json: string | Buffer) =>
  Buffer.concat([Buffer.from(`id: ${id}\nevent: ${event}\ndata: {"artifact":`), Buffer.from(json), frameSuffix])
const frameSuffix = Buffer.from("}\n\n")
const complete = "event: snapshot_complete\ndata: {}\n\n"
/** One chunk of `Transfer-Encoding: chunked`, encoded once and written as is to every subscriber. */
const chunked = (data: Buffer) => Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from("\r\n")])
const sseHeaders = { "content-type": "text/event-stream", "cache-control": "no-cache" }

/** Splits pending bodies into per-event replay frames (once). */
const materialize = (t: Topic, live?: (id: number, json: string | Buffer) => void) => {
  const add = (json: string | Buffer) => {
    t.frames.push(frame("artifact_snapshot", t.frames.length + 1, json))
    live?.(t.frames.length, json)
  }
  for (const body of t.pending) {
    if (body[0] === 0x5b /* [ */) for (const e of JSON.parse(body.toString()) as Array<unknown>) add(JSON.stringify(e))
    else add(body)
  }
  t.pending.length = 0
}

const readBody = (req: http.IncomingMessage, then: (body: Buffer) => void) => {
  const chunks: Array<Buffer> = []
  req.on("data", (c: Buffer) => chunks.push(c))
  req.on("end", () => then(Buffer.concat(chunks)))
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0]!
  const parts = path.split("/") // ["", "sessions", id?, sub?]
  const id = parts[1] === "sessions" ? parts[2] : undefined
  const sub = parts[3]

  if (req.method === "POST") {
    readBody(req, (body) => {
      if (id !== undefined && sub === "events") {
        const t = topic(id)
        t.pending.push(body)
        if (t.subscribers.size > 0) {
          // Live: the same bytes to every subscriber, written straight to the sockets (the least node can do).
          materialize(t, (seq, json) => {
            const f = chunked(frame("artifact_created", seq, json))
            for (const s of t.subscribers) s.socket!.write(f)
          })
        }
        res.writeHead(202).end()
      } else if (id !== undefined && sub === undefined) {
        if (records.has(id)) {
          res.writeHead(409, { "content-type": "application/json" }).end(`{"error":{"code":"conflict"}}`)
          return
        }
        let project: unknown = null
        try {
          project = body.length > 0 ? (JSON.parse(body.toString()) as { project?: unknown }).project ?? null : null
        } catch {
          // ignore
        }
        const t = Date.now()
        const record = JSON.stringify({ id, status: "bootstrapping", summary: null, project, createdAt: t, lastHeartbeat: t })
        records.set(id, record)
        res.writeHead(201, { "content-type": "application/json" }).end(record)
      } else {
        res.writeHead(202).end()
      }
    })
    return
  }

  if (req.method === "GET" && path === "/sessions") {
    res.writeHead(200, { "content-type": "application/json" }).end(`[${Array.from(records.values()).join(",")}]`)
  } else if (req.method === "GET" && path === "/sessions/stream") {
    res.writeHead(200, sseHeaders)
    let out = ""
    for (const r of records.values()) out += `event: session_snapshot\ndata: {"session":${r}}\n\n`
    res.write(out + complete)
  } else if (req.method === "GET" && id !== undefined && sub === "stream") {
    const t = topic(id)
    res.writeHead(200, sseHeaders)
    const raw = req.headers["last-event-id"]
    const from = typeof raw === "string" && /^\d+$/.test(raw) ? Math.max(1, Number(raw)) : 1
    materialize(t)
    res.write(Buffer.concat([...t.frames.slice(from - 1), Buffer.from(complete)]))
    t.subscribers.add(res)
    res.on("close", () => t.subscribers.delete(res))
  } else if (req.method === "GET" && id !== undefined && sub === "commands") {
    res.writeHead(200, sseHeaders)
    res.write(complete)
  } else {
    req.resume()
    res.writeHead(req.method === "GET" ? 200 : 204).end()
  }
})

server.keepAliveTimeout = 30_000
server.listen(0, "127.0.0.1", () => {
  const a = server.address()
  if (a === null || typeof a === "string") throw new Error("expected a TCP address")
  console.log(`floor listening on http://127.0.0.1:${a.port}`)
})
process.on("SIGTERM", () => process.exit(0))
