/**
 * The session list, live from `/sessions/stream`: each session's state as a person reads it
 * (needs approval, working, done, error, disconnected), its cost, summary, project and times;
 * the sessions that need approval first (a toggle), answered from their row; a project filter;
 * create and delete.
 */
import { useEffect, useRef, useState } from "preact/hooks"
import type { Artifact, ReinClient, Session, SessionsState } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { formatCost, ordered, stateOf, stored } from "./attention.js"
import { PermissionActions } from "./ArtifactView.js"
import { clockTime, fullTime, relativeTime } from "./format.js"
import { useNow } from "./hooks.js"
import { navigate, sessionHref } from "./route.js"

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/
const APPROVAL_FIRST_KEY = "rein.approvalFirst"

/** The session's state in words; `data-status` keeps the record's own status. */
export const SessionStateBadge = ({ s }: { s: Session }) => {
  const state = stateOf(s)
  return (
    <span class={`badge session-status state-${state.key}`} data-state={state.key} data-status={s.status} title={`status: ${s.status}`}>
      {state.label}
    </span>
  )
}

const isPending = (a: Artifact) => a.kind === "permission" && (a.decision === null || a.decision === undefined)

/**
 * The oldest unanswered permission request of a session, answerable from its row. Read when the
 * record's count changes (the list stream carries the count, not the requests).
 */
const RowApproval = ({ client, session }: { client: ReinClient; session: Session }) => {
  const [request, setRequest] = useState<Artifact | undefined>()
  useEffect(() => {
    let stale = false
    client.artifacts(session.id).then(
      (artifacts) => {
        if (!stale) setRequest(artifacts.find(isPending))
      },
      () => {
        if (!stale) setRequest(undefined)
      }
    )
    return () => {
      stale = true
    }
  }, [client, session.id, session.pendingPermissions])
  if (request === undefined) return null
  return (
    <div class="row-approval" aria-label={`Approve from the list: ${String(request.title ?? "")}`} data-request-id={String(request.requestId)}>
      <p class="row-approval-title">{String(request.title ?? "")}</p>
      <PermissionActions a={request} client={client} sessionId={session.id} />
    </div>
  )
}

const CreateForm = ({ client }: { client: ReinClient }) => {
  const [id, setId] = useState("")
  const [project, setProject] = useState("")
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const submit = async (e: Event) => {
    e.preventDefault()
    const trimmed = id.trim()
    if (!ID_PATTERN.test(trimmed) || trimmed === "stream") {
      setError("Use letters, digits and . _ : - (starting with a letter or digit); \"stream\" is reserved.")
      return
    }
    setBusy(true)
    setError(undefined)
    try {
      await client.createSession(trimmed, project.trim() ? { project: project.trim() } : {})
      setId("")
      navigate(sessionHref(trimmed))
    } catch (err) {
      setError(err instanceof ReinError ? err.message : String(err))
    } finally {
      setBusy(false)
    }
  }
  return (
    <form class="create-form" onSubmit={submit} aria-label="Create a session">
      <div class="field-row">
        <label>
          <span class="label">Session id</span>
          <input name="id" value={id} required placeholder="e.g. fix-login" onInput={(e) => setId((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          <span class="label">Project</span>
          <input name="project" value={project} placeholder="optional" onInput={(e) => setProject((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      <button type="submit" class="button primary" disabled={busy}>Create session</button>
      {error && <p class="inline-error" role="alert">{error}</p>}
    </form>
  )
}

const DeleteButton = ({ client, id }: { client: ReinClient; id: string }) => {
  const [armed, setArmed] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const timer = useRef<ReturnType<typeof setTimeout>>()
  useEffect(() => () => clearTimeout(timer.current), [])
  const click = async () => {
    if (!armed) {
      setArmed(true)
      timer.current = setTimeout(() => setArmed(false), 4000)
      return
    }
    clearTimeout(timer.current)
    setArmed(false)
    try {
      await client.deleteSession(id)
    } catch (e) {
      if (!(e instanceof ReinError && e.status === 404)) setError(e instanceof Error ? e.message : String(e))
    }
  }
  return (
    <>
      <button type="button" class={`button small ${armed ? "danger" : "ghost"}`} aria-label={armed ? `Confirm delete ${id}` : `Delete ${id}`} onClick={click}>
        {armed ? "Confirm delete" : "Delete"}
      </button>
      {error && <span class="inline-error" role="alert">{error}</span>}
    </>
  )
}

export const SessionList = (
  { client, state, selectedId, heartbeats }: {
    client: ReinClient
    state: SessionsState | undefined
    selectedId: string | undefined
    heartbeats: ReadonlyMap<string, number>
  }
) => {
  const [project, setProject] = useState("")
  const [approvalFirst, setApprovalFirst] = useState(() => stored.get(APPROVAL_FIRST_KEY) !== "off")
  const now = useNow(1000)
  const sessions = state?.sessions ?? []
  const projects = [...new Set(sessions.map((s) => s.project).filter((p): p is string => p !== null))].sort()
  const shown = project === "" ? sessions : sessions.filter((s) => s.project === project)
  const toggleApprovalFirst = (on: boolean) => {
    setApprovalFirst(on)
    stored.set(APPROVAL_FIRST_KEY, on ? "on" : "off")
  }
  const heartbeat = (s: Session) => Math.max(s.lastHeartbeat, heartbeats.get(s.id) ?? 0)

  return (
    <section class="session-list" aria-label="Sessions">
      <CreateForm client={client} />
      <div class="list-toolbar">
        <label>
          <span class="label">Project</span>
          <select value={project} onChange={(e) => setProject((e.target as HTMLSelectElement).value)} aria-label="Filter by project">
            <option value="">All projects</option>
            {projects.map((p) => <option value={p}>{p}</option>)}
          </select>
        </label>
        <label class="check">
          <input type="checkbox" checked={approvalFirst} onChange={(e) => toggleApprovalFirst((e.target as HTMLInputElement).checked)} />
          <span>Needs approval first</span>
        </label>
        <span class="muted count">{shown.length} of {sessions.length}</span>
      </div>
      {state?.synced && sessions.length === 0 && <p class="empty">No sessions yet. Create one above, or run <code>npm run demo</code>.</p>}
      <ul class="sessions">
        {ordered(shown, approvalFirst).map((s) => (
          <li class={`session-item state-${stateOf(s).key}${s.id === selectedId ? " selected" : ""}`} data-session={s.id}>
            <a href={sessionHref(s.id)} class="session-link" aria-current={s.id === selectedId ? "page" : undefined}>
              <span class="session-line">
                <strong class="session-id">{s.id}</strong>
                <SessionStateBadge s={s} />
                <span class="session-cost" title={`${s.usage.inputTokens} input, ${s.usage.outputTokens} output tokens`}>
                  {formatCost(s.usage.costUsd)}
                </span>
              </span>
              <span class="session-summary">{s.summary ?? <span class="muted">No summary</span>}</span>
              <span class="session-times muted">
                {s.project && <span class="project">{s.project} · </span>}
                <time dateTime={new Date(s.createdAt).toISOString()} title={fullTime(s.createdAt)}>created {clockTime(s.createdAt)}</time>
                {" · "}
                <time dateTime={new Date(heartbeat(s)).toISOString()} title={`last heartbeat ${fullTime(heartbeat(s))}`}>
                  heartbeat {relativeTime(heartbeat(s), now)}
                </time>
              </span>
            </a>
            <DeleteButton client={client} id={s.id} />
            {s.pendingPermissions > 0 && <RowApproval client={client} session={s} />}
          </li>
        ))}
      </ul>
    </section>
  )
}
