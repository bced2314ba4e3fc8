/**
 * The attention view of the session list (`?attention=1`): only sessions that need someone.
 * Over a live feed, a session that starts needing someone enters the view as `created` and one
 * that stops leaves it as `removed`, so a client keeps the view exactly as it keeps the list.
 */
import { needsAttention, type Session } from "../Domain/Session.js"
import type { SessionNotice, Sink } from "../EventBus.js"

export interface SessionFilter {
  readonly project?: string | undefined
  /** Only the sessions that need someone (see `needsAttention`). */
  readonly attention?: boolean | undefined
}

export const matches = (filter: SessionFilter | undefined, s: Session): boolean =>
  (filter?.project === undefined || s.project === filter.project) && (filter?.attention !== true || needsAttention(s))

/**
 * Translates list notices into the view's, given the sessions in the view's snapshot; the
 * notices must be of the sessions the filter's project admits.
 */
export const view = (inView: ReadonlyArray<Session>, sink: Sink<SessionNotice>): Sink<SessionNotice> => {
  const ids = new Set(inView.map((s) => s.id))
  return {
    offer: (n) => {
      switch (n._tag) {
        case "created":
          if (!needsAttention(n.session)) return true
          ids.add(n.session.id)
          return sink.offer(n)
        case "removed":
          return !ids.delete(n.id) || sink.offer(n)
        case "updated": {
          const now = needsAttention(n.session)
          const was = ids.has(n.id)
          if (now === was) return !now || sink.offer(n)
          if (now) {
            ids.add(n.id)
            return sink.offer({ _tag: "created", session: n.session, rev: n.rev, project: n.project })
          }
          ids.delete(n.id)
          return sink.offer({ _tag: "removed", id: n.id, rev: n.rev, project: n.project })
        }
      }
    },
    end: (reason) => sink.end(reason)
  }
}
