/**
 * many-sessions: does memory follow the work in hand, or the history? 10 000
 * sessions are created, each posted one turn (20 tool calls and some text, one
 * batch), then left idle: server RSS at start, right after the load, and once
 * idle (V8 gives back its garbage-filled heap pages only after a few idle
 * seconds: the figure settles when RSS stops falling). Then a reconnect churn:
 * 10 000 artifact streams opened (to snapshot_complete) and closed over those
 * sessions, and RSS once idle again.
 */
import { cpuMeter, mapLimit, pool, postOk, rssKiB, sleep, sse, within } from "../lib.js"
import { atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const sessionCount = 10_000
const churn = 10_000
const parallel = 16

/** One turn: text, 20 tool calls (start and end, with input and output), text, usage. */
const turn = (): string => {
  const events: Array<unknown> = [
    { type: "turn_start" },
    { type: "text_delta", delta: "Let me look at the repository and run a few tools. ".repeat(3) }
  ]
  for (let k = 0; k < 20; k++) {
    events.push({ type: "tool_call_start", toolCallId: `t${k}`, name: "bash", input: `{"command":"ls -la src/dir${k}"}` })
    events.push({ type: "tool_call_end", toolCallId: `t${k}`, output: `file${k}.ts\n`.repeat(10) })
  }
  events.push(
    { type: "text_delta", delta: "Done: everything looks fine. ".repeat(4) },
    { type: "usage", inputTokens: 1000, outputTokens: 200 },
    { type: "turn_end", stopReason: "end_turn" }
  )
  return JSON.stringify(events)
}

/**
 * RSS once it stops falling: sampled each second until 45 s pass without a 1% drop (150 s at
 * most). V8's memory reducer hands back the heap pages of the load after some 20 to 40 s idle.
 */
const settledRss = async (pid: number | undefined): Promise<number | undefined> => {
  if (pid === undefined) return undefined
  let best = rssKiB(pid)
  let calm = 0
  for (let s = 0; s < 150 && calm < 45; s++) {
    await sleep(1_000)
    const x = rssKiB(pid)
    if (x === undefined || best === undefined) return undefined
    if (x < best * 0.99) calm = 0
    else calm++
    best = Math.min(best, x)
  }
  return best
}

const mib = (kib: number | undefined) => kib === undefined ? null : kib / 1024

export const manySessions: Scenario = {
  name: "many-sessions",
  description: `${sessionCount.toLocaleString("en-US")} sessions of one turn each, left idle; then ${churn.toLocaleString("en-US")} stream reconnects`,
  timeoutMs: 600_000,
  rounds: 1,
  estimateS: 300,
  metrics: [
    metric("start_rss_mib", "server RSS at start", "MiB", "min", "value"),
    metric("loaded_rss_mib", `RSS right after ${sessionCount.toLocaleString("en-US")} sessions`, "MiB", "min", "value"),
    metric("idle_rss_mib", "RSS once idle", "MiB", "min", "value"),
    metric("per_session_kib", "RSS per idle session (idle - start)", "KiB", "min", "value"),
    metric("churn_before_mib", "RSS before the reconnect churn (idle)", "MiB", "min", "value"),
    metric("churn_after_mib", `RSS after ${churn.toLocaleString("en-US")} stream opens and closes (idle)`, "MiB", "min", "value"),
    metric("load_s", "time to load the sessions", "s", "min"),
    count("failed", "failed requests or streams (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const p = pool(t.url, parallel)
    try {
      await sleep(1_000)
      const start = t.pid === undefined ? undefined : rssKiB(t.pid)
      const body = turn()
      let failed = 0
      const cpu = cpuMeter()
      const t0 = performance.now()
      const ids = Array.from({ length: sessionCount }, (_, i) => `${t.tag}-m${i}`)
      await within(
        mapLimit(ids, parallel, async (id) => {
          try {
            await postOk(p, `/sessions/${id}`, "{}")
            await postOk(p, `/sessions/${id}/events`, body)
          } catch {
            failed++
          }
        }),
        240_000,
        "loading the sessions"
      )
      const loadS = (performance.now() - t0) / 1000
      const clientCpu = cpu()
      const loaded = t.pid === undefined ? undefined : rssKiB(t.pid)
      const idle = await settledRss(t.pid)

      // Reconnect churn: each stream reads its session's whole snapshot, then hangs up.
      const open = (i: number) =>
        new Promise<void>((resolve) => {
          const c = sse(t.url, `/sessions/${ids[i % sessionCount]}/stream`, (event) => {
            if (event === "snapshot_complete") c.close()
          })
          c.opened.then((status) => {
            if (status !== 200) {
              failed++
              c.close()
            }
          }, () => void failed++)
          c.ended.then(() => resolve())
        })
      await within(mapLimit(Array.from({ length: churn }, (_, i) => i), 50, open), 120_000, "the reconnect churn")
      const after = await settledRss(t.pid)
      return {
        start_rss_mib: mib(start),
        loaded_rss_mib: mib(loaded),
        idle_rss_mib: mib(idle),
        per_session_kib: start === undefined || idle === undefined ? null : (idle - start) / sessionCount,
        churn_before_mib: mib(idle),
        churn_after_mib: mib(after),
        load_s: loadS,
        failed,
        client_cpu: clientCpu
      }
    } finally {
      await p.close()
    }
  },
  checks: (get) => {
    const before = get("churn_before_mib").rein
    const after = get("churn_after_mib").rein
    return [
      { label: "<= 4 KiB RSS per idle session", ok: atMost(get("per_session_kib").rein, 4) },
      { label: "reconnect churn leaves <= 8 MiB behind", ok: before === null || after === null ? null : after - before <= 8 },
      { label: "every request and stream succeeded", ok: get("failed").rein === 0 }
    ]
  }
}
