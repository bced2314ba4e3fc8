/**
 * batch: sandboxes that buffer and post 100 events per request (4 sessions
 * on 4 connections, each a closed loop).
 */
import { closedLoop, cpuMeter, percentile, pool, post, postOk } from "../lib.js"
import { atLeast, clientCpu, count, metric, type Scenario } from "../scenario.js"

const size = 100
const parallel = 4
const words = ["The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog. "]
const body = JSON.stringify(Array.from({ length: size }, (_, i) => ({ type: "text_delta", delta: words[i % words.length] })))

export const batch: Scenario = {
  name: "batch",
  description: `batches of ${size} text_delta events, ${parallel} sessions on ${parallel} connections`,
  timeoutMs: 30_000,
  estimateS: 8,
  metrics: [
    metric("events_per_s", "events", "events/s", "max"),
    metric("rps", "batches", "req/s", "max"),
    metric("p99_ms", "batch p99 latency", "ms", "min"),
    count("errors", "non-202 answers (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    let errors = 0
    const p = pool(t.url, parallel)
    try {
      const ids = Array.from({ length: parallel }, (_, i) => `${t.tag}-batch${i}`)
      for (const id of ids) await postOk(p, `/sessions/${id}`, "{}")
      const send = (w: number) => post(p, `/sessions/${ids[w]}/events`, body).then((s) => void (s === 202 || errors++))
      await closedLoop(parallel, 100, 2_000, send) // warm-up
      const cpu = cpuMeter()
      const r = await closedLoop(parallel, 20_000, 3_000, send)
      const rps = r.count / (r.ms / 1000)
      return { events_per_s: rps * size, rps, p99_ms: percentile(r.latencies, 99), errors, client_cpu: cpu() }
    } finally {
      await p.close()
    }
  },
  checks: (get) => [
    { label: ">= 400 000 events/s", ok: atLeast(get("events_per_s").rein, 400_000) },
    { label: ">= 0.5 x floor request rate", ok: atLeast(get("rps").ratio, 0.5) },
    { label: "no error", ok: get("errors").rein === 0 }
  ]
}
