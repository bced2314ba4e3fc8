/**
 * The three ways `watch` prints a session's artifacts as they change. Each
 * printer keeps what it has printed, so a resumed stream (whose snapshots
 * repeat what was seen) prints only what is new.
 *
 * - `PlainPrinter`: append-only text for pipes and files; an appended delta
 *   prints only what was appended; no escape codes.
 * - `JsonPrinter`: one JSON object per line, in the stream's own event shapes.
 * - `TtyPrinter`: a transcript in scrollback plus a live region at the bottom,
 *   redrawn in place: the artifacts still changing (a running tool call, the
 *   text being written, a pending permission), the running turn's plan, and a
 *   status line.
 *
 * While a turn runs, its plan and its usage change with every update: printing
 * each version would repeat them down the transcript. So they are held (see
 * `heldBack`): the usage is printed once, when the turn has ended; the plan is
 * redrawn in place on a terminal (piped: its first version, then its last), and
 * goes into the transcript when the turn ends.
 */
import type { Artifact } from "../Domain/Artifact.js"
import { eraseUp, hideCursor, noColors, rows, showCursor, type Style } from "./Ansi.js"
import { artifactLines, isPendingPermission, isRunningTool, type TranscriptStyle } from "./Transcript.js"

export interface Sink {
  readonly write: (s: string) => void
}

export interface Printer {
  /**
   * The session's artifacts now, ordered by seq; `running`: the session's turn is still going
   * (the record's status is live), so the turn's plan and usage may still change.
   */
  readonly update: (artifacts: ReadonlyArray<Artifact>, synced: boolean, running?: boolean) => void
  /** A line about the watch itself (reconnecting, an answer sent, ...). */
  readonly note: (text: string) => void
  /** The watch ended; leave the output complete. */
  readonly end: () => void
}

const streamed = (a: Artifact) => a.kind === "text" || a.kind === "reasoning"

/**
 * The seqs of the running turn's plan and usage, which still change: those after the turn's
 * prompt (the last `user_message`), unless the turn was stopped. Nothing when no turn runs.
 */
export const heldBack = (artifacts: ReadonlyArray<Artifact>, running: boolean): ReadonlySet<number> => {
  const held = new Set<number>()
  if (!running) return held
  for (let i = artifacts.length - 1; i >= 0; i--) {
    const a = artifacts[i]!
    if (a.kind === "user_message") break
    if ((a.kind as string) === "turn_stopped") return new Set()
    if (a.kind === "plan" || a.kind === "usage") held.add(a.seq)
  }
  return held
}

/** Field values compared for "did it change": everything but the times. */
const content = (a: Artifact): string => {
  const { updatedAt: _u, createdAt: _c, ...rest } = a
  return JSON.stringify(rest)
}

/**
 * What a change must touch to be printed again in append-only output: a tool call's input
 * streams in while it runs, and is shown once more with its result, not per delta.
 */
const shown = (a: Artifact): string =>
  a.kind === "tool_call" ? JSON.stringify([a.status, a.title, a.output, a.locations]) : content(a)

export class PlainPrinter implements Printer {
  private readonly printed = new Map<number, Artifact>()
  /** The streamed artifact the output currently ends in, mid-line or not. */
  private tail: number | undefined
  private midLine = false
  private readonly t: TranscriptStyle

  constructor(private readonly out: Sink, private readonly notes: Sink, width = 100) {
    this.t = { style: noColors, width, markdown: false, plain: true }
  }

  update(artifacts: ReadonlyArray<Artifact>, _synced = true, running?: boolean): void {
    const held = heldBack(artifacts, running === true)
    let buf = ""
    const write = (s: string) => {
      if (s === "") return
      buf += s
      this.midLine = !s.endsWith("\n")
    }
    const newline = () => {
      if (this.midLine) write("\n")
      this.tail = undefined
    }
    for (const a of artifacts) {
      const prev = this.printed.get(a.seq)
      if (prev === a) continue
      // The running turn's usage: at its end. Its plan: the first version now, the last at its end.
      if (held.has(a.seq) && (a.kind === "usage" || prev !== undefined)) continue
      if (streamed(a) && (prev === undefined || prev.kind === a.kind)) {
        const before = typeof prev?.text === "string" ? prev.text : ""
        const now = typeof a.text === "string" ? a.text : ""
        if (prev === undefined) {
          newline()
          write(artifactLines({ ...a, text: now }, this.t).join("\n"))
          this.tail = a.seq
        } else if (now.length > before.length && now.startsWith(before)) {
          if (this.tail !== a.seq) {
            newline()
            write(`[${a.kind === "reasoning" ? "thinking" : "text"} #${a.seq} continued] `)
          }
          write(now.slice(before.length).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, ""))
          this.tail = a.seq
        } else if (now !== before) {
          newline()
          write(`[#${a.seq} replaced]\n${artifactLines(a, this.t).join("\n")}`)
          this.tail = a.seq
        }
      } else if (prev === undefined || shown(prev) !== shown(a)) {
        newline()
        write(artifactLines(a, this.t).join("\n") + "\n")
      }
      this.printed.set(a.seq, a)
    }
    if (buf !== "") this.out.write(buf)
  }

  note(text: string): void {
    this.notes.write(`rein: ${text}\n`)
  }

  end(): void {
    if (this.midLine) this.out.write("\n")
    this.midLine = false
  }
}

/** A string field that grew by an append, or anything else that was set. */
const fieldChanges = (prev: Artifact, now: Artifact): Array<Record<string, unknown>> => {
  const out: Array<Record<string, unknown>> = []
  for (const field of Object.keys(now)) {
    if (field === "seq" || field === "kind" || field === "createdAt" || field === "updatedAt") continue
    const a = prev[field]
    const b = now[field]
    if (JSON.stringify(a) === JSON.stringify(b)) continue
    if (typeof a === "string" && typeof b === "string" && b.startsWith(a)) {
      out.push({ event: "artifact_updated", seq: now.seq, field, append: b.slice(a.length), updatedAt: now.updatedAt })
    } else {
      out.push({ event: "artifact_updated", seq: now.seq, field, set: b ?? null, updatedAt: now.updatedAt })
    }
  }
  return out
}

/**
 * The stream's events, one JSON object per line with its name in `event`:
 * `artifact_snapshot` for what existed when the watch started, then
 * `snapshot_complete`, then `artifact_created` / `artifact_updated`; each change
 * once, also across reconnects; `session_removed` last when the session goes.
 */
export class JsonPrinter implements Printer {
  private readonly printed = new Map<number, Artifact>()
  private synced = false

  constructor(private readonly out: Sink, private readonly notes: Sink) {}

  update(artifacts: ReadonlyArray<Artifact>, synced: boolean): void {
    const lines: Array<string> = []
    for (const a of artifacts) {
      const prev = this.printed.get(a.seq)
      if (prev === a) continue
      if (prev === undefined) {
        lines.push(JSON.stringify({ event: this.synced ? "artifact_created" : "artifact_snapshot", artifact: a }))
      } else {
        for (const c of fieldChanges(prev, a)) lines.push(JSON.stringify(c))
      }
      this.printed.set(a.seq, a)
    }
    if (synced && !this.synced) {
      this.synced = true
      lines.push(JSON.stringify({ event: "snapshot_complete" }))
    }
    if (lines.length > 0) this.out.write(lines.join("\n") + "\n")
  }

  note(text: string): void {
    this.notes.write(`rein: ${text}\n`)
  }

  /** Prints a final event (e.g. `session_removed`). */
  event(e: Record<string, unknown>): void {
    this.out.write(JSON.stringify(e) + "\n")
  }

  end(): void {}
}

export interface Terminal extends Sink {
  readonly columns: () => number
  readonly rows: () => number
}

/** Still changing, so kept in the live region: the last artifact, a running call, a pending permission. */
const unsettled = (a: Artifact, isLast: boolean) => isLast || isRunningTool(a) || isPendingPermission(a)

export class TtyPrinter implements Printer {
  /** Artifacts before this seq are in scrollback; with the version printed there. */
  private base = 1
  private readonly committed = new Map<number, Artifact>()
  /** Lines of the first live artifacts already pushed into scrollback (the live region overflowed). */
  private skip = 0
  /** Rows the live region takes now. */
  private drawn = 0
  private artifacts: ReadonlyArray<Artifact> = []
  /** Whether the turn runs; undefined: not known (the last artifact is then kept live, as it may grow). */
  private running: boolean | undefined
  /** Held back while their turn ran, and not printed yet: printed when it ends, wherever the transcript is then. */
  private readonly deferred = new Set<number>()
  private footer: Array<string> = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private ended = false

  constructor(private readonly term: Terminal, private readonly style: Style, private readonly frameMs = 33) {
    term.write(hideCursor)
  }

  private get t(): TranscriptStyle {
    return { style: this.style, width: this.term.columns(), markdown: true, plain: false }
  }

  update(artifacts: ReadonlyArray<Artifact>, _synced = true, running?: boolean): void {
    this.artifacts = artifacts
    this.running = running
    this.schedule()
  }

  /** The bottom lines: status, the permission prompt. */
  setFooter(lines: Array<string>): void {
    this.footer = lines
    this.schedule()
  }

  note(text: string): void {
    this.draw([this.style.gray(`· ${text}`)])
  }

  /** The terminal changed size: lay the live region out again for the new width. */
  resized(): void {
    this.schedule()
  }

  end(): void {
    if (this.ended) return
    this.footer = []
    this.draw([], true)
    this.ended = true
    this.term.write(showCursor)
  }

  private schedule(): void {
    if (this.timer !== undefined || this.ended) return
    this.timer = setTimeout(() => this.draw([]), this.frameMs)
  }

  /** Redraws the live region; `extra` lines go into scrollback first. `all`: commit everything. */
  private draw(extra: Array<string>, all = false): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.ended) return
    const t = this.t
    const width = t.width
    const permanent: Array<string> = [...extra]
    const held = all ? new Set<number>() : heldBack(this.artifacts, this.running === true)
    const flow = this.artifacts.filter((a) => !held.has(a.seq))
    // The running turn's plan, redrawn in place at the top of the live region.
    const pinned: Array<string> = []
    for (const a of this.artifacts) {
      if (!held.has(a.seq)) continue
      if (!this.committed.has(a.seq)) this.deferred.add(a.seq)
      if (a.kind === "plan") pinned.push(...artifactLines(a, t))
    }
    // Artifacts in scrollback that changed since: printed again (a streamed text: only what it gained);
    // those held back while their turn ran: printed once, after the rest of their turn.
    const released: Array<string> = []
    for (const a of flow) {
      if (a.seq >= this.base) break
      const prev = this.committed.get(a.seq)
      if (prev === undefined && this.deferred.has(a.seq)) {
        released.push(...artifactLines(a, t))
        this.committed.set(a.seq, a)
        this.deferred.delete(a.seq)
        continue
      }
      if (prev === undefined || prev === a || content(prev) === content(a)) continue
      if (streamed(a) && typeof prev.text === "string" && typeof a.text === "string" && a.text.startsWith(prev.text)) {
        permanent.push(this.style.gray(`(#${a.seq} continued)`), ...artifactLines({ ...a, text: a.text.slice(prev.text.length) }, t))
      } else {
        permanent.push(...artifactLines(a, t))
      }
      this.committed.set(a.seq, a)
    }
    const live = flow.filter((a) => a.seq >= this.base)
    const blocks = live.map((a) => artifactLines(a, t))
    let settledCount = 0
    let settledLines = 0
    // The last artifact may still grow while the turn runs; once it is known to have ended, nothing will.
    const lastMayGrow = this.running !== false
    while (settledCount < live.length && (all || !unsettled(live[settledCount]!, lastMayGrow && settledCount === live.length - 1))) {
      settledLines += blocks[settledCount]!.length
      settledCount++
    }
    const lines = blocks.flat()
    let rest: Array<string>
    if (settledLines >= this.skip) {
      permanent.push(...lines.slice(this.skip, settledLines))
      rest = lines.slice(settledLines)
      this.skip = 0
    } else {
      this.skip -= settledLines
      rest = lines.slice(settledLines + this.skip)
    }
    permanent.push(...released)
    for (let i = 0; i < settledCount; i++) {
      this.committed.set(live[i]!.seq, live[i]!)
      this.deferred.delete(live[i]!.seq)
    }
    if (settledCount > 0) this.base = live[settledCount - 1]!.seq + 1
    // The live region must fit on the screen to be redrawn: what does not fit goes to scrollback.
    const room = Math.max(1, this.term.rows() - 1)
    const fit = (ls: Array<string>) => ls.reduce((n, l) => n + rows(l, width), 0)
    // A plan taller than the screen leaves room for the footer and a line of transcript.
    const planRoom = Math.max(1, room - fit(this.footer) - 1)
    if (fit(pinned) > planRoom) pinned.splice(planRoom - 1, pinned.length, this.style.gray("  …"))
    const bottom = [...pinned, ...this.footer]
    while (rest.length > 0 && fit(rest) + fit(bottom) > room) {
      permanent.push(rest.shift()!)
      this.skip++
    }
    // The plan on top of what still changes, so a pending permission stays next to its keys.
    const region = [...pinned, ...rest, ...this.footer]
    let out = eraseUp(this.drawn)
    for (const l of permanent) out += l + "\x1b[K\n"
    for (const l of region) out += l + "\x1b[K\n"
    this.drawn = fit(region)
    this.term.write(out)
  }
}
