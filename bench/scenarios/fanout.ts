/**
 * fanout: 500 SSE subscribers on one session; 200 events/s for 10 s are
 * posted open-loop (on a schedule, not waiting for answers). Each event is a
 * `custom` event carrying its number `n`, so every subscriber can match the
 * `artifact_created` it receives to the moment its POST was sent.
 *
 * Over two instances (one PostgreSQL database), the same traffic with the
 * session created and the events posted on instance A: `fanout-cross` has
 * every subscriber on instance B, `fanout-split` half on A and half on B
 * (with each half's percentiles too). The floor is still one server.
 */
import { cpuMeter, percentile, pool, post, postOk, sleep, sse, type SseConnection, now, within } from "../lib.js"
import { atLeast, atMost, clientCpu, count, type Figures, metric, type Scenario } from "../scenario.js"

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

/** Where the subscribers stream from: the instance the events are posted to, the other one, or half each. */
type Layout = "one" | "cross" | "split"

const fanoutOn = (layout: Layout): Scenario => ({
  name: layout === "one" ? "fanout" : `fanout-${layout}`,
  ...(layout === "one" ? {} : { variantOf: "fanout" }),
  description: `${subscribers} SSE subscribers on one session, ${rate} events/s for ${seconds} s` +
    (layout === "cross" ? ", posted to instance A, every subscriber on B" : "") +
    (layout === "split" ? ", posted to instance A, half the subscribers on A and half on B" : ""),
  timeoutMs: 60_000,
  estimateS: 45,
  rounds: 1, // 10 s of posting per run: one round each keeps the whole bench under 5 minutes
  metrics: [
    metric("p50_ms", "POST->delivery p50", "ms", "min"),
    metric("p99_ms", "POST->delivery p99", "ms", "min"),
    metric("max_ms", "POST->delivery max", "ms", "min"),
    count("lost", "deliveries lost (worst round)", "max"),
    count("duplicates", "deliveries repeated (worst round)", "max"),
    count("cut_off", "subscribers disconnected (worst round)", "max"),
    metric("post_p99_ms", "POST answer p99", "ms", "min"),
    metric("send_rate", "events posted (worst round)", "events/s", "min", "value"),
    count("errors", "non-202 answers (worst round)", "max"),
    ...(layout === "split"
      ? [
        metric("p50_a_ms", "POST->delivery p50, subscribers on A", "ms", "min"),
        metric("p99_a_ms", "POST->delivery p99, subscribers on A", "ms", "min"),
        metric("p50_b_ms", "POST->delivery p50, subscribers on B", "ms", "min"),
        metric("p99_b_ms", "POST->delivery p99, subscribers on B", "ms", "min")
      ]
      : []),
    clientCpu
  ],
  run: async (t) => {
    const id = `${t.tag}-fan`
    const p = pool(t.url, 8)
    const conns: Array<SseConnection> = []
    try {
      await postOk(p, `/sessions/${id}`, "{}")
      const sentAt = new Float64Array(events).fill(NaN)
      // Subscriber s streams from instance `side(s)` (0: A, where the events are posted; 1: B).
      // The floor is one server: its "B" is the same server as its "A".
      const side = (s: number) => layout === "one" ? 0 : layout === "cross" ? 1 : s % 2
      const urls = [t.url, t.peer ?? t.url]
      const onSide = [0, 0]
      for (let s = 0; s < subscribers; s++) onSide[side(s)]!++
      const latencies = onSide.map((k) => new Float64Array(k * events))
      const deliveredOn = [0, 0]
      let delivered = 0
      // Which events each subscriber got (s * events + n): a repeat must not hide a loss.
      const seen = new Uint8Array(subscribers * events)
      let duplicates = 0
      let ready = 0
      let cutOff = 0
      let live = true
      let onReady!: () => void
      const allReady = new Promise<void>((r) => (onReady = r))
      let onAll!: () => void
      const allDelivered = new Promise<void>((r) => (onAll = r))

      for (let s = 0; s < subscribers; s++) {
        const d = side(s)
        const lat = latencies[d]!
        const c = sse(urls[d]!, `/sessions/${id}/stream`, (event, data) => {
          if (event === "artifact_created") {
            const n = numberOf(data)
            const at = sentAt[n]
            if (at !== undefined && !Number.isNaN(at)) {
              if (seen[s * events + n] === 1) return void duplicates++
              seen[s * events + n] = 1
              lat[deliveredOn[d]!++] = now() - at
              if (++delivered === subscribers * events) onAll()
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
      latencies.forEach((lat, d) => lat.fill(Infinity, deliveredOn[d]))
      const all = new Float64Array(subscribers * events)
      all.set(latencies[0]!)
      all.set(latencies[1]!, latencies[0]!.length)
      const finite = (x: number) => (Number.isFinite(x) ? x : null)
      const halves: Figures = layout !== "split" ? {} : {
        p50_a_ms: finite(percentile(latencies[0]!, 50)),
        p99_a_ms: finite(percentile(latencies[0]!, 99)),
        p50_b_ms: finite(percentile(latencies[1]!, 50)),
        p99_b_ms: finite(percentile(latencies[1]!, 99))
      }
      return {
        p50_ms: finite(percentile(all, 50)),
        p99_ms: finite(percentile(all, 99)),
        max_ms: finite(percentile(all, 100)),
        lost: subscribers * events - delivered,
        duplicates,
        cut_off: cutOff,
        post_p99_ms: finite(percentile(postLatencies, 99)),
        send_rate: sendRate,
        errors,
        ...halves,
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
      {
        label: "no event lost or repeated",
        ok: get("lost").rein === 0 && get("duplicates").rein === 0 && get("cut_off").rein === 0
      },
      { label: "p99 <= 2 x floor p99", ok: atMost(p99.ratio, 2) ?? tooLate },
      { label: "p99 <= 50 ms", ok: atMost(p99.rein, 50) ?? tooLate },
      { label: `posts kept the schedule (>= 0.95 x ${rate}/s)`, ok: atLeast(get("send_rate").rein, 0.95 * rate) }
    ]
  }
})

export const fanout = fanoutOn("one")
export const fanoutCross = fanoutOn("cross")
export const fanoutSplit = fanoutOn("split")
