/**
 * What server instances over one PostgreSQL database tell each other: the NOTIFY payloads on the
 * cluster channel, and the body of a change-log row (`rein_changes`). The store writes both in
 * the transaction of the change they describe; `Cluster` reads them. Both are JSON, between
 * instances of one version.
 */
import type { CommittedChange } from "../Domain/Artifact.js"
import type { SessionFields } from "../Domain/Session.js"
import type { Turn } from "../Domain/Turn.js"

/** A NOTIFY payload on the cluster channel. */
export type Announcement =
  /** The session was committed (or removed) up to `rev`: its log rows tell what changed. */
  | { readonly type: "session"; readonly id: string; readonly rev: number }
  /** The session's sandbox connected to `instance`: any other instance's connection to it ends. */
  | { readonly type: "sandbox"; readonly id: string; readonly instance: string }
  /** Commands wait in `rein_commands` for the sandboxes `instance` holds. */
  | { readonly type: "commands"; readonly instance: string }
  /** Jobs wait in `rein_runner_jobs` for the runners whose job streams `instance` holds. */
  | { readonly type: "jobs"; readonly instance: string }
  /** `instance` checking that its listening connection still hears: the `n`th ping it sent. */
  | { readonly type: "ping"; readonly instance: string; readonly n: number }

export const encodeAnnouncement = (a: Announcement): string => JSON.stringify(a)

/** A payload as sent, or undefined when it is not one of ours. */
export const decodeAnnouncement = (payload: string): Announcement | undefined => {
  try {
    const a = JSON.parse(payload) as Announcement | null
    return typeof a === "object" && a !== null && typeof a.type === "string" ? a : undefined
  } catch {
    return undefined
  }
}

/** A change-log row's body: what one commit (or removal) did, for the other instances. */
export interface LogBody {
  readonly removed?: true
  readonly fields?: SessionFields
  readonly lastHeartbeat?: number
  readonly changes?: ReadonlyArray<CommittedChange>
  readonly turn?: Turn | undefined
}

/** One commit (or removal) of a session, as logged: it took the session from `revFrom - 1` to `rev`. */
export interface LogEntry {
  readonly revFrom: number
  readonly rev: number
  readonly body: LogBody
}
