/**
 * The floor: what plain `node:http` costs for the same traffic, so every
 * Rein figure can be read as a ratio. It runs in its own process (spawned by
 * the bench) and prints `floor listening on http://127.0.0.1:PORT`.
 *
 * It does no work of its own beyond moving the same bytes:
 * - POST /sessions/:id/events: reads the body, keeps a copy (for replay), and
 *   writes it wrapped as one `artifact_created` frame to every subscriber of
 *   that session, then answers 202.
 * - GET /sessions/:id/stream: replays kept frames (from `Last-Event-ID`, an
 *   index into them), `snapshot_complete`, then live frames.
 * - POST /sessions/:id: keeps a session record, answers 201 with it.
 * - GET /sessions, GET /sessions/stream: those records as JSON / snapshots.
 * - Anything else: 202 (POST) or 204.
 */
import * as http from "node:http"

interface Topic {
  readonly bodies: Array<Buffer>
  readonly subscribers: Set<http.ServerResponse>
}

const topics = new Map<string, Topic>()
const records = new Map<string, string>()

const topic = (id: string): Topic => {
  let t = topics.get(id)
  if (t === undefined) {
    t = { bodies: [], subscribers: new Set() }
    topics.set(id, t)
  }
  return t
}

const framePrefix = (id: number) => Buffer.from(`id: ${id}\nevent: artifact_created\ndata: {"artifact":`)
const frameSuffix = Buffer.from("}\n\n")
const frame = (id: number, body: Buffer) => Buffer.concat([framePrefix(id), body, frameSuffix])
const complete = "event: snapshot_complete\ndata: {}\n\n"
const sseHeaders = { "content-type": "text/event-stream", "cache-control": "no-cache" }

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
        t.bodies.push(body)
        if (t.subscribers.size > 0) {
          const f = frame(t.bodies.length, body)
          for (const s of t.subscribers) s.write(f)
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
    const replay: Array<Buffer> = []
    for (let i = from; i <= t.bodies.length; i++) replay.push(frame(i, t.bodies[i - 1]!))
    replay.push(Buffer.from(complete))
    res.write(Buffer.concat(replay))
    t.subscribers.add(res)
    res.on("close", () => t.subscribers.delete(res))
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
