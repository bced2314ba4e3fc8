/**
 * What the dashboard alone needs from the session records: who needs you (the title count) and
 * preferences kept across reloads. The state in words, the list's order and costs are the shared
 * rule in `src/client/sessionState.ts` (the same for `rein`).
 */
import { groupOf, type Session } from "../../src/client/index.js"

/** A pending permission, or an error (a turn that ended in one, an agent that crashed or could not start). */
export const needsYou = (s: Session): boolean => groupOf(s) === "needs-you"

/** `document.title`: the number of sessions that need you, in front. */
export const titleFor = (sessions: ReadonlyArray<Session>): string => {
  const n = sessions.filter(needsYou).length
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
