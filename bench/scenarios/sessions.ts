/**
 * sessions: 10 000 sessions created (16 connections), then listed
 * (GET /sessions) and streamed (GET /sessions/stream until snapshot_complete),
 * 5 times each; the median counts.
 */
import { closedLoop, cpuMeter, getText, median, now, pool, post, sse, within } from "../lib.js"
import { atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const sessionCount = 10_000
const parallel = 16
const repeats = 5

export const sessions: Scenario = {
  name: "sessions",
  description: `${sessionCount.toLocaleString("en-US")} sessions created, listed, streamed`,
  timeoutMs: 60_000,
  estimateS: 12,
  metrics: [
    metric("create_rps", "created", "sessions/s", "max"),
    metric("list_ms", `GET /sessions (median of ${repeats})`, "ms", "min"),
    metric("stream_ms", `GET /sessions/stream to snapshot_complete (median of ${repeats})`, "ms", "min"),
    count("listed", "sessions listed (worst round)", "min"),
    count("errors", "failed creations (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const p = pool(t.url, parallel)
    try {
      let errors = 0
      const cpu = cpuMeter()
      const created = await closedLoop(parallel, sessionCount, 45_000, (_, i) =>
        post(p, `/sessions/${t.tag}-s${i}`, JSON.stringify({ project: `p${i % 10}` })).then((s) => void (s === 201 || errors++)))
      const clientCpu = cpu()

      const lists: Array<number> = []
      let listed = 0
      for (let r = 0; r < repeats; r++) {
        const s = now()
        const res = await getText(p, "/sessions")
        lists.push(now() - s)
        listed = (JSON.parse(res.text) as Array<{ id: string }>).filter((x) => x.id.startsWith(`${t.tag}-`)).length
      }

      const streams: Array<number> = []
      for (let r = 0; r < repeats; r++) {
        const s = now()
        let done!: () => void
        const complete = new Promise<void>((resolve) => (done = resolve))
        const c = sse(t.url, "/sessions/stream", (event) => void (event === "snapshot_complete" && done()))
        await within(complete, 10_000, "session stream snapshot")
        streams.push(now() - s)
        c.close()
      }
      return {
        create_rps: created.count / (created.ms / 1000),
        list_ms: median(lists),
        stream_ms: median(streams),
        listed,
        errors,
        client_cpu: clientCpu
      }
    } finally {
      await p.close()
    }
  },
  checks: (get) => [
    { label: "list <= 50 ms", ok: atMost(get("list_ms").rein, 50) },
    { label: "session stream snapshot <= 200 ms", ok: atMost(get("stream_ms").rein, 200) },
    { label: `all ${sessionCount.toLocaleString("en-US")} created and listed`, ok: get("errors").rein === 0 && get("listed").rein === sessionCount }
  ]
}
