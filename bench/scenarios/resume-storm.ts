/**
 * resume-storm: a session with 10 000 artifacts (text parts of ~100 bytes);
 * 200 clients reconnect at once, each with a Last-Event-ID spread evenly over
 * the history (so on average each replays half of it), while one more
 * artifact is posted. A client has converged when it holds every seq from its
 * Last-Event-ID to the new one. (The floor numbers the events it was sent
 * the same way, and replays them as frames.)
 */
import { cpuMeter, median, now, pool, postOk, sse, type SseConnection, sleep } from "../lib.js"
import { atMost, clientCpu, count, metric, type Scenario } from "../scenario.js"

const artifacts = 10_000
const clients = 200
const batchSize = 500
const filler = "x".repeat(80)

export const resumeStorm: Scenario = {
  name: "resume-storm",
  description: `${clients} clients reconnect with Last-Event-ID to a session with ${artifacts.toLocaleString("en-US")} artifacts`,
  timeoutMs: 60_000,
  estimateS: 14,
  metrics: [
    metric("all_ms", "all converged", "ms", "min"),
    metric("p50_ms", "median client converged", "ms", "min"),
    metric("mib", "bytes replayed", "MiB", "min"),
    count("not_converged", "clients not converged in 20 s (worst round)", "max"),
    count("post_resets", "sandbox POST reset during the storm (worst round)", "max"),
    clientCpu
  ],
  run: async (t) => {
    const id = `${t.tag}-storm`
    const p = pool(t.url, 1)
    const conns: Array<SseConnection> = []
    try {
      await postOk(p, `/sessions/${id}`, "{}")
      for (let b = 0; b < artifacts / batchSize; b++) {
        const events = Array.from({ length: batchSize }, (_, j) => {
          const i = b * batchSize + j
          return { type: "text_delta", partId: `p${i}`, delta: `${i} ${filler}` }
        })
        await postOk(p, `/sessions/${id}/events`, JSON.stringify(events))
      }
      const lastId = artifacts + 1 // the artifact posted during the storm

      let converged = 0
      let onAll!: () => void
      const all = new Promise<void>((r) => (onAll = r))
      const times: Array<number> = []
      const cpu = cpuMeter()
      const t0 = now()
      for (let c = 0; c < clients; c++) {
        const from = 1 + Math.round((c * (artifacts - 1)) / (clients - 1))
        const need = lastId - from + 1
        const have = new Uint8Array(lastId + 1)
        let count = 0
        conns.push(sse(t.url, `/sessions/${id}/stream`, (_event, _data, eventId) => {
          if (eventId === undefined) return
          const seq = Number(eventId)
          if (seq >= from && seq <= lastId && have[seq] === 0) {
            have[seq] = 1
            if (++count === need) {
              times.push(now() - t0)
              if (++converged === clients) onAll()
            }
          }
        }, { "last-event-id": String(from) }))
      }
      // A sandbox posting during the storm. Its keep-alive connection may be reset by a server whose event
      // loop stalls past its keep-alive timeout; like a real sandbox it then retries (idempotently).
      let resets = 0
      const live = JSON.stringify({ type: "custom", name: "end", data: {} })
      for (let attempt = 0;; attempt++) {
        const q = attempt === 0 ? p : pool(t.url, 1)
        try {
          const res = await q.request({
            method: "POST",
            path: `/sessions/${id}/events`,
            body: live,
            headers: { "content-type": "application/json", "idempotency-key": `${t.tag}-end` }
          })
          await res.body.dump()
          if (res.statusCode !== 202) throw new Error(`live event: ${res.statusCode}`)
          break
        } catch (e) {
          if (attempt >= 3 || (e as { code?: string }).code === undefined) throw e
          resets++
        } finally {
          if (q !== p) await q.close()
        }
      }
      await Promise.race([all, sleep(20_000)])
      const clientCpu = cpu()
      const bytes = conns.reduce((a, c) => a + c.bytes(), 0)
      return {
        all_ms: converged === clients ? Math.max(...times) : null,
        p50_ms: times.length > 0 ? median(times) : null,
        mib: bytes / 1024 / 1024,
        not_converged: clients - converged,
        post_resets: resets,
        client_cpu: clientCpu
      }
    } finally {
      for (const c of conns) c.close()
      await p.close()
    }
  },
  checks: (get) => [
    { label: "all converge in <= 3 s", ok: get("not_converged").rein === 0 ? atMost(get("all_ms").rein, 3_000) : false }
  ]
}
