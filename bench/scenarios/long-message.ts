/**
 * long-message: 100 000 text_delta events into one text artifact, in order
 * on one connection (HTTP/1.1 pipelining keeps a few requests in flight;
 * answers come back in order). The first 10 000 and the last 10 000 are sent
 * one delta per request, as a token-streaming sandbox does, and timed; the
 * 80 000 in between go 10 per request to keep the run short. Does the
 * 100 000th delta cost what the first did, and does the store hold the text
 * without rewriting it?
 */
import { join } from "node:path"
import { cpuMeter, fileBytes, getText, now, pool, post, postOk } from "../lib.js"
import { atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const deltas = 100_000
const window = 10_000
const middleBatch = 10
const depth = 4
const warmup = 2_000
/** Token-sized pieces of prose, 3 to 6 bytes. */
const words = ["Lorem ", "ipsum ", "dolor ", "sit ", "amet, ", "consec", "tetur ", "adipis", "cing ", "elit. ", "Sed ", "do "]

const single = words.map((delta) => JSON.stringify({ type: "text_delta", delta }))
/** Batches of `middleBatch` deltas, by the index of their first word (every index is a multiple of 2 mod 12 when started at a window edge). */
const batched = words.map((_, start) =>
  JSON.stringify(Array.from({ length: middleBatch }, (_, j) => ({ type: "text_delta", delta: words[(start + j) % words.length] }))))

export const longMessage: Scenario = {
  name: "long-message",
  description: `${deltas.toLocaleString("en-US")} deltas into one text artifact (1 connection, ${depth} pipelined)`,
  timeoutMs: 90_000,
  estimateS: 25,
  metrics: [
    metric("first_ms", `time of the first ${window.toLocaleString("en-US")} (1 per request)`, "ms", "min"),
    metric("last_ms", `time of the last ${window.toLocaleString("en-US")} (1 per request)`, "ms", "min"),
    metric("last_over_first", "last / first (median round)", "x", "median"),
    metric("rps", "single-delta requests", "req/s", "max"),
    metric("db_over_text", "DB bytes (db + wal) / text bytes (worst round)", "x", "max", "none"),
    metric("wal_over_text", "  of which the -wal file (worst round)", "x", "max", "none"),
    metric("db_closed_over_text", "DB bytes after shutdown / text bytes (worst round)", "x", "max", "none"),
    metric("text_ok", "text read back intact (worst round)", "1=yes", "min", "none"),
    count("errors", "non-202 answers (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const id = `${t.tag}-long`
    const p = pool(t.url, 1, depth)
    const path = `/sessions/${id}/events`
    let errors = 0
    let sent = 0 // deltas sent so far (in order)
    /** Sends deltas [sent, sent + count) in requests of `per` deltas, `depth` in flight; returns the elapsed ms. */
    const send = async (count: number, per: number, to = path) => {
      const end = sent + count
      const t0 = now()
      await Promise.all(Array.from({ length: depth }, async () => {
        while (sent < end) {
          const first = sent
          sent += per
          const body = per === 1 ? single[first % words.length]! : batched[first % words.length]!
          if ((await post(p, to, body, true)) !== 202) errors++
        }
      }))
      return now() - t0
    }
    try {
      await postOk(p, `/sessions/${id}`, "{}")
      // Warm up (JIT, caches) on another session, so the first window is not flattered or penalised by it.
      await postOk(p, `/sessions/${id}-warm`, "{}")
      await send(warmup, 1, `/sessions/${id}-warm/events`)
      sent = 0
      const cpu = cpuMeter()
      const first = await send(window, 1)
      await send(deltas - 2 * window, middleBatch)
      const last = await send(window, 1)
      const clientCpu = cpu()
      const textBytes = Array.from({ length: deltas }, (_, i) => Buffer.byteLength(words[i % words.length]!)).reduce((a, b) => a + b, 0)
      const db = t.dbDir === undefined ? undefined : join(t.dbDir, "rein.db")
      const dbBytes = db === undefined ? undefined : fileBytes(db, `${db}-wal`)
      const walBytes = db === undefined ? undefined : fileBytes(`${db}-wal`)

      let textOk: number | null = null
      if (t.kind === "rein") {
        const r = await getText(p, `/sessions/${id}/artifacts`)
        const artifacts = JSON.parse(r.text) as Array<{ kind: string; text?: string }>
        let expected = ""
        for (let i = 0; i < deltas; i++) expected += words[i % words.length]
        textOk = artifacts.length === 1 && artifacts[0]!.text === expected ? 1 : 0
      }
      return {
        first_ms: first,
        last_ms: last,
        last_over_first: last / first,
        rps: (2 * window) / ((first + last) / 1000),
        db_over_text: dbBytes === undefined ? null : dbBytes / textBytes,
        wal_over_text: walBytes === undefined ? null : walBytes / textBytes,
        db_closed_over_text: null, // see afterStop
        text_ok: textOk,
        errors,
        client_cpu: clientCpu,
        text_bytes: textBytes
      }
    } finally {
      await p.close()
    }
  },
  afterStop: (t, figures) => {
    if (t.dbDir === undefined || typeof figures.text_bytes !== "number") return
    const db = join(t.dbDir, "rein.db")
    figures.db_closed_over_text = fileBytes(db, `${db}-wal`) / figures.text_bytes
  },
  checks: (get) => [
    { label: "last 10 000 <= 1.3 x first 10 000", ok: atMost(get("last_over_first").rein, 1.3) },
    { label: "DB bytes <= 3 x text bytes", ok: atMost(get("db_over_text").rein, 3) },
    {
      label: "text intact, no error",
      ok: get("text_ok").rein === null ? null : get("text_ok").rein === 1 && get("errors").rein === 0
    }
  ]
}
