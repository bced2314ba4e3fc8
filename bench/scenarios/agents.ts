/**
 * agents: how many agents can one instance take? N simulated sandboxes, each
 * the package's own `SandboxConnection` (its command stream held open, its
 * batching and merging of deltas as shipped), send one `text_delta` every
 * 20 ms; each session is watched by one artifact stream. Every delta carries
 * its number, so the watcher can tell when each one arrived: latency = the
 * `send()` call -> the frame that holds it parsed at the watcher (it includes
 * the connection's batch delay, as an agent's user sees it).
 *
 * N steps up on one server (fresh sessions each step) and stops at the first
 * step that fails: p99 over 100 ms, a delta lost, repeated or refused, or the
 * bench client unable to keep the rate (under 0.95 x one delta per 20 ms
 * each: then the client, not the server, stopped it; its CPU shows it).
 * The sandboxes post through a light `fetch` (`leanFetch`): with Node's own,
 * the one client process would cap the figure near 50. Reported: the largest N that passed, its
 * figures (and the server's CPU and RSS there), and what the next step measured.
 */
import { SandboxConnection } from "../../src/client/SandboxConnection.js"
import { cpuMeter, cpuMs, leanFetch, mapLimit, now, percentile, pool, postOk, rssKiB, sleep, sse, type SseConnection, within } from "../lib.js"
import { atLeast, clientCpu, count, type Figures, metric, type Scenario } from "../scenario.js"

const steps = [10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1_000]
const intervalMs = 20
const seconds = 4
const perSandbox = (seconds * 1000) / intervalMs
const p99Bound = 100
/** The schedule counts as kept when the sandboxes sent at this share of their rate or more. */
const keptSchedule = 0.95

interface Step {
  readonly n: number
  readonly p50: number | null
  readonly p99: number | null
  readonly lost: number
  readonly duplicates: number
  readonly errors: number
  /** The rate the sandboxes kept, as a share of one delta per 20 ms each (under 1: the client fell behind). */
  readonly schedule: number
  /** Event POSTs the sandboxes made, per second of the window (their batching decides how many). */
  readonly postsPerS: number
  readonly serverCpu: number | null
  readonly rssMib: number | null
  readonly clientCpu: number
}

const passed = (s: Step) =>
  s.p99 !== null && s.p99 <= p99Bound && s.lost === 0 && s.duplicates === 0 && s.errors === 0 && s.schedule >= keptSchedule

/** The numbers in a frame's text: Rein's `artifact_created` (text) or `artifact_updated` (append), the floor's echo (delta). */
const textOf = (data: string): string => {
  const o = JSON.parse(data) as { append?: string; artifact?: { text?: string; delta?: string } }
  return o.append ?? o.artifact?.text ?? o.artifact?.delta ?? ""
}

const runStep = async (url: string, pid: number | undefined, tag: string, n: number): Promise<Step> => {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-a${n}-${i}`)
  const p = pool(url, 16)
  const watchers: Array<SseConnection> = []
  const sandboxes: Array<SandboxConnection> = []
  const timers: Array<NodeJS.Timeout> = []
  try {
    await mapLimit(ids, 16, (id) => postOk(p, `/sessions/${id}`, "{}"))
    const sentAt = new Float64Array(n * perSandbox).fill(NaN)
    const seen = new Uint8Array(n * perSandbox)
    const latencies = new Float64Array(n * perSandbox)
    let delivered = 0
    let duplicates = 0
    let sent = 0
    let onAll!: () => void
    const allDelivered = new Promise<void>((r) => (onAll = r))

    await within(
      mapLimit(ids, 50, (id, i) =>
        new Promise<void>((resolve, reject) => {
          const c = sse(url, `/sessions/${id}/stream`, (event, data) => {
            if (event === "snapshot_complete") return resolve()
            if (event !== "artifact_created" && event !== "artifact_updated") return
            const at = now()
            for (const word of textOf(data).split(" ")) {
              if (word === "") continue
              const k = i * perSandbox + Number(word)
              if (Number.isNaN(sentAt[k]!)) continue
              if (seen[k] === 1) {
                duplicates++
                continue
              }
              seen[k] = 1
              latencies[delivered] = at - sentAt[k]!
              if (++delivered === sent && sent === n * perSandbox) onAll()
            }
          })
          c.opened.then((status) => void (status === 200 || reject(new Error(`stream ${id}: ${status}`))), reject)
          watchers.push(c)
        })),
      30_000,
      `${n} watchers ready`
    )
    let errors = 0
    let posts = 0
    const counting = (input: string, init?: RequestInit) => {
      if (init?.method === "POST") posts++
      return leanFetch(input, init)
    }
    await within(
      mapLimit(ids, 50, async (sessionId) => {
        const s = new SandboxConnection({
          baseUrl: url,
          sessionId,
          fetch: counting,
          onError: (_e, events) => void (errors += events.length)
        })
        sandboxes.push(s)
        await s.connect()
      }),
      30_000,
      `${n} sandboxes connected`
    )

    const cpu = cpuMeter()
    const server0 = pid === undefined ? undefined : cpuMs(pid)
    const t0 = now()
    const posts0 = posts
    // Each sandbox on its own 20 ms schedule, the sandboxes spread evenly over one interval.
    const finished = Promise.all(sandboxes.map((s, i) =>
      new Promise<void>((resolve) => {
        const start = t0 + (i * intervalMs) / n
        let k = 0
        // On an absolute schedule: a tick that comes late does not push the later ones back.
        const tick = () => {
          sentAt[i * perSandbox + k] = now()
          sent++
          void s.send({ type: "text_delta", delta: `${k} ` }).catch(() => {})
          if (++k === perSandbox) return resolve()
          timers[i] = setTimeout(tick, Math.max(0, start + k * intervalMs - now()))
        }
        timers[i] = setTimeout(tick, Math.max(0, start - now()))
      })
    ))
    await finished
    const windowMs = now() - t0
    const windowPosts = posts - posts0
    const rss = pid === undefined ? undefined : rssKiB(pid)
    // What arrives within 3 s of the last send counts; later is lost.
    await Promise.race([allDelivered, sleep(3_000)])
    const serverCpu = pid === undefined || server0 === undefined ? undefined : cpuMs(pid)
    const clientCpuPct = cpu()
    const spanMs = now() - t0
    latencies.fill(Infinity, delivered)
    const finite = (x: number) => (Number.isFinite(x) ? x : null)
    return {
      n,
      p50: finite(percentile(latencies, 50)),
      p99: finite(percentile(latencies, 99)),
      lost: n * perSandbox - delivered,
      duplicates,
      errors,
      schedule: (seconds * 1000) / windowMs,
      postsPerS: (1000 * windowPosts) / windowMs,
      serverCpu: serverCpu === undefined || server0 === undefined ? null : (100 * (serverCpu - server0)) / spanMs,
      rssMib: rss === undefined ? null : rss / 1024,
      clientCpu: clientCpuPct
    }
  } finally {
    for (const t of timers) clearTimeout(t)
    await Promise.all(sandboxes.map((s) => within(s.close(), 10_000, "sandbox close").catch(() => {})))
    for (const c of watchers) c.close()
    await p.close()
  }
}

const log = (s: string) => process.stderr.write(`${s}\n`)

const fig = (s: Step | undefined, prefix: string): Figures => ({
  [`${prefix}n`]: s?.n ?? null,
  [`${prefix}p50_ms`]: s?.p50 ?? null,
  [`${prefix}p99_ms`]: s?.p99 ?? null,
  [`${prefix}lost`]: s === undefined ? null : s.lost + s.duplicates + s.errors,
  [`${prefix}schedule`]: s?.schedule ?? null,
  [`${prefix}server_cpu`]: s?.serverCpu ?? null,
  [`${prefix}rss_mib`]: s?.rssMib ?? null,
  [`${prefix}posts_per_s`]: s?.postsPerS ?? null,
  [`${prefix}client_cpu`]: s?.clientCpu ?? null
})

export const agents: Scenario = {
  name: "agents",
  description: `N sandboxes (SandboxConnection) each sending a text_delta every ${intervalMs} ms, one watcher each; ` +
    `N steps up (${steps.join(", ")}) while p99 <= ${p99Bound} ms and nothing is lost`,
  timeoutMs: 240_000,
  estimateS: 90,
  rounds: 1,
  metrics: [
    metric("at_n", "largest N that passed", "agents", "min"),
    metric("at_p50_ms", "at that N: send -> delivery p50", "ms", "max", "value"),
    metric("at_p99_ms", "at that N: send -> delivery p99", "ms", "max", "value"),
    metric("at_posts_per_s", "at that N: event POSTs", "req/s", "max", "value"),
    metric("at_server_cpu", "at that N: server CPU", "% core", "max", "value"),
    metric("at_rss_mib", "at that N: server RSS", "MiB", "max", "value"),
    metric("at_client_cpu", "at that N: bench client CPU", "% core", "max", "value"),
    metric("next_n", "the next step (failed; n/a: none failed)", "agents", "min", "value"),
    metric("next_p50_ms", "next step: p50", "ms", "max", "value"),
    metric("next_p99_ms", "next step: p99 (n/a: over 1 % lost)", "ms", "max", "value"),
    count("next_lost", "next step: lost + repeated + refused"),
    metric("next_schedule", "next step: rate kept (share of 1 delta / 20 ms each)", "", "max", "value"),
    metric("next_posts_per_s", "next step: event POSTs", "req/s", "max", "value"),
    metric("next_server_cpu", "next step: server CPU", "% core", "max", "value"),
    metric("next_rss_mib", "next step: server RSS", "MiB", "max", "value"),
    metric("next_client_cpu", "next step: bench client CPU", "% core", "max", "value"),
    clientCpu
  ],
  run: async (t) => {
    const meter = cpuMeter()
    let best: Step | undefined
    let next: Step | undefined
    for (const n of steps) {
      const s = await runStep(t.url, t.pid, t.tag, n)
      log(
        `    ${t.kind} N=${n}: p50 ${s.p50?.toFixed(1) ?? "n/a"} ms, p99 ${s.p99?.toFixed(1) ?? "n/a"} ms, ` +
          `lost ${s.lost}, repeated ${s.duplicates}, refused ${s.errors}, on schedule ${(100 * s.schedule).toFixed(1)} %, ` +
          `${s.postsPerS.toFixed(0)} POSTs/s, server CPU ${s.serverCpu?.toFixed(0) ?? "n/a"} %, RSS ${s.rssMib?.toFixed(0) ?? "n/a"} MiB, client CPU ${s.clientCpu.toFixed(0)} %`
      )
      if (!passed(s)) {
        next = s
        break
      }
      best = s
      await sleep(500)
    }
    return { ...fig(best, "at_"), ...fig(next, "next_"), client_cpu: meter() }
  },
  checks: (get) => [
    { label: ">= 300 agents with p99 <= 100 ms, nothing lost", ok: atLeast(get("at_n").rein, 300) ?? false }
  ]
}
