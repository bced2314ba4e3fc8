/**
 * The session list, live from `/sessions/stream`, one compact row a session: its state as a person
 * reads it (needs approval, error, working, stopped, done, disconnected), its cost when one was
 * reported, summary, project and last activity. Ordered by the shared rule (needs you, then
 * working, then the rest by last activity); filtered by status and by project; a pending request
 * answered from its row; "New session" (a dialog) and delete.
 */
import { useEffect, useRef, useState } from "preact/hooks"
import type { Artifact, ReinClient, Session, SessionsState } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { formatCost, type Group, groupOf, groups, lastActivity, orderSessions, stateOf } from "../../src/client/index.js"
import { PermissionActions } from "./ArtifactView.js"
import { fullTime, relativeTime } from "./format.js"
import { useNow } from "./hooks.js"
import { NewSession } from "./NewSession.js"
import { sessionHref } from "./route.js"

const groupLabels: Record<Group, string> = {
  "needs-you": "Needs you",
  working: "Working",
  idle: "Idle",
  disconnected: "Disconnected"
}

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
  const [group, setGroup] = useState<Group | undefined>(undefined)
  const now = useNow(1000)
  const sessions = state?.sessions ?? []
  const projects = [...new Set(sessions.map((s) => s.project).filter((p): p is string => p !== null))].sort()
  const inProject = project === "" ? sessions : sessions.filter((s) => s.project === project)
  const shown = orderSessions(inProject, group)
  const counts = new Map<Group, number>(groups.map((g) => [g, 0]))
  for (const s of inProject) counts.set(groupOf(s), (counts.get(groupOf(s)) ?? 0) + 1)
  const active = (s: Session) => Math.max(lastActivity(s), heartbeats.get(s.id) ?? 0)
  const filters: Array<[Group | undefined, string, number]> = [
    [undefined, "All", inProject.length],
    ...groups.map((g): [Group, string, number] => [g, groupLabels[g], counts.get(g) ?? 0])
  ]

  return (
    <section class="session-list" aria-label="Sessions">
      <div class="list-toolbar">
        <NewSession client={client} />
        <select value={project} onChange={(e) => setProject((e.target as HTMLSelectElement).value)} aria-label="Filter by project">
          <option value="">All projects</option>
          {projects.map((p) => <option value={p}>{p}</option>)}
        </select>
        <span class="muted count">{shown.length} of {sessions.length}</span>
      </div>
      <div class="status-filter" role="group" aria-label="Filter by status">
        {filters.map(([g, label, n]) => (
          <button
            type="button"
            class={`chip${g === group ? " on" : ""}`}
            aria-pressed={g === group}
            data-group={g ?? "all"}
            onClick={() => setGroup(g)}
          >
            {label}
            {(g === undefined || n > 0) && <span class="chip-count">{n}</span>}
          </button>
        ))}
      </div>
      {state?.synced && sessions.length === 0 && <p class="empty">No sessions yet. Start one with New session, or run <code>npm run demo</code>.</p>}
      {state?.synced && sessions.length > 0 && shown.length === 0 && <p class="empty">No session here.</p>}
      <ul class="sessions">
        {shown.map((s) => (
          <li class={`session-item state-${stateOf(s).key}${s.id === selectedId ? " selected" : ""}`} data-session={s.id} data-group={groupOf(s)}>
            <a href={sessionHref(s.id)} class="session-link" aria-current={s.id === selectedId ? "page" : undefined}>
              <span class="session-line">
                <strong class="session-id">{s.id}</strong>
                <SessionStateBadge s={s} />
              </span>
              <span class="session-line second">
                <span class="session-summary">{s.summary ?? <span class="muted">No summary</span>}</span>
                {s.project && <span class="project muted">{s.project}</span>}
              </span>
            </a>
            <span class="session-side">
              {formatCost(s.usage.costUsd) !== null && (
                <span class="session-cost" title={`${s.usage.inputTokens} input, ${s.usage.outputTokens} output tokens`}>
                  {formatCost(s.usage.costUsd)}
                </span>
              )}
              <time
                class="session-time muted"
                dateTime={new Date(active(s)).toISOString()}
                title={`created ${fullTime(s.createdAt)}; last activity ${fullTime(active(s))}`}
              >
                {relativeTime(active(s), now)}
              </time>
              <DeleteButton client={client} id={s.id} />
            </span>
            {s.pendingPermissions > 0 && <RowApproval client={client} session={s} />}
          </li>
        ))}
      </ul>
    </section>
  )
}
