/**
 * Browser notifications (the Notification API) for what needs a person: a permission request,
 * a turn that ended, an error (a turn that ended in one, an agent that crashed or could not
 * start), in a session the user is not looking at
 * (another one open, or the tab hidden). Judged from the session list's records: only changes
 * seen live count, so a page load or a reconnect (whose snapshot is the new baseline) shows
 * nothing for what was already there. The choice is remembered across reloads.
 */
import { useEffect, useRef, useState } from "preact/hooks"
import { type Session, type SessionsState, stateOf } from "../../src/client/index.js"
import { stored } from "./attention.js"
import { navigate, sessionHref } from "./route.js"

const KEY = "rein.notify"

const supported = () => typeof Notification !== "undefined"

export interface Alert {
  readonly id: string
  readonly title: string
  readonly body: string
}

/** What changed from `old` to `now` that someone should hear about (undefined: nothing). */
export const alertFor = (old: Session | undefined, now: Session): Alert | undefined => {
  const before = old?.pendingPermissions ?? 0
  if (now.pendingPermissions > before) {
    const n = now.pendingPermissions
    return { id: now.id, title: `${now.id} needs approval`, body: n === 1 ? "A permission request is waiting for you." : `${n} permission requests are waiting for you.` }
  }
  // An error: a turn ended in one, or the agent died or could not start (the session disconnects
  // with the error as its last stop reason). Needs someone, as a pending request does.
  if (old !== undefined && stateOf(now).key === "error" && stateOf(old).key !== "error") {
    return {
      id: now.id,
      title: `${now.id}: error`,
      body: now.status === "live" || now.status === "idle" ? "The turn ended in an error." : "The agent stopped: it crashed or could not start."
    }
  }
  // A turn ends: a live session becomes idle (or a new stop reason arrives without one).
  const ended = (old?.status === "live" && now.status === "idle") ||
    (old !== undefined && now.lastStopReason !== old.lastStopReason && now.lastStopReason !== null)
  if (!ended || now.lastStopReason === "error") return undefined
  if (now.lastStopReason === "cancelled") return { id: now.id, title: `${now.id} stopped`, body: "The turn was stopped." }
  return { id: now.id, title: `${now.id} is done`, body: now.summary ?? "The agent finished its turn." }
}

export const useNotifications = (state: SessionsState | undefined, selectedId: string | undefined) => {
  const [enabled, setEnabled] = useState(() => supported() && Notification.permission === "granted" && stored.get(KEY) === "on")
  const [denied, setDenied] = useState(() => supported() && Notification.permission === "denied")
  // Browsers offer notifications only to a secure context (HTTPS, or localhost): over plain HTTP
  // on a LAN address the permission reads "denied" though no setting blocks it.
  const insecure = typeof window !== "undefined" && window.isSecureContext === false
  /** The records as last seen live; undefined until a complete snapshot arrives. */
  const seen = useRef<Map<string, Session> | undefined>(undefined)
  const selected = useRef(selectedId)
  selected.current = selectedId

  useEffect(() => {
    if (state === undefined || !state.synced) {
      // Reconnecting: the next snapshot is a new baseline, not news.
      seen.current = undefined
      return
    }
    const next = new Map(state.sessions.map((s) => [s.id, s]))
    const previous = seen.current
    seen.current = next
    if (previous === undefined || !enabled) return
    for (const s of state.sessions) {
      const old = previous.get(s.id)
      if (old === s) continue
      const alert = alertFor(old, s)
      if (alert === undefined) continue
      // The user is looking at it already.
      if (alert.id === selected.current && document.visibilityState === "visible") continue
      show(alert)
    }
  }, [state, enabled])

  const toggle = async () => {
    if (!supported()) return
    if (enabled) {
      stored.set(KEY, "off")
      setEnabled(false)
      return
    }
    const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission()
    setDenied(permission === "denied")
    if (permission !== "granted") return
    stored.set(KEY, "on")
    setEnabled(true)
  }

  /** Why notifications cannot be turned on; undefined when they can. */
  const blocked = insecure
    ? "Notifications need a secure context: open the dashboard over HTTPS or on localhost"
    : denied
    ? "Notifications are blocked for this site in the browser's settings"
    : undefined
  // Shown when insecure even where the API is hidden, so the button can say why it is off.
  return { supported: supported() || insecure, enabled, denied, blocked, toggle }
}

const show = (alert: Alert) => {
  try {
    const n = new Notification(alert.title, { body: alert.body, tag: `rein-${alert.id}` })
    n.onclick = () => {
      window.focus()
      navigate(sessionHref(alert.id))
      n.close()
    }
  } catch {
    // A browser that only notifies from a service worker: nothing to show here.
  }
}
