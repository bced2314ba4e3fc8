/**
 * A session's transcript, paged (issue 23): the stream opens on its last `TAIL` artifacts (plus
 * older ones still changing, such as a running tool call), then stays live; older pages come from
 * `artifactsPage` when the reader scrolls up to them.
 */
import { useCallback, useMemo, useRef, useState } from "preact/hooks"
import type { Artifact, ArtifactsState, ReinClient } from "../../src/client/index.js"
import { useWatch } from "./hooks.js"

/** Artifacts the stream opens with. */
export const TAIL = 200
/** Artifacts an older page brings. */
export const PAGE = 200

/** The first index whose seq is at least `seq` (artifacts ordered by seq). */
export const lowerBound = (artifacts: ReadonlyArray<Artifact>, seq: number): number => {
  let lo = 0
  let hi = artifacts.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (artifacts[mid]!.seq < seq) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Both lists ordered by seq, as one; where both have a seq, `live`'s copy (the stream's is the newer). */
const merge = (older: ReadonlyArray<Artifact>, live: ReadonlyArray<Artifact>): ReadonlyArray<Artifact> => {
  if (older.length === 0) return live
  if (live.length === 0) return older
  const out: Array<Artifact> = []
  let i = 0
  let j = 0
  while (i < older.length || j < live.length) {
    const a = older[i]
    const b = live[j]
    if (b === undefined || (a !== undefined && a.seq < b.seq)) {
      out.push(a!)
      i++
    } else {
      if (a !== undefined && a.seq === b.seq) i++
      out.push(b)
      j++
    }
  }
  return out
}

export interface PagedTranscript {
  /** The stream's state (connection, synced). */
  readonly state: ArtifactsState | undefined
  /** What is loaded, ordered by seq: older pages and the stream's artifacts. */
  readonly artifacts: ReadonlyArray<Artifact>
  /**
   * Where older artifacts, not loaded yet, would go: the index of the oldest artifact of the
   * contiguous loaded run. Those before it are older ones the stream holds because they are
   * still changing. 0 when everything is loaded.
   */
  readonly gap: number
  /** Older artifacts exist that are not loaded. */
  readonly more: boolean
  readonly loading: boolean
  readonly error: string | undefined
  /** Loads the page before the loaded run; `then` runs with its artifacts in the same tick as the state update. */
  readonly loadOlder: (then?: (page: ReadonlyArray<Artifact>) => void) => void
}

const noArtifacts: ReadonlyArray<Artifact> = []

export const usePagedTranscript = (client: ReinClient, sessionId: string): PagedTranscript => {
  const state = useWatch(() => client.watchSession(sessionId, { tail: TAIL }), [client, sessionId])
  const live = state?.artifacts ?? noArtifacts
  const [older, setOlder] = useState<ReadonlyArray<Artifact>>(noArtifacts)
  const [pagedMore, setPagedMore] = useState<boolean | undefined>(undefined)
  const [loading, setLoading] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const busy = useRef(false)

  // Where the stream's tail starts, read once from its first complete snapshot: its last TAIL
  // artifacts are the tail; any before them are older ones still changing.
  const tail = useRef<{ floor: number; more: boolean } | undefined>(undefined)
  if (tail.current === undefined && state?.synced === true) {
    tail.current = live.length < TAIL
      ? { floor: live[0]?.seq ?? 0, more: false }
      : { floor: live[live.length - TAIL]!.seq, more: true }
  }
  const floor = older[0]?.seq ?? tail.current?.floor
  const more = pagedMore ?? tail.current?.more ?? false
  const floorRef = useRef(floor)
  floorRef.current = floor

  const artifacts = useMemo(() => merge(older, live), [older, live])
  const gap = more && floor !== undefined ? lowerBound(artifacts, floor) : 0

  const loadOlder = useCallback((then?: (page: ReadonlyArray<Artifact>) => void) => {
    const before = floorRef.current
    if (busy.current || before === undefined) return
    busy.current = true
    setLoading(true)
    setError(undefined)
    client.artifactsPage(sessionId, { before, limit: PAGE }).then(
      (page) => {
        busy.current = false
        // Only what lies before the loaded run (a server that ignored `before` sends more).
        const fresh = page.artifacts.filter((a) => a.seq < before)
        if (fresh.length > 0) floorRef.current = fresh[0]!.seq
        setOlder((o) => (fresh.length === 0 ? o : [...fresh, ...o]))
        setPagedMore(page.more && fresh.length > 0)
        setLoading(false)
        then?.(fresh)
      },
      (e: unknown) => {
        busy.current = false
        setLoading(false)
        setError(e instanceof Error ? e.message : String(e))
      }
    )
  }, [client, sessionId])

  return { state, artifacts, gap, more, loading, error, loadOlder }
}
