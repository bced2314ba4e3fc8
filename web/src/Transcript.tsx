/**
 * A session's transcript, bounded (issue 23): of the loaded artifacts, only a window is in the
 * DOM, the last `INITIAL` while following new output, growing by `STEP` where the reader
 * scrolls and trimmed at the other end beyond `MAX`. When the window reaches the oldest loaded
 * artifact, the page before it is loaded. Whatever is added or removed above the reader, the
 * artifact at the top of the view stays where it was (the browser's own scroll anchoring is
 * off: it does nothing at the very top, where older pages come in). The transcript follows new
 * output while the reader is at the bottom, and stops following when they scroll up.
 */
import { memo } from "preact/compat"
import { type MutableRef, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks"
import type { Artifact, ReinClient } from "../../src/client/index.js"
import { ArtifactView } from "./ArtifactView.js"
import { lowerBound } from "./paging.js"

/** Artifacts in the DOM when a session opens, and while following. */
const INITIAL = 50
/** Artifacts added to the window at a time. */
const STEP = 50
/** Beyond MAX + STEP artifacts, the window is trimmed to MAX at the end away from the reader. */
const MAX = 150
const NEAR_BOTTOM_PX = 48

/**
 * The window, by seq: from `lo` through `hi`. Without `lo`, the last INITIAL up to `hi`; without
 * `hi`, through the newest (new artifacts come into it).
 */
interface Window {
  readonly lo?: number
  readonly hi?: number
}

export interface TranscriptProps {
  readonly client: ReinClient
  readonly sessionId: string
  /** Loaded artifacts, ordered by seq. */
  readonly artifacts: ReadonlyArray<Artifact>
  /** The index of the oldest artifact of the loaded run; before it, older ones still changing. */
  readonly gap: number
  readonly more: boolean
  readonly loading: boolean
  readonly error: string | undefined
  readonly loadOlder: (then?: (page: ReadonlyArray<Artifact>) => void) => void
  readonly toolCalls: ReadonlyMap<string, Artifact>
  readonly stoppedPlans: ReadonlySet<number>
  readonly synced: boolean
  readonly bootstrapping: boolean
  readonly hidden: boolean
  /** Following new output; the composer sets it when a prompt is sent. */
  readonly follow: MutableRef<boolean>
}

export const Transcript = memo((p: TranscriptProps) => {
  const { artifacts, gap, more, follow } = p
  const scroller = useRef<HTMLDivElement>(null)
  const content = useRef<HTMLDivElement>(null)
  const [win, setWin] = useState<Window>({})
  const [unseen, setUnseen] = useState(false)
  const lastTop = useRef(0)
  const heading = useRef<"up" | "down">("up")
  const anchor = useRef<{ readonly seq: number; readonly offset: number } | undefined>(undefined)

  const n = artifacts.length
  const hiIdx = win.hi === undefined ? n : lowerBound(artifacts, win.hi + 1)
  const loIdx = Math.min(hiIdx, Math.max(gap, win.lo === undefined ? hiIdx - INITIAL : lowerBound(artifacts, win.lo)))
  const atGap = more && loIdx <= gap
  const view = { loIdx, hiIdx, n, gap, more, win, artifacts, loading: p.loading, error: p.error }
  const latest = useRef(view)
  latest.current = view

  /** Shows artifacts [lo, hi) of the loaded ones. */
  const show = (lo: number, hi: number) => {
    const { artifacts, n } = latest.current
    const next: Window = { lo: artifacts[lo]?.seq, hi: hi >= n ? undefined : artifacts[hi - 1]?.seq }
    setWin((w) => (w.lo === next.lo && w.hi === next.hi ? w : next))
  }

  /** The first artifact at the top of the view, and how far below the top it starts. */
  const captureAnchor = () => {
    const el = scroller.current
    const body = content.current
    if (!el || !body || el.clientHeight === 0) return
    const top = el.getBoundingClientRect().top
    const kids = body.children
    let a = 0
    let b = kids.length
    while (a < b) {
      const mid = (a + b) >> 1
      if (kids[mid]!.getBoundingClientRect().bottom <= top) a = mid + 1
      else b = mid
    }
    for (let i = a; i < kids.length; i++) {
      const seq = (kids[i] as HTMLElement).dataset.seq
      if (seq !== undefined) {
        anchor.current = { seq: Number(seq), offset: kids[i]!.getBoundingClientRect().top - top }
        return
      }
    }
    anchor.current = undefined
  }

  /** Puts the anchor back where it was. */
  const restoreAnchor = () => {
    const el = scroller.current
    const body = content.current
    const a = anchor.current
    if (!el || !body || !a) return
    const node = body.querySelector(`:scope > [data-seq="${a.seq}"]`)
    if (node === null) return
    const delta = node.getBoundingClientRect().top - el.getBoundingClientRect().top - a.offset
    if (Math.abs(delta) >= 0.5) el.scrollTop += delta
  }

  /** Loads the page before the loaded run and shows its last STEP artifacts. */
  const loadOlder = () =>
    p.loadOlder((page) => {
      if (page.length === 0) return
      const lo = page[Math.max(0, page.length - STEP)]!.seq
      setWin((w) => ({ lo, hi: w.hi }))
    })

  /** Grows the window where the reader is heading, within a screen of its end, and trims the other end. */
  const adjust = () => {
    const el = scroller.current
    if (!el || el.clientHeight === 0) return
    const v = latest.current
    const screen = el.clientHeight
    const count = v.hiIdx - v.loIdx
    const nearTop = el.scrollTop < screen
    const atTop = v.more && v.loIdx <= v.gap
    if (follow.current) {
      if (v.win.hi !== undefined) return setWin({})
      if (count > MAX + STEP) return show(v.n - MAX, v.n)
      // A window shorter than two screens: more of it.
      if (nearTop && v.loIdx > v.gap) return show(Math.max(v.gap, v.loIdx - STEP), v.n)
      if (nearTop && atTop && !v.loading && v.error === undefined) loadOlder()
      return
    }
    if (count > MAX + STEP) {
      return heading.current === "up" ? show(v.loIdx, v.loIdx + MAX) : show(v.hiIdx - MAX, v.hiIdx)
    }
    if (heading.current === "up" && nearTop) {
      if (v.loIdx > v.gap) return show(Math.max(v.gap, v.loIdx - STEP), v.hiIdx)
      if (atTop && !v.loading && v.error === undefined) loadOlder()
      return
    }
    if (heading.current === "down" && v.hiIdx < v.n && el.scrollHeight - el.scrollTop - screen < screen) {
      show(v.loIdx, Math.min(v.n, v.hiIdx + STEP))
    }
  }

  // After every render: follow, or keep the anchor in place; then grow or trim the window.
  useLayoutEffect(() => {
    const el = scroller.current
    if (!el) return
    if (follow.current) el.scrollTop = el.scrollHeight
    else restoreAnchor()
    lastTop.current = el.scrollTop
    captureAnchor()
    adjust()
  })

  // New output while the reader is elsewhere: say so.
  const newest = artifacts[n - 1]
  useLayoutEffect(() => {
    if (!follow.current && newest !== undefined) setUnseen(true)
  }, [newest])

  // Content grows after a render (fonts, wrapping, an opened <details>) and the view shrinks (the
  // header fills in): keep the bottom in view while following.
  useEffect(() => {
    const el = scroller.current
    const body = content.current
    if (!el || !body || typeof ResizeObserver === "undefined") return
    const observer = new ResizeObserver(() => {
      if (!follow.current) return
      el.scrollTop = el.scrollHeight
      lastTop.current = el.scrollTop
    })
    observer.observe(body)
    observer.observe(el)
    return () => observer.disconnect()
  }, [])

  // Only the reader scrolling up stops following: growth below the view must not count as leaving the bottom.
  const onScroll = () => {
    const el = scroller.current
    if (!el) return
    const top = el.scrollTop
    const v = latest.current
    if (top < lastTop.current) heading.current = "up"
    else if (top > lastTop.current) heading.current = "down"
    if (v.hiIdx === v.n && el.scrollHeight - top - el.clientHeight < NEAR_BOTTOM_PX) {
      follow.current = true
      setUnseen(false)
    } else if (top < lastTop.current && follow.current) {
      follow.current = false
      // What is shown stays shown: new output no longer slides the window.
      show(v.loIdx, v.hiIdx)
    }
    lastTop.current = top
    captureAnchor()
    adjust()
  }

  const jumpToLatest = () => {
    follow.current = true
    setUnseen(false)
    setWin({})
    const el = scroller.current
    if (el) el.scrollTop = el.scrollHeight
  }

  const item = (a: Artifact) => (
    <ArtifactView
      key={a.seq}
      a={a}
      client={p.client}
      sessionId={p.sessionId}
      toolCall={a.kind === "permission" && a.toolCallId ? p.toolCalls.get(String(a.toolCallId)) : undefined}
      stopped={a.kind === "plan" ? p.stoppedPlans.has(a.seq) : undefined}
    />
  )

  return (
    <>
      <div
        class="transcript"
        ref={scroller}
        onScroll={onScroll}
        tabIndex={0}
        aria-label="Transcript"
        aria-live="off"
        aria-busy={p.loading}
        hidden={p.hidden}
        data-more={more ? "1" : "0"}
        data-loaded={n}
      >
        <div class="transcript-content" ref={content}>
          {p.synced && n === 0 && (
            <p class="empty">Nothing here yet. Send a prompt below{p.bootstrapping ? " once an agent connects" : ""}.</p>
          )}
          {/* Older artifacts the stream carries because they may still change (a running tool call, the agent), until their page is loaded. */}
          {atGap && gap > 0 && <div class="transcript-carried">{artifacts.slice(0, gap).map(item)}</div>}
          {atGap && (
            <div class="transcript-older" role="status">
              {p.error !== undefined
                ? (
                  <>
                    <span class="inline-error">Older messages did not load: {p.error}</span>{" "}
                    <button type="button" class="button" onClick={loadOlder}>Retry</button>
                  </>
                )
                : p.loading
                ? <span class="muted">Loading older messages…</span>
                : <button type="button" class="button" onClick={loadOlder}>Load older messages</button>}
            </div>
          )}
          {artifacts.slice(loIdx, hiIdx).map(item)}
        </div>
      </div>
      {unseen && (
        <button type="button" class="button jump" onClick={jumpToLatest}>
          ↓ New activity
        </button>
      )}
    </>
  )
})
