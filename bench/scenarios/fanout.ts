/**
 * fanout: 500 SSE subscribers on one session; 200 events/s for 10 s are
 * posted open-loop (on a schedule, not waiting for answers). Each event is a
 * `custom` event carrying its number `n`, so every subscriber can match the
 * `artifact_created` it receives to the moment its POST was sent.
 */
import { cpuMeter, percentile, pool, post, postOk, sleep, sse, type SseConnection, now, within } from "../lib.js"
import { atLeast, atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const subscribers = 500
const rate = 200
const seconds = 10
const events = rate * seconds

/** The `n` of `..."data":{"n":123}...` without parsing the whole JSON. */
const numberOf = (data: string): number => {
  const i = data.indexOf('"n":')
  if (i === -1) return -1
  let n = 0
  for (let j = i + 4; j < data.length; j++) {
    const c = data.charCodeAt(j) - 48
    if (c < 0 || c > 9) break
    n = n * 10 + c
  }
  return n
}

export const fanout: Scenario = {
  name: "fanout",
  description: `${subscribers} SSE subscribers on one session, ${rate} events/s for ${seconds} s`,
  timeoutMs: 60_000,
  estimateS: 45,
  rounds: 1, // 10 s of posting per run: one round each keeps the whole bench under 5 minutes
  metrics: [
    metric("p50_ms", "POST->delivery p50", "ms", "min"),
    metric("p99_ms", "POST->delivery p99", "ms", "min"),
    metric("max_ms", "POST->delivery max", "ms", "min"),
    count("lost", "deliveries lost (worst round)", "max"),
    count("cut_off", "subscribers disconnected (worst round)", "max"),
    metric("post_p99_ms", "POST answer p99", "ms", "min"),
    metric("send_rate", "events posted (worst round)", "events/s", "min", "value"),
    count("errors", "non-202 answers (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const id = `${t.tag}-fan`
    const p = pool(t.url, 8)
    const conns: Array<SseConnection> = []
    try {
      await postOk(p, `/sessions/${id}`, "{}")
      const sentAt = new Float64Array(events).fill(NaN)
      const latencies = new Float64Array(subscribers * events)
      let delivered = 0
      let ready = 0
      let cutOff = 0
      let live = true
      let onReady!: () => void
      const allReady = new Promise<void>((r) => (onReady = r))
      let onAll!: () => void
      const allDelivered = new Promise<void>((r) => (onAll = r))

      for (let s = 0; s < subscribers; s++) {
        const c = sse(t.url, `/sessions/${id}/stream`, (event, data) => {
          if (event === "artifact_created") {
            const n = numberOf(data)
            const at = sentAt[n]
            if (at !== undefined && !Number.isNaN(at)) {
              latencies[delivered++] = now() - at
              if (delivered === subscribers * events) onAll()
            }
          } else if (event === "snapshot_complete" && ++ready === subscribers) onReady()
        })
        c.ended.then(() => void (live && cutOff++))
        conns.push(c)
      }
      await within(allReady, 20_000, `${subscribers} subscribers ready`)

      const cpu = cpuMeter()
      const posts: Array<Promise<void>> = []
      const postLatencies = new Float64Array(events).fill(Infinity)
      let errors = 0
      const t0 = now()
      for (let n = 0; n < events; n++) {
        const due = t0 + (n * 1000) / rate
        const wait = due - now()
        if (wait > 1) await sleep(wait)
        const body = JSON.stringify({ type: "custom", name: "t", data: { n } })
        sentAt[n] = now()
        posts.push(post(p, `/sessions/${id}/events`, body).then((status) => {
          postLatencies[n] = now() - sentAt[n]!
          if (status !== 202) errors++
        }))
      }
      const sendRate = events / ((now() - t0) / 1000)
      // Bounded: answers get 5 s more, deliveries 3 s after that; what has not arrived by then is lost.
      await Promise.race([Promise.all(posts), sleep(5_000)])
      await Promise.race([allDelivered, sleep(3_000)])
      const clientCpu = cpu()
      live = false
      // A delivery that never came counts as infinitely late: a percentile it reaches is reported as n/a.
      latencies.fill(Infinity, delivered)
      const finite = (x: number) => (Number.isFinite(x) ? x : null)
      return {
        p50_ms: finite(percentile(latencies, 50)),
        p99_ms: finite(percentile(latencies, 99)),
        max_ms: finite(percentile(latencies, 100)),
        lost: subscribers * events - delivered,
        cut_off: cutOff,
        post_p99_ms: finite(percentile(postLatencies, 99)),
        send_rate: sendRate,
        errors,
        client_cpu: clientCpu
      }
    } finally {
      for (const c of conns) c.close()
      await p.close()
    }
  },
  checks: (get) => {
    // A p99 that is n/a because over 1 % of deliveries never came is a miss, not "cannot tell".
    const p99 = get("p99_ms")
    const tooLate = p99.rein === null && (get("lost").rein ?? 0) > 0 ? false : null
    return [
      { label: "no event lost", ok: get("lost").rein === 0 && get("cut_off").rein === 0 },
      { label: "p99 <= 2 x floor p99", ok: atMost(p99.ratio, 2) ?? tooLate },
      { label: "p99 <= 50 ms", ok: atMost(p99.rein, 50) ?? tooLate },
      { label: `posts kept the schedule (>= 0.95 x ${rate}/s)`, ok: atLeast(get("send_rate").rein, 0.95 * rate) }
    ]
  }
}
