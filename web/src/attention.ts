/**
 * What a person reads from a session record: its state in words, what it cost, and whether it
 * needs them (issue 16). The server counts; this only names and orders.
 */
import type { Session } from "../../src/client/index.js"

export type StateKey = "approval" | "disconnected" | "error" | "working" | "done" | "starting"

export interface SessionState {
  readonly key: StateKey
  readonly label: string
}

/** The one word (or two) that says what the session is doing, most urgent first. */
export const stateOf = (s: Session): SessionState => {
  if (s.pendingPermissions > 0) return { key: "approval", label: `Needs approval (${s.pendingPermissions})` }
  if (s.status === "disconnected") return { key: "disconnected", label: "disconnected" }
  if (s.status === "live") return { key: "working", label: "working" }
  if (s.lastStopReason === "error") return { key: "error", label: "error" }
  if (s.status === "idle") return { key: "done", label: "done" }
  return { key: "starting", label: "starting" }
}

export const needsApproval = (s: Session): boolean => s.pendingPermissions > 0

/** Dollars with cents, or "–" when the agent never reported a cost. */
export const formatCost = (usd: number | null | undefined): string =>
  typeof usd !== "number" ? "–" : usd > 0 && usd < 0.01 ? "<$0.01" : `$${usd.toFixed(2)}`

/** The sum of the costs the sessions reported; null when none did. */
export const totalCost = (sessions: ReadonlyArray<Session>): number | null => {
  let total: number | null = null
  for (const s of sessions) if (typeof s.usage.costUsd === "number") total = (total ?? 0) + s.usage.costUsd
  return total
}

/** Newest first; with `approvalFirst`, the sessions that need approval before all others. */
export const ordered = (sessions: ReadonlyArray<Session>, approvalFirst: boolean): Array<Session> => {
  const newest = [...sessions].reverse()
  if (!approvalFirst) return newest
  return [...newest.filter(needsApproval), ...newest.filter((s) => !needsApproval(s))]
}

/** `document.title`: the number of sessions waiting for an approval, in front. */
export const titleFor = (sessions: ReadonlyArray<Session>): string => {
  const n = sessions.filter(needsApproval).length
  return n > 0 ? `(${n}) Rein` : "Rein"
}

/** A preference kept across reloads (localStorage; in memory only when storage is disabled). */
export const stored = {
  get: (key: string): string | null => {
    try {
      return localStorage.getItem(key)
    } catch {
      return null
    }
  },
  set: (key: string, value: string) => {
    try {
      localStorage.setItem(key, value)
    } catch {
      // storage disabled: the choice lasts for this page
    }
  }
}
