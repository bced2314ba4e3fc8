/**
 * Issue 20 in a session's header: for a session a runner starts an agent for, the agent, the
 * runner and the worktree's branch, with Stop and Start / Restart; for a session waiting for a
 * sandbox to connect by itself, the exact `rein-sandbox` command to run and the time left before
 * its bootstrap timeout removes it.
 */
import { useState } from "preact/hooks"
import type { ReinClient, Session } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { minutesSeconds } from "./format.js"
import { useNow } from "./hooks.js"
import { useRunners } from "./Runners.js"
import { sandboxTokenFor } from "./sandboxTokens.js"

const errorText = (e: unknown) => (e instanceof ReinError ? e.message : String(e))

/** Agent, runner and branch, with Stop (live, idle) and Start / Restart (disconnected). */
export const AgentBar = ({ client, session }: { client: ReinClient; session: Session }) => {
  const { runners } = useRunners(client, 15_000, session.runner !== null)
  const [busy, setBusy] = useState<"stop" | "start" | undefined>()
  const [error, setError] = useState<string | undefined>()
  if (session.agent === null) return null
  const runner = runners?.find((r) => r.id === session.runner)
  const running = session.status === "live" || session.status === "idle"
  // Stopped, or gone; or its start failed before it ever connected (the transcript says why).
  const startable = session.status === "disconnected" || (session.status === "bootstrapping" && session.lastStopReason === "error")
  // An agent that died (or could not start) is started again; one stopped on purpose, started.
  const startLabel = session.lastStopReason === "error" ? "Restart" : "Start"
  const act = async (what: "stop" | "start") => {
    setBusy(what)
    setError(undefined)
    try {
      await (what === "stop" ? client.stopSession(session.id) : client.startSession(session.id))
    } catch (e) {
      setError(errorText(e))
    } finally {
      setBusy(undefined)
    }
  }
  return (
    <div class="agent-bar" aria-label="Agent">
      <span class="agent-fact" data-agent={session.agent}>
        <span class="fact-label">agent</span> <strong class="agent-id">{session.agent}</strong>
      </span>
      {session.runner !== null && (
        <span class="agent-fact" data-runner={session.runner}>
          <span class="fact-label">runner</span> <span class="runner-name">{runner?.name ?? session.runner}</span>
          {runner !== undefined && !runner.online && <span class="muted"> (offline)</span>}
        </span>
      )}
      {session.workspace !== null && (
        <span class="agent-fact" title={session.workspace.path ?? "the worktree is being made"}>
          <span class="fact-label">branch</span> <code class="branch">{session.workspace.branch}</code>
        </span>
      )}
      <span class="agent-actions">
        {running && (
          <button type="button" class="button small danger" disabled={busy !== undefined} onClick={() => void act("stop")}
            title="Stop the agent and everything it started; the transcript and the worktree stay">
            Stop
          </button>
        )}
        {startable && (
          <button type="button" class="button small primary" disabled={busy !== undefined} onClick={() => void act("start")}
            title="Start the agent again in the same worktree (a new conversation)">
            {startLabel}
          </button>
        )}
      </span>
      {error && <p class="inline-error" role="alert">{error}</p>}
    </div>
  )
}

/** The bootstrap timeout when the server's is not known (the record does not carry it). */
export const DEFAULT_BOOTSTRAP_TIMEOUT_MS = 180_000

const AGENT_COMMANDS = [
  "npx -y @agentclientprotocol/claude-agent-acp",
  "npx -y @zed-industries/codex-acp",
  "gemini --acp"
]

/** The command that makes an agent this session's sandbox. */
export const sandboxCommand = (origin: string, sessionId: string, token: string | undefined) =>
  `npx rein-sandbox --url ${origin} --session ${sessionId}${token !== undefined ? ` --token ${token}` : ""} -- <agent command>`

/** For a session with no agent and no runner, still waiting for its sandbox. */
export const ConnectSandbox = ({ session, authOn }: { session: Session; authOn: boolean }) => {
  const now = useNow(1000)
  const [copied, setCopied] = useState(false)
  const token = sandboxTokenFor(session.id)
  const command = sandboxCommand(location.origin, session.id, token)
  const left = session.createdAt + DEFAULT_BOOTSTRAP_TIMEOUT_MS - now
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(command)
      setCopied(true)
      setTimeout(() => setCopied(false), 1500)
    } catch {
      // no clipboard (plain HTTP off localhost): the command is selectable
    }
  }
  return (
    <section class="connect-sandbox" aria-label="Connect an agent">
      <p class="connect-lead">
        No agent runs for this session. Start one in your repository with:
      </p>
      <div class="command-line">
        <pre class="sandbox-command"><code>{command}</code></pre>
        <button type="button" class="button small" onClick={() => void copy()}>{copied ? "Copied" : "Copy"}</button>
      </div>
      <p class="muted connect-hint">
        Replace <code>&lt;agent command&gt;</code> with an ACP agent, e.g.{" "}
        {AGENT_COMMANDS.map((c, i) => <>{i > 0 && ", "}<code>{c}</code></>)}; add <code>--cwd &lt;dir&gt;</code> to run it elsewhere than the current directory.
        {authOn && token === undefined && <> The server needs a token: add <code>--token</code> with this session's sandbox token (answered when it was created) or the server token.</>}
      </p>
      <p class="bootstrap-left" data-left-ms={Math.max(0, left)}>
        {left > 0
          ? <>About <strong>{minutesSeconds(left)}</strong> left before the session is removed if no agent connects (bootstrap timeout, 180 s by default).</>
          : <>Its bootstrap timeout (180 s by default) has about passed: the session is removed unless the server allows longer.</>}
      </p>
    </section>
  )
}
