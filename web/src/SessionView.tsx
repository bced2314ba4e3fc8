/**
 * One session: its transcript, live from `/sessions/:id/stream` and paged (only its last page at
 * first, older pages as the reader scrolls up; only what is near the view in the DOM), a prompt
 * box and an Abort button. Typing re-renders the composer only, never the transcript.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks"
import type { Artifact, ArtifactsState, ReinClient, Session } from "../../src/client/index.js"
import { formatCost, ReinError } from "../../src/client/index.js"
import { AgentBar, ConnectSandbox } from "./AgentControls.js"
import { ChangesView, changesOf } from "./Changes.js"
import { patchFiles } from "./Diff.js"
import { changedFiles, FilesView } from "./Files.js"
import { fullTime } from "./format.js"
import { usePagedTranscript } from "./paging.js"
import { SessionStateBadge } from "./SessionList.js"
import { Transcript } from "./Transcript.js"

const connectionLabel = (state: ArtifactsState | undefined): { text: string; tone: string } => {
  if (state === undefined) return { text: "Connecting…", tone: "pending" }
  const c = state.connection
  switch (c.status) {
    case "connecting":
      return { text: "Connecting…", tone: "pending" }
    case "open":
      return state.synced ? { text: "Live", tone: "ok" } : { text: "Loading history…", tone: "pending" }
    case "reconnecting":
      return { text: `Reconnecting… (attempt ${c.attempt})`, tone: "warn" }
    case "gone":
    case "removed":
      return { text: "Session deleted", tone: "bad" }
    case "failed":
      return { text: `Stream refused: ${c.error?.message ?? "error"}`, tone: "bad" }
    case "closed":
      return { text: "Closed", tone: "bad" }
    default:
      // A final state of the command stream (`superseded`): never an artifact stream's.
      return { text: "Closed", tone: "bad" }
  }
}

const commandError = (e: unknown): string => {
  if (e instanceof ReinError) {
    if (e.code === "no_sandbox") return "No agent is connected to this session, so it cannot take commands."
    return `${e.message} (${e.status === 0 ? "network" : e.status} ${e.code})`
  }
  return String(e)
}

/**
 * A phone or tablet: a touch screen without a hover pointer. Focusing the prompt there opens the
 * on-screen keyboard, which covers what the session is asking (a permission request), so the
 * prompt box is focused on opening a session only where a keyboard does not cover anything.
 */
const touchOnly = () =>
  typeof matchMedia === "function" && (matchMedia("(hover: none) and (pointer: coarse)").matches || matchMedia("(max-width: 760px)").matches)

/**
 * The prompt box, Send and Abort. It holds what is typed, so typing re-renders it alone.
 * `onSend`: a prompt is being sent (the transcript follows again).
 */
const Composer = (
  { client, sessionId, gone, status, onSend }: {
    client: ReinClient
    sessionId: string
    gone: boolean
    status: Session["status"] | undefined
    onSend: () => void
  }
) => {
  const [prompt, setPrompt] = useState("")
  const [sending, setSending] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const promptBox = useRef<HTMLTextAreaElement>(null)

  useEffect(() => {
    if (!touchOnly()) promptBox.current?.focus()
  }, [sessionId])

  const run = async (what: () => Promise<void>) => {
    setSending(true)
    setError(undefined)
    try {
      await what()
      return true
    } catch (e) {
      setError(commandError(e))
      return false
    } finally {
      setSending(false)
    }
  }

  const send = async (e?: Event) => {
    e?.preventDefault()
    const text = prompt.trim()
    if (text === "" || sending) return
    onSend()
    if (await run(() => client.prompt(sessionId, text))) setPrompt("")
  }

  const abort = () => run(() => client.abort(sessionId))

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) void send(e)
  }

  return (
    <form class="composer" onSubmit={send}>
      <label class="sr-only" for="prompt">Prompt</label>
      <textarea
        id="prompt"
        ref={promptBox}
        rows={2}
        placeholder={gone ? "This session was deleted" : "Ask the agent… (Enter to send, Shift+Enter for a new line)"}
        value={prompt}
        disabled={gone}
        onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)}
        onKeyDown={onKeyDown}
      />
      <div class="composer-actions">
        <button type="submit" class="button primary" disabled={gone || sending || prompt.trim() === ""}>Send</button>
        <button type="button" class="button danger" disabled={gone || status !== "live"} onClick={abort} title="Ask the agent to stop this turn">
          Abort
        </button>
      </div>
      {error && <p class="inline-error" role="alert">{error}</p>}
    </form>
  )
}

export const SessionView = (
  { client, sessionId, session, authOn = false }: { client: ReinClient; sessionId: string; session: Session | undefined; authOn?: boolean }
) => {
  const paged = usePagedTranscript(client, sessionId)
  const { state, artifacts } = paged
  const follow = useRef(true)
  const onSend = useCallback(() => void (follow.current = true), [])
  const [tab, setTab] = useState<"transcript" | "files" | "changes">("transcript")
  const files = useMemo(() => changedFiles(artifacts), [artifacts])
  const changes = useMemo(() => changesOf(artifacts), [artifacts])
  const changeCount = useMemo(() => (typeof changes?.diff === "string" ? patchFiles(changes.diff).length : undefined), [changes])
  // The Changes tab: for a session with a worktree (a runner started its agent), or one that has a diff.
  const hasChanges = changes !== undefined || (session?.workspace ?? null) !== null || (session?.agent ?? null) !== null

  // Plans whose turn was stopped: a `turn_stopped` comes after them before the next prompt.
  const stoppedPlans = useMemo(() => {
    const stopped = new Set<number>()
    let open: Array<number> = []
    for (const a of artifacts) {
      if (a.kind === "plan") open.push(a.seq)
      else if (a.kind === "user_message") open = []
      else if (a.kind === "turn_stopped") {
        for (const seq of open) stopped.add(seq)
        open = []
      }
    }
    return stopped
  }, [artifacts])

  const toolCalls = useMemo(() => {
    const m = new Map<string, Artifact>()
    for (const a of artifacts) if (a.kind === "tool_call") m.set(String(a.toolCallId), a)
    return m
  }, [artifacts])

  const conn = connectionLabel(state)
  const gone = state?.connection.status === "gone"
  const status = session?.status

  return (
    <section class="session-view" aria-label={`Session ${sessionId}`}>
      <header class="session-header">
        <div class="session-title">
          <a href="#/" class="back" aria-label="Back to the sessions">← Sessions</a>
          <h1>{sessionId}</h1>
          {session && <SessionStateBadge s={session} />}
          <span class={`connection tone-${conn.tone}`} role="status" data-connection={state?.connection.status ?? "connecting"}>
            <span class="dot" aria-hidden="true" />
            {conn.text}
          </span>
        </div>
        {session && (
          <p class="session-meta">
            {session.summary ? <span class="summary">{session.summary}</span> : <span class="muted">No summary yet</span>}
            {session.project && <span class="project">project {session.project}</span>}
            <span class="muted">created {fullTime(session.createdAt)}</span>
            {formatCost(session.usage.costUsd) !== null && (
              <span class="session-cost" title={`${session.usage.inputTokens} input, ${session.usage.outputTokens} output tokens`}>
                cost {formatCost(session.usage.costUsd)}
              </span>
            )}
          </p>
        )}
        {session && <AgentBar client={client} session={session} />}
        {session && session.agent === null && session.runner === null && session.status === "bootstrapping" && (
          <ConnectSandbox session={session} authOn={authOn} />
        )}
        <div class="tabs" role="tablist" aria-label="Session views">
          <button type="button" role="tab" class="tab" aria-selected={tab === "transcript"} onClick={() => setTab("transcript")}>
            Transcript
          </button>
          <button type="button" role="tab" class="tab" aria-selected={tab === "files"} onClick={() => setTab("files")}>
            Files ({files.length})
          </button>
          {hasChanges && (
            <button type="button" role="tab" class="tab" aria-selected={tab === "changes"} onClick={() => setTab("changes")}>
              Changes{changeCount !== undefined && ` (${changeCount})`}
            </button>
          )}
        </div>
      </header>

      {tab === "files" && (
        <div class="files-panel" role="tabpanel" aria-label="Files">
          <FilesView files={files} partial={paged.more} />
        </div>
      )}
      {tab === "changes" && (
        <div class="files-panel" role="tabpanel" aria-label="Changes">
          <ChangesView changes={changes} />
        </div>
      )}
      <Transcript
        client={client}
        sessionId={sessionId}
        artifacts={artifacts}
        gap={paged.gap}
        more={paged.more}
        loading={paged.loading}
        error={paged.error}
        loadOlder={paged.loadOlder}
        toolCalls={toolCalls}
        stoppedPlans={stoppedPlans}
        synced={state?.synced === true}
        bootstrapping={status === "bootstrapping"}
        hidden={tab !== "transcript"}
        follow={follow}
      />
      <Composer client={client} sessionId={sessionId} gone={gone} status={status} onSend={onSend} />
    </section>
  )
}
