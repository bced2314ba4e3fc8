/**
 * Runners (issue 20): what starts agents for this hub. `GET /runners` is not streamed, so it is
 * read when a view opens and then every few seconds while it is open.
 */
import { useEffect, useState } from "preact/hooks"
import type { ReinClient, RunnerInfo } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { bytes } from "./format.js"

export interface RunnersState {
  readonly runners: ReadonlyArray<RunnerInfo> | undefined
  readonly error: string | undefined
  readonly reload: () => void
}

/** The hub's runners, read now and every `intervalMs` (0: once); `enabled` false reads nothing. */
export const useRunners = (client: ReinClient, intervalMs = 5000, enabled = true): RunnersState => {
  const [runners, setRunners] = useState<ReadonlyArray<RunnerInfo> | undefined>()
  const [error, setError] = useState<string | undefined>()
  const [tick, setTick] = useState(0)
  useEffect(() => {
    if (!enabled) return
    let stopped = false
    const read = async () => {
      try {
        const list = await client.listRunners()
        if (stopped) return
        setRunners(list)
        setError(undefined)
      } catch (e) {
        if (!stopped) setError(e instanceof ReinError ? e.message : String(e))
      }
    }
    void read()
    const timer = intervalMs > 0 ? setInterval(read, intervalMs) : undefined
    return () => {
      stopped = true
      clearInterval(timer)
    }
  }, [client, intervalMs, enabled, tick])
  return { runners, error, reload: () => setTick((t) => t + 1) }
}

const sessionsOf = (r: RunnerInfo) => `${r.sessions} / ${r.maxSessions ?? "no limit"}`

export const RunnersView = ({ client }: { client: ReinClient }) => {
  const { runners, error } = useRunners(client)
  return (
    <section class="runners-view" aria-label="Runners">
      <header class="session-header">
        <div class="session-title">
          <a href="#/" class="back" aria-label="Back to the sessions">← Sessions</a>
          <h1>Runners</h1>
        </div>
        <p class="session-meta muted">
          A runner starts agents for this hub, each in its own git worktree. The server runs one for its own machine;{" "}
          <code>rein-runner</code> adds another machine.
        </p>
      </header>
      <div class="files-panel">
        {error && <p class="inline-error" role="alert">Cannot read the runners: {error}</p>}
        {runners === undefined && error === undefined && <p class="empty">Loading…</p>}
        {runners !== undefined && runners.length === 0 && (
          <p class="empty">No runner. Start the server without <code>--no-runner</code>, or connect one with <code>rein-runner</code>.</p>
        )}
        {runners !== undefined && runners.length > 0 && (
          <ul class="runners" aria-label="Runner list">
            {runners.map((r) => (
              <li class={`card runner${r.online ? "" : " offline"}`} data-runner={r.id} aria-label={`Runner ${r.name}`}>
                <header>
                  <strong class="runner-name">{r.name}</strong>
                  {r.name !== r.id && <code class="muted runner-id">{r.id}</code>}
                  {r.embedded && <span class="badge runner-embedded">this server</span>}
                  <span class={`badge runner-online ${r.online ? "tone-ok" : "tone-pending"}`} data-online={r.online}>
                    {r.online ? "online" : "offline"}
                  </span>
                </header>
                <dl class="runner-facts">
                  <dt>Agents</dt>
                  <dd class="runner-agents">
                    {r.agents.length === 0
                      ? <span class="muted">none</span>
                      : r.agents.map((a) => <span class="runner-agent" title={a.id}>{a.name === a.id ? a.id : `${a.name} (${a.id})`}</span>)}
                  </dd>
                  <dt>Repositories</dt>
                  <dd class="runner-repos">
                    {r.repos.length === 0 ? <span class="muted">none</span> : r.repos.map((p) => <code class="runner-repo">{p}</code>)}
                  </dd>
                  <dt>Sessions</dt>
                  <dd class="runner-sessions" title="sessions whose agent it runs now / at most">{sessionsOf(r)}</dd>
                  <dt>Free disk</dt>
                  <dd class="runner-disk" data-bytes={r.freeDisk ?? undefined}>{bytes(r.freeDisk)}</dd>
                </dl>
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  )
}
