/**
 * Paged transcripts (issue 23): the time to read the last page of a 20 000-artifact session
 * against the whole transcript, and to open its stream with `?tail=50` against a full snapshot, on
 * SQLite (a temp file). After a build: `tsc -p bench/tsconfig.json && node dist-bench/bench/paging.js`.
 * Each read follows a commit, so the store's kept history (its resume cache) never serves it.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createServer } from "../src/createServer.js"

const artifacts = Number(process.argv[2] ?? 20_000)
const dir = mkdtempSync(join(tmpdir(), "rein-paging-"))
const server = await createServer({ dbPath: join(dir, "rein.db"), bootstrapTimeout: 600_000 })
const url = `http://127.0.0.1:${server.port}`
await fetch(`${url}/sessions/big`, { method: "POST" })
const sandbox = new AbortController()
await fetch(`${url}/sessions/big/commands`, { headers: { accept: "text/event-stream" }, signal: sandbox.signal })

// Half tool calls with some output, half text (two deltas) followed by a file change.
const events: Array<unknown> = []
for (let i = 0, made = 0; made < artifacts; i++) {
  if (i % 2 === 0) {
    events.push({ type: "tool_call_start", toolCallId: `t${i}`, name: "bash", input: `{"cmd":"ls ${i}"}` })
    events.push({ type: "tool_call_end", toolCallId: `t${i}`, output: `file ${i}\n`.repeat(8) })
    made += 1
  } else {
    events.push({ type: "text_delta", delta: `Paragraph ${i}: ` + "some agent text that explains things. ".repeat(6) })
    events.push({ type: "text_delta", delta: "and a second delta." })
    events.push({ type: "file_change", path: `src/f${i}.ts`, action: "modify" })
    made += 2
  }
}
for (let i = 0; i < events.length; i += 1000) {
  const res = await fetch(`${url}/sessions/big/events`, { method: "POST", body: JSON.stringify(events.slice(i, i + 1000)) })
  if (res.status !== 202) throw new Error(await res.text())
}
const commit = () =>
  fetch(`${url}/sessions/big/events`, { method: "POST", body: JSON.stringify({ type: "custom", name: "tick", data: null }) })
const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const get = async (path: string) => {
  await commit()
  const t = performance.now()
  const body = await (await fetch(url + path)).text()
  return { ms: performance.now() - t, bytes: body.length }
}
const snapshot = async (query: string) => {
  await commit()
  const t = performance.now()
  const stop = new AbortController()
  const res = await fetch(`${url}/sessions/big/stream${query}`, { headers: { accept: "text/event-stream" }, signal: stop.signal })
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  while (!text.includes("event: snapshot_complete")) {
    const { done, value } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
  }
  const ms = performance.now() - t
  stop.abort()
  return { ms, bytes: text.length }
}

const total = ((await (await fetch(`${url}/sessions/big/artifacts?limit=1`)).json()) as Array<{ seq: number }>)[0]!.seq
console.log(`a session of ${total} artifacts, SQLite; median of 9 reads (5 for streams), each after a commit`)
for (
  const [name, read] of [
    ["GET /artifacts?limit=200 (the last page)", () => get("/sessions/big/artifacts?limit=200")],
    ["GET /artifacts?before=10000&limit=200", () => get("/sessions/big/artifacts?before=10000&limit=200")],
    ["GET /artifacts (the whole transcript)", () => get("/sessions/big/artifacts")],
    ["GET /stream?tail=50 to snapshot_complete", () => snapshot("?tail=50")],
    ["GET /stream to snapshot_complete", () => snapshot("")]
  ] as const
) {
  const runs: Array<{ ms: number; bytes: number }> = []
  for (let i = 0; i < (name.includes("stream") ? 5 : 9); i++) runs.push(await read())
  console.log(`${name}: ${median(runs.map((r) => r.ms)).toFixed(1)} ms, ${(runs[0]!.bytes / 1024).toFixed(0)} KiB`)
}
sandbox.abort()
await server.close()
rmSync(dir, { recursive: true, force: true })
