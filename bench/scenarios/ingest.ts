/**
 * ingest: single small events, one at a time. One connection posting
 * sequentially to one session, then 16 sessions in parallel on 16
 * connections (each its own closed loop).
 */
import { closedLoop, cpuMeter, percentile, pool, post, postOk } from "../lib.js"
import { atLeast, clientCpu, count, metric, type Scenario } from "../scenario.js"

const event = JSON.stringify({ type: "text_delta", delta: "hello world " })
const maxMs = 2_000
const parallel = 16

export const ingest: Scenario = {
  name: "ingest",
  description: "single text_delta events: 1 connection sequential, and 16 sessions on 16 connections",
  timeoutMs: 30_000,
  estimateS: 12,
  metrics: [
    metric("seq_rps", "sequential, 1 connection", "req/s", "max"),
    metric("seq_p99_ms", "sequential p99 latency", "ms", "min"),
    metric("par_rps", "16 sessions, 16 connections", "req/s", "max"),
    metric("par_p99_ms", "parallel p99 latency", "ms", "min"),
    count("errors", "non-202 answers (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    let errors = 0
    const send = (p: ReturnType<typeof pool>, id: string) =>
      post(p, `/sessions/${id}/events`, event).then((s) => void (s === 202 || errors++))

    const one = pool(t.url, 1)
    const many = pool(t.url, parallel)
    try {
      const seqId = `${t.tag}-seq`
      await postOk(one, `/sessions/${seqId}`, "{}")
      const ids = Array.from({ length: parallel }, (_, i) => `${t.tag}-par${i}`)
      for (const id of ids) await postOk(many, `/sessions/${id}`, "{}")

      await closedLoop(1, 300, 1_000, () => send(one, seqId)) // warm-up
      const cpu = cpuMeter()
      const seq = await closedLoop(1, 50_000, maxMs, () => send(one, seqId))

      await closedLoop(parallel, 300, 1_000, (w) => send(many, ids[w]!)) // warm-up
      const par = await closedLoop(parallel, 200_000, maxMs, (w) => send(many, ids[w]!))
      return {
        seq_rps: seq.count / (seq.ms / 1000),
        seq_p99_ms: percentile(seq.latencies, 99),
        par_rps: par.count / (par.ms / 1000),
        par_p99_ms: percentile(par.latencies, 99),
        errors,
        client_cpu: cpu()
      }
    } finally {
      await Promise.all([one.close(), many.close()])
    }
  },
  checks: (get) => [
    { label: "sequential >= 0.6 x floor request rate", ok: atLeast(get("seq_rps").ratio, 0.6) },
    // Issue 14's targets: 0.6x on one connection, 0.3x on 16 (ahead of a plain node:http + SQLite server).
    { label: "parallel >= 0.3 x floor request rate", ok: atLeast(get("par_rps").ratio, 0.3) },
    { label: "no error", ok: get("errors").rein === 0 }
  ]
}
