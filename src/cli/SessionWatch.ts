/**
 * `rein watch <id>`: the session's transcript, then its changes as they
 * happen, over the client's `ArtifactsWatch` (which resumes with
 * `Last-Event-ID` after a drop or a server restart). On a terminal a pending
 * permission is answered with a key. Ends when the session is removed, or on
 * Ctrl-C.
 */
import * as Effect from "effect/Effect"
import type { Artifact } from "../Domain/Artifact.js"
import type { Session } from "../Domain/Session.js"
import type { ArtifactsState } from "../client/ReinClient.js"
import type { ConnectionState } from "../client/stream.js"
import { Api } from "./Api.js"
import { truncate } from "./Ansi.js"
import { stateOf } from "../client/sessionState.js"
import { type CliError, Rejected, Usage } from "./Errors.js"
import { Io } from "./Io.js"
import { JsonPrinter, PlainPrinter, type Printer, TtyPrinter } from "./Printer.js"
import { hidden, isPendingPermission, permissionKeys } from "./Transcript.js"

/** How long after its record says a turn ended its artifacts are taken as final (see watchSession). */
const TURN_END_GRACE_MS = 300

type Outcome =
  | { readonly _tag: "removed" }
  | { readonly _tag: "stopped" }
  | { readonly _tag: "failed"; readonly error: CliError }
  /** `untilTurnEnds`: the turn ended. */
  | { readonly _tag: "turnEnded" }
  /** `untilTurnEnds`: the agent failed or went away before its turn ended. */
  | { readonly _tag: "agentGone"; readonly message: string }

/** How a watch ended: the session removed, Ctrl-C (or the stream closed), or (`untilTurnEnds`) the turn's end. */
export type WatchEnd = "removed" | "stopped" | "turnEnded"

/** A session's agent, runner and branch in words ("agent demo on runner local, branch rein/a1"), or "" for none. */
export const launchWords = (s: Session): string => {
  // A server from before runners sends none of the three.
  const agent = s.agent ?? null
  const runner = s.runner ?? null
  const workspace = s.workspace ?? null
  const parts: Array<string> = []
  if (agent !== null) parts.push(`agent ${agent}${runner !== null ? ` on runner ${runner}` : ""}`)
  if (workspace !== null) parts.push(`branch ${workspace.branch}`)
  return parts.join(", ")
}

/** The session, or a 404-like rejection naming it. */
export const requireSession = (id: string) =>
  Effect.flatMap(Api, (api) =>
    Effect.flatMap(api.call((c) => c.getSession(id)), (s) =>
      s === undefined
        ? Effect.fail(new Rejected({ status: 404, code: "not_found", message: `session ${id} not found` }))
        : Effect.succeed(s)))

export interface WatchOptions {
  readonly json: boolean
  /** Also the agent's raw protocol events (`custom` `acp.*`). */
  readonly verbose: boolean
  /**
   * End when the session's first turn has ended (`rein run`), or with a failure when its agent
   * fails or goes away first; the agent keeps running.
   */
  readonly untilTurnEnds?: boolean
  /** Start from the last `tail` artifacts (and the older ones still changing); default everything. */
  readonly tail?: number | undefined
}

/** The first seq from which the watch holds every artifact to the last (a tail holds older ones apart). */
const firstContiguous = (artifacts: ReadonlyArray<Artifact>): number => {
  let i = artifacts.length - 1
  while (i > 0 && artifacts[i - 1]!.seq === artifacts[i]!.seq - 1) i--
  return artifacts[i]?.seq ?? 1
}

export const watchSession = (id: string, options: WatchOptions) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    const session = yield* requireSession(id)
    const mode = options.json ? "json" : io.tty ? "tty" : "plain"
    const interactive = mode === "tty" && io.stdin.isTTY === true

    const outcome = yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        let finish: (o: Outcome) => void = () => {}
        const finished = new Promise<Outcome>((resolve) => (finish = resolve))
        const s = io.style
        const tty = mode === "tty"
          ? new TtyPrinter({ write: io.out, columns: () => io.stdout.columns || 80, rows: () => io.stdout.rows || 24 }, s)
          : undefined
        const json = mode === "json" ? new JsonPrinter({ write: io.out }, { write: io.err }) : undefined
        const printer: Printer = tty ?? json ?? new PlainPrinter({ write: io.out }, { write: io.err })
        if (tty) {
          const about = [stateOf(session).label.toLowerCase(), ...(session.project ? [`project ${session.project}`] : []), launchWords(session)]
            .filter((x) => x !== "")
            .join(", ")
          const quit = options.untilTurnEnds ? "until its turn ends · Ctrl-C to quit (the agent keeps running)" : "Ctrl-C to quit"
          io.out(s.gray(`watching ${s.bold(id)} (${about}) on ${api.url} · ${quit}`) + "\n")
        }

        let connection: ConnectionState = { status: "connecting", attempt: 0 }
        // Lost: a reconnect failed (a stream that just ended, e.g. the session removed, is not news).
        let lost = false
        let pending: Artifact | undefined
        let sending: string | undefined
        const footer = () => {
          if (!tty) return
          const lines: Array<string> = []
          if (lost) {
            lines.push(s.yellow(`◌ reconnecting to ${api.url}…`) + s.gray(connection.error ? ` (${connection.error.message})` : ""))
          }
          if (pending !== undefined && !interactive) {
            lines.push(s.gray(`  answer with: rein approve ${id} ${String(pending.requestId)}   (or reject)`))
          } else if (pending !== undefined) {
            const keys = permissionKeys(pending)
            lines.push(
              sending === pending.requestId
                ? s.gray("  sending the answer…")
                : "  " + keys.map((k) => `${s.inverse(s.bold(` ${k.key} `))} ${k.label}`).join("  ")
            )
          }
          tty.setFooter(lines)
        }

        // Whether the session's turn still runs: its record's status, followed on the session
        // stream (best effort: without it, the status the watch started with). The two streams
        // are not ordered with each other: the turn's last changes (its final plan, its usage)
        // may arrive on the artifact stream a moment after the record says idle, so an end is
        // taken in after a short grace; a start at once.
        let running = session.status === "live"
        let last: ArtifactsState | undefined
        let ending: ReturnType<typeof setTimeout> | undefined
        const shown = (artifacts: ReadonlyArray<Artifact>) => (options.verbose || json ? artifacts : artifacts.filter((a) => !hidden(a)))
        // untilTurnEnds: how the watch ends, taken in (like a turn's end) after the grace, once the transcript is synced.
        let end: Outcome | undefined
        let endTimer: ReturnType<typeof setTimeout> | undefined
        const endIfSynced = () => {
          if (end !== undefined && last?.synced === true) finish(end)
        }
        const fatalError = () => {
          const errors = (last?.artifacts ?? []).filter((a) => a.kind === "error" && a.fatal === true)
          const message = errors.length > 0 ? errors[errors.length - 1]!.message : undefined
          // One line (the transcript above has it whole): a stderr tail has several.
          return typeof message === "string" ? truncate(message.replace(/\s+/g, " ").trim(), 300) : undefined
        }
        const watchForEnd = (record: Session) => {
          if (!options.untilTurnEnds || endTimer !== undefined) return
          const outcome = (): Outcome | undefined => {
            if (record.lastStopReason === "error") {
              const why = fatalError()
              return { _tag: "agentGone", message: `the agent of ${id} failed${why !== undefined ? `: ${why}` : ""}` }
            }
            if (record.status === "disconnected") return { _tag: "agentGone", message: `the agent of ${id} stopped before its turn ended` }
            if (record.status === "idle") return { _tag: "turnEnded" }
            return undefined
          }
          if (outcome() === undefined) return
          endTimer = setTimeout(() => {
            end = outcome()
            // The turn's final plan and usage, held back while it ran, go into the transcript first.
            if (running) setRunning(false)
            endIfSynced()
          }, TURN_END_GRACE_MS)
        }
        const setRunning = (now: boolean) => {
          running = now
          if (last !== undefined) printer.update(shown(last.artifacts), last.synced, running)
        }
        const status = json && !options.untilTurnEnds
          ? undefined
          : api.client.watchSessions({
            ...(session.project !== null && { project: session.project }),
            onChange: (list) => {
              const record = list.sessions.find((x) => x.id === id)
              if (!list.synced || record === undefined) return
              watchForEnd(record)
              const live = record.status === "live"
              if (live && ending !== undefined) {
                clearTimeout(ending)
                ending = undefined
              }
              if (live === running || (!live && ending !== undefined)) return
              if (live) setRunning(true)
              else {
                ending = setTimeout(() => {
                  ending = undefined
                  setRunning(false)
                }, TURN_END_GRACE_MS)
              }
            }
          })
        // A tail: said once, above the transcript, with where the rest is.
        let toldTail = options.tail === undefined || json !== undefined
        const onState = (state: ArtifactsState) => {
          last = state
          if (!toldTail && state.synced) {
            toldTail = true
            const first = firstContiguous(state.artifacts)
            if (first > 1) printer.note(`the transcript before #${first} is not shown: rein artifacts ${id} --before ${first} prints it`)
          }
          printer.update(shown(state.artifacts), state.synced, running)
          pending = state.artifacts.find(isPendingPermission)
          if (state.connection !== connection) {
            connection = state.connection
            if (connection.status === "open" && lost) {
              lost = false
              if (!tty) printer.note(`reconnected to ${api.url}`)
            } else if (connection.status === "reconnecting" && connection.attempt >= 2 && !lost) {
              lost = true
              if (!tty) printer.note(`connection to ${api.url} lost (${connection.error?.message ?? "closed"}), reconnecting`)
            }
          }
          footer()
          endIfSynced()
        }
        const watch = api.client.watchSession(id, { onChange: onState, tail: options.tail })
        void watch.done.then((final) => {
          onState(final)
          if (final.connection.status === "gone") finish({ _tag: "removed" })
          else if (final.connection.status === "failed") {
            finish({ _tag: "failed", error: api.failure(final.connection.error ?? new Error("the stream failed")) })
          } else finish({ _tag: "stopped" })
        })

        const onKey = (data: Buffer | string) => {
          const text = data.toString()
          if (text.includes("\x03") || text.includes("\x04")) return finish({ _tag: "stopped" })
          const p = pending
          if (p === undefined || sending !== undefined) return
          const key = permissionKeys(p).find((k) => k.key === text.trim().toLowerCase())
          if (key === undefined) return
          const requestId = String(p.requestId)
          sending = requestId
          footer()
          const answer = "decision" in key.reply ? key.reply.decision : key.reply
          api.client.permissionReply(id, requestId, answer).then(() => undefined, api.failure).then((e) => {
            sending = undefined
            if (e !== undefined) {
              if (e._tag === "Rejected" && e.status === 409 && e.code === "conflict" && /already answered/.test(e.message)) {
                printer.note(`${requestId} was already answered; nothing changed`)
              } else if (e._tag === "Rejected" && e.code === "no_sandbox") {
                printer.note(s.red(`no sandbox connected to ${id}: the answer was not delivered`))
              } else printer.note(s.red(`could not answer ${requestId}: ${e.message}`))
            } else printer.note(`answered ${requestId}: ${key.label}`)
            footer()
          })
        }
        const onResize = () => tty?.resized()
        if (tty) io.stdout.on("resize", onResize)
        if (interactive) {
          io.stdin.setRawMode(true)
          io.stdin.resume()
          io.stdin.on("data", onKey)
        }
        return {
          finished,
          json,
          dispose: () => {
            watch.close()
            status?.close()
            if (ending !== undefined) clearTimeout(ending)
            if (endTimer !== undefined) clearTimeout(endTimer)
            io.stdout.off("resize", onResize)
            if (interactive) {
              io.stdin.off("data", onKey)
              io.stdin.setRawMode(false)
              io.stdin.pause()
            }
            printer.end()
          }
        }
      }),
      (h) => Effect.promise(() => h.finished).pipe(Effect.tap((o) => (o._tag === "removed" && h.json ? Effect.sync(() => h.json!.event({ event: "session_removed", id })) : Effect.void))),
      (h) => Effect.sync(h.dispose)
    )
    if (outcome._tag === "failed") return yield* Effect.fail(outcome.error)
    if (outcome._tag === "agentGone") return yield* Effect.fail(new Usage({ message: outcome.message }))
    if (outcome._tag === "removed" && mode !== "json") io.err(`rein: session ${id} was removed\n`)
    return outcome._tag as WatchEnd
  })
