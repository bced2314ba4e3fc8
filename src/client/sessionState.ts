/**
 * What a person reads from a session record, one rule for the dashboard and `rein` (issue 21):
 * its state in words, the group it belongs to (the status filter), the order of a list, and what
 * it cost. The server counts; this only names and orders. Plain functions: no Effect, no DOM.
 */
import type { Session } from "../Domain/Session.js"

export type StateKey = "approval" | "error" | "working" | "starting" | "stopped" | "done" | "disconnected"

export interface SessionState {
  readonly key: StateKey
  readonly label: string
}

/**
 * The one word (or two) that says what the session is doing, most urgent first. An agent that
 * died or could not start leaves `lastStopReason: "error"`, so a disconnected session whose agent
 * crashed reads "error", not "disconnected": it needs someone.
 */
export const stateOf = (s: Pick<Session, "status" | "pendingPermissions" | "lastStopReason">): SessionState => {
  if (s.pendingPermissions > 0) return { key: "approval", label: `Needs approval (${s.pendingPermissions})` }
  if (s.lastStopReason === "error" && s.status !== "live") return { key: "error", label: "error" }
  if (s.status === "live") return { key: "working", label: "working" }
  if (s.status === "disconnected") return { key: "disconnected", label: "disconnected" }
  if (s.status === "idle") {
    return s.lastStopReason === "cancelled" ? { key: "stopped", label: "stopped" } : { key: "done", label: "done" }
  }
  return { key: "starting", label: "starting" }
}

/** The status filter's groups, in the list's order. */
export const groups = ["needs-you", "working", "idle", "disconnected"] as const
export type Group = typeof groups[number]

export const groupOf = (s: Pick<Session, "status" | "pendingPermissions" | "lastStopReason">): Group => {
  switch (stateOf(s).key) {
    case "approval":
    case "error":
      return "needs-you"
    case "working":
    case "starting":
      return "working"
    case "disconnected":
      return "disconnected"
    default:
      return "idle"
  }
}

/** When the session last did something: its sandbox's last event, else its creation. */
export const lastActivity = (s: Pick<Session, "createdAt" | "lastHeartbeat">): number =>
  Math.max(s.createdAt, s.lastHeartbeat)

/**
 * The list's order: the sessions that need you, then those working, then the rest; within each,
 * the most recently active first (ties: the newest created first, then by id, so the order is total).
 */
export const compareSessions = (a: Session, b: Session): number =>
  rank(groupOf(a)) - rank(groupOf(b)) || lastActivity(b) - lastActivity(a) || b.createdAt - a.createdAt ||
  (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

const rank = (g: Group): number => g === "needs-you" ? 0 : g === "working" ? 1 : 2

/** `sessions` in the list's order, only those of `group` when one is given. */
export const orderSessions = <S extends Session>(sessions: ReadonlyArray<S>, group?: Group): Array<S> =>
  (group === undefined ? [...sessions] : sessions.filter((s) => groupOf(s) === group)).sort(compareSessions)

/**
 * Dollars, one rule for every client: cents, and "<$0.01" for a cost too small to show in cents;
 * null when the agent never reported one (callers then leave the cost out rather than print a dash).
 */
export const formatCost = (usd: number | null | undefined): string | null =>
  typeof usd !== "number" ? null : usd > 0 && usd < 0.005 ? "<$0.01" : `$${usd.toFixed(2)}`

/** The sum of the costs the sessions reported; null when none did. */
export const totalCost = (sessions: ReadonlyArray<Pick<Session, "usage">>): number | null => {
  let total: number | null = null
  for (const s of sessions) if (typeof s.usage.costUsd === "number") total = (total ?? 0) + s.usage.costUsd
  return total
}
