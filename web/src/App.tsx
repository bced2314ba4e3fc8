import { useEffect, useMemo, useState } from "preact/hooks"
import { formatCost, ReinClient, type SessionsState, totalCost } from "../../src/client/index.js"
import { needsYou, titleFor } from "./attention.js"
import { useWatch } from "./hooks.js"
import { useNotifications } from "./notify.js"
import { navigate, readToken, runnersHref, saveToken, useRoute } from "./route.js"
import { RunnersView } from "./Runners.js"
import { SessionList } from "./SessionList.js"
import { SessionView } from "./SessionView.js"

/** `lastHeartbeat` changes are not streamed (the other record fields are): refresh them now and then. */
const HEARTBEAT_POLL_MS = 10_000

const TokenPrompt = ({ state }: { state: SessionsState }) => {
  const [value, setValue] = useState("")
  const refused = state.connection.error?.status === 401 || state.connection.error?.status === 403
  return (
    <div class="banner bad" role="alert">
      <p>
        {refused
          ? "This server requires a token. Open the dashboard as http://host:port/#token=<token>, or enter it here."
          : `Cannot read the session list: ${state.connection.error?.message ?? state.connection.status}`}
      </p>
      {refused && (
        <form
          class="token-form"
          onSubmit={(e) => {
            e.preventDefault()
            saveToken(value.trim())
            location.reload()
          }}
        >
          <input type="password" aria-label="Token" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
          <button type="submit" class="button primary">Use token</button>
        </form>
      )}
    </div>
  )
}

export const App = () => {
  const [token] = useState(readToken)
  const client = useMemo(() => new ReinClient({ baseUrl: location.origin, token }), [token])
  const route = useRoute()
  const sessions = useWatch(() => client.watchSessions(), [client])
  const [heartbeats, setHeartbeats] = useState<ReadonlyMap<string, number>>(new Map())

  useEffect(() => {
    let stopped = false
    const poll = async () => {
      try {
        const list = await client.listSessions()
        if (!stopped) setHeartbeats(new Map(list.map((s) => [s.id, s.lastHeartbeat])))
      } catch {
        // the watch shows connection problems
      }
    }
    const timer = setInterval(poll, HEARTBEAT_POLL_MS)
    return () => {
      stopped = true
      clearInterval(timer)
    }
  }, [client])

  const selected = route.sessionId
  const session = sessions?.sessions.find((s) => s.id === selected)
  const listStatus = sessions?.connection.status
  const all = sessions?.sessions ?? []
  const waiting = all.filter(needsYou).length
  const total = formatCost(totalCost(all))
  const notifications = useNotifications(sessions, selected)

  useEffect(() => {
    document.title = titleFor(all)
  }, [all])

  // When the open session is deleted (here or elsewhere), go back to the list.
  useEffect(() => {
    if (selected !== undefined && sessions?.synced && session === undefined) {
      const timer = setTimeout(() => navigate("#/"), 1500)
      return () => clearTimeout(timer)
    }
  }, [selected, sessions?.synced, session])

  return (
    <div class={`app${selected !== undefined || route.runners === true ? " has-session" : ""}`}>
      <aside class="sidebar">
        <header class="brand">
          <a href="#/" class="brand-link">
            <img src="/favicon.svg" alt="" width={22} height={22} /> Rein
          </a>
          <a href={runnersHref} class="runners-link" aria-current={route.runners === true ? "page" : undefined}>Runners</a>
          <span
            class={`connection tone-${listStatus === "open" ? "ok" : listStatus === "reconnecting" ? "warn" : listStatus === "failed" ? "bad" : "pending"}`}
            role="status"
            data-connection={listStatus ?? "connecting"}
          >
            <span class="dot" aria-hidden="true" />
            {listStatus === "open" ? "Live" : listStatus === "reconnecting" ? "Reconnecting…" : listStatus === "failed" ? "Refused" : "Connecting…"}
          </span>
        </header>
        <div class="overview">
          <span class={`waiting${waiting > 0 ? " has-waiting" : ""}`} data-waiting={waiting}>
            {waiting > 0 ? `${waiting} need${waiting === 1 ? "s" : ""} you` : "Nothing needs you"}
          </span>
          {total !== null
            ? (
              <span class="total-cost" data-total={total} title="What every session's turns cost, summed">
                total {total}
              </span>
            )
            : <span class="total-cost" />}
          {notifications.supported && (
            <button
              type="button"
              class={`button small ${notifications.enabled ? "primary" : ""} notify-toggle`}
              aria-pressed={notifications.enabled}
              aria-describedby={notifications.blocked !== undefined ? "notify-blocked" : undefined}
              disabled={notifications.blocked !== undefined && !notifications.enabled}
              title={notifications.blocked}
              onClick={() => void notifications.toggle()}
            >
              {notifications.enabled ? "Notifying" : "Notify me"}
            </button>
          )}
          {notifications.blocked !== undefined && !notifications.enabled && (
            <span id="notify-blocked" class="notify-blocked muted">{notifications.blocked}</span>
          )}
        </div>
        {sessions && (sessions.connection.status === "failed" || sessions.connection.status === "gone") && <TokenPrompt state={sessions} />}
        <SessionList client={client} state={sessions} selectedId={selected} heartbeats={heartbeats} />
      </aside>
      <main class="main">
        {selected !== undefined
          ? <SessionView key={selected} client={client} sessionId={selected} session={session} authOn={token !== undefined} />
          : route.runners === true
          ? <RunnersView client={client} />
          : (
            <div class="placeholder">
              <h1>Rein</h1>
              <p>Pick a session on the left, or create one. Everything here is live: sessions, transcripts, permission requests.</p>
              <p class="muted">Tip: <code>npm run demo</code> starts a simulated agent in a session named <code>demo</code>.</p>
            </div>
          )}
      </main>
    </div>
  )
}
