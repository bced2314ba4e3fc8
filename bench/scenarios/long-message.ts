/**
 * long-message: 100 000 text_delta events, one per request, into one text
 * artifact, in order on one connection (HTTP/1.1 pipelining keeps a few in
 * flight; answers come back in order). Does the 100 000th delta cost what
 * the first did, and does the store hold the text without rewriting it?
 */
import { join } from "node:path"
import { cpuMeter, fileBytes, getText, now, pool, post, postOk } from "../lib.js"
import { atMost, clientCpu, metric, type Scenario } from "../scenario.js"

const deltas = 100_000
const window = 10_000
const depth = 8
/** Token-sized pieces of prose, 2 to 9 bytes. */
const words = ["Lorem ", "ipsum ", "dolor ", "sit ", "amet, ", "consec", "tetur ", "adipis", "cing ", "elit. ", "Sed ", "do "]

export const longMessage: Scenario = {
  name: "long-message",
  description: `${deltas.toLocaleString("en-US")} deltas into one text artifact (1 connection, ${depth} pipelined)`,
  timeoutMs: 90_000,
  metrics: [
    metric("first_ms", `time of the first ${window.toLocaleString("en-US")}`, "ms", "min"),
    metric("last_ms", `time of the last ${window.toLocaleString("en-US")}`, "ms", "min"),
    metric("last_over_first", "last / first", "x", "min"),
    metric("rps", "deltas", "req/s", "max"),
    metric("db_over_text", "DB bytes (db + wal) / text bytes (worst round)", "x", "max", false),
    metric("db_closed_over_text", "DB bytes after shutdown / text bytes (worst round)", "x", "max", false),
    metric("text_ok", "text read back intact (worst round)", "1=yes", "min", false),
    metric("errors", "non-202 answers (worst round)", "", "max"),
    clientCpu
  ],
  run: async (t) => {
    const id = `${t.tag}-long`
    const p = pool(t.url, 1, depth)
    try {
      await postOk(p, `/sessions/${id}`, "{}")
      const bodies = words.map((delta) => JSON.stringify({ type: "text_delta", delta }))
      const textBytes = Array.from({ length: deltas }, (_, i) => Buffer.byteLength(words[i % words.length]!)).reduce((a, b) => a + b, 0)
      const doneAt = new Float64Array(deltas + 1)
      let done = 0
      let issued = 0
      let errors = 0
      const cpu = cpuMeter()
      const t0 = now()
      doneAt[0] = t0
      await Promise.all(Array.from({ length: depth }, async () => {
        while (issued < deltas) {
          const i = issued++
          const status = await post(p, `/sessions/${id}/events`, bodies[i % bodies.length]!, true)
          if (status !== 202) errors++
          doneAt[++done] = now()
        }
      }))
      const clientCpu = cpu()
      const first = doneAt[window]! - doneAt[0]!
      const last = doneAt[deltas]! - doneAt[deltas - window]!
      const db = t.dbDir === undefined ? null : join(t.dbDir, "rein.db")
      const dbBytes = db === null ? null : fileBytes(db, `${db}-wal`)

      let textOk: number | null = null
      if (t.kind === "rein") {
        const r = await getText(p, `/sessions/${id}/artifacts`)
        const artifacts = JSON.parse(r.text) as Array<{ kind: string; text?: string }>
        const text = artifacts.find((a) => a.kind === "text")?.text ?? ""
        let expected = ""
        for (let i = 0; i < deltas; i++) expected += words[i % words.length]
        textOk = artifacts.length === 1 && text === expected ? 1 : 0
      }
      return {
        first_ms: first,
        last_ms: last,
        last_over_first: last / first,
        rps: deltas / ((doneAt[deltas]! - t0) / 1000),
        db_over_text: dbBytes === null ? null : dbBytes / textBytes,
        db_closed_over_text: null, // see afterStop
        text_bytes: textBytes,
        text_ok: textOk,
        errors,
        client_cpu: clientCpu
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
    { label: "text intact, no error", ok: get("text_ok").rein === null ? null : get("text_ok").rein === 1 && get("errors").rein === 0 }
  ]
}
