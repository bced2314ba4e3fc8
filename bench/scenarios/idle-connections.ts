/**
 * idle-connections: 5 000 SSE streams held open and idle (500 per session,
 * 10 sessions). What does each cost the server in resident memory?
 */
import { cpuMeter, mapLimit, now, pool, postOk, rssKiB, sleep, sse, type SseConnection, within } from "../lib.js"
import { atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const connections = 5_000
const sessionCount = 10

export const idleConnections: Scenario = {
  name: "idle-connections",
  description: `${connections.toLocaleString("en-US")} idle SSE connections (${sessionCount} sessions)`,
  timeoutMs: 60_000,
  estimateS: 14,
  metrics: [
    metric("rss_per_conn_kib", "server RSS per connection", "KiB", "min"),
    metric("open_ms", `time to open all ${connections.toLocaleString("en-US")} (to snapshot_complete)`, "ms", "min"),
    count("failed", "connections that failed (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const p = pool(t.url, 1)
    const conns: Array<SseConnection> = []
    try {
      const ids = Array.from({ length: sessionCount }, (_, i) => `${t.tag}-idle${i}`)
      for (const id of ids) await postOk(p, `/sessions/${id}`, "{}")
      const open = (i: number) =>
        new Promise<boolean>((resolve) => {
          const c = sse(t.url, `/sessions/${ids[i % sessionCount]}/stream`, (event) => {
            if (event === "snapshot_complete") resolve(true)
          })
          c.opened.then((status) => void (status === 200 || resolve(false)), () => resolve(false))
          c.ended.then(() => resolve(false))
          conns.push(c)
        })

      // Warm up the server's code paths (and heap) with a few streams, then let it settle.
      await mapLimit(Array.from({ length: 100 }, (_, i) => i), 50, open)
      for (const c of conns.splice(0)) c.close()
      await sleep(500)
      const before = t.pid === undefined ? undefined : rssKiB(t.pid)

      const cpu = cpuMeter()
      const t0 = now()
      const results = await within(
        mapLimit(Array.from({ length: connections }, (_, i) => i), 200, open),
        45_000,
        `${connections} connections`
      )
      const openMs = now() - t0
      const clientCpu = cpu()
      await sleep(1_000)
      const after = t.pid === undefined ? undefined : rssKiB(t.pid)
      const failed = results.filter((ok) => !ok).length
      return {
        rss_per_conn_kib: before === undefined || after === undefined ? null : (after - before) / connections,
        open_ms: openMs,
        failed,
        client_cpu: clientCpu
      }
    } finally {
      for (const c of conns) c.close()
      await p.close()
    }
  },
  checks: (get) => [
    { label: "<= 16 KiB server RSS per connection", ok: atMost(get("rss_per_conn_kib").rein, 16) },
    { label: "every connection opened", ok: get("failed").rein === 0 }
  ]
}
