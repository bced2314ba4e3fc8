/**
 * `rein sessions`: the list as a table (`!` for a session that needs you, id, state, project, time
 * since its last activity, cost, summary), in the order and words of client/sessionState (needs
 * you, then working, then the rest by last activity); `--status` one group of it; `--json` one
 * record per line; `--watch` kept live over the client's `SessionsWatch`.
 */
import * as Effect from "effect/Effect"
import { formatCost, type Group, groupOf, lastActivity, orderSessions, stateOf } from "../client/sessionState.js"
import type { Session } from "../Domain/Session.js"
import { Api } from "./Api.js"
import { eraseUp, type Style, truncate } from "./Ansi.js"
import { Io } from "./Io.js"

export type Listed = Session

export const age = (ms: number): string => {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86_400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

/** The state's words, as a column reads them ("needs approval (2)", "working", "stopped", ...). */
export const stateWords = (x: Session): string => {
  const { label } = stateOf(x)
  return label.charAt(0).toLowerCase() + label.slice(1)
}

const stateColor = (x: Session, text: string, s: Style) => {
  switch (stateOf(x).key) {
    case "approval":
      return s.yellow(text)
    case "error":
    case "disconnected":
      return s.red(text)
    case "working":
    case "starting":
      return s.green(text)
    default:
      return s.blue(text)
  }
}

/**
 * The table, a header line and one line per session, columns padded to fit; the sessions in the order given.
 * AGENT when a session has an agent a runner starts; BRANCH (its worktree's) too when the line still leaves the
 * summary room.
 */
export const table = (sessions: ReadonlyArray<Listed>, s: Style, width: number, now = Date.now()): Array<string> => {
  const anyAgent = sessions.some((x) => (x.agent ?? null) !== null)
  const rowOf = (x: Listed, branch: boolean) => [
    groupOf(x) === "needs-you" ? "!" : " ",
    x.id,
    stateWords(x),
    x.project ?? "-",
    ...(anyAgent ? [x.agent ?? "-"] : []),
    ...(branch ? [x.workspace?.branch ?? "-"] : []),
    age(now - lastActivity(x)),
    formatCost(x.usage.costUsd) ?? "",
    (x.summary ?? "").replace(/\s+/g, " ")
  ]
  const headOf = (branch: boolean) => [" ", "ID", "STATE", "PROJECT", ...(anyAgent ? ["AGENT"] : []), ...(branch ? ["BRANCH"] : []), "ACTIVE", "COST", "SUMMARY"]
  const widthsOf = (head: Array<string>, rows: Array<Array<string>>) => head.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)))
  // The branch when the columns before the summary leave it 30 characters.
  const withBranch = sessions.some((x) => (x.workspace ?? null) !== null) &&
    widthsOf(headOf(true), sessions.map((x) => rowOf(x, true))).slice(0, -1).reduce((n, w) => n + w + 2, 0) + 30 <= width
  const rows = sessions.map((x) => rowOf(x, withBranch))
  const head = headOf(withBranch)
  const widths = widthsOf(head, rows)
  const last = head.length - 1
  const line = (r: Array<string>, x: Session | undefined) => {
    const cells = r.slice(0, last).map((c, i) => c.padEnd(widths[i]!))
    const used = cells.join("  ").length + 2
    const summary = truncate(r[last]!, Math.max(8, width - used))
    if (x === undefined) return [...cells, summary].join("  ").trimEnd()
    const [mark, id, state, ...rest] = cells as [string, string, string, ...Array<string>]
    return [
      mark.trim() === "!" ? s.inverse(s.yellow("!")) : mark,
      s.bold(id),
      stateColor(x, r[2]!, s) + state.slice(r[2]!.length),
      ...rest.map((c) => s.gray(c)),
      summary
    ].join("  ").trimEnd()
  }
  return [s.bold(line(head, undefined)), ...rows.map((r, i) => line(r, sessions[i]))]
}

export interface ListOptions {
  readonly project: string | undefined
  /** Only the sessions that need someone. */
  readonly attention: boolean
  /** Only the sessions of this group (the list's status filter). */
  readonly status: Group | undefined
  readonly json: boolean
}

/** "no sessions", said of the filter asked for. */
const none = (options: ListOptions): string => {
  const group = options.status === undefined ? (options.attention ? "need you" : "") : {
    "needs-you": "need you",
    working: "are working",
    idle: "are idle",
    disconnected: "are disconnected"
  }[options.status]
  return `no sessions${group === "" ? "" : ` ${group}`}${options.project !== undefined ? ` in project ${options.project}` : ""}`
}

export const listSessions = (options: ListOptions) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    const listed = yield* api.call((c) => c.listSessions({ project: options.project, attention: options.attention }))
    const sessions = orderSessions(listed, options.status)
    if (options.json) {
      io.out(sessions.map((x) => JSON.stringify(x) + "\n").join(""))
    } else if (sessions.length === 0) {
      io.out(none(options) + "\n")
    } else {
      io.out(table(sessions, io.style, io.stdout.columns || 120).join("\n") + "\n")
    }
  })

/** The record fields a session stream's `session_updated` carries, as the watch tells them apart. */
const updatedFields = (old: Session, x: Session): Record<string, unknown> | undefined => {
  const fields: Record<string, unknown> = {}
  if (old.status !== x.status) fields.status = x.status
  if (old.summary !== x.summary) fields.summary = x.summary
  if (old.pendingPermissions !== x.pendingPermissions) fields.pendingPermissions = x.pendingPermissions
  if (old.usage !== x.usage) fields.usage = x.usage
  if (old.lastStopReason !== x.lastStopReason) fields.lastStopReason = x.lastStopReason
  if (JSON.stringify(old.workspace ?? null) !== JSON.stringify(x.workspace ?? null)) fields.workspace = x.workspace ?? null
  return Object.keys(fields).length === 0 ? undefined : fields
}

/**
 * `sessions --watch`: on a terminal the table redrawn in place; piped, the
 * table and then one line per change (`+` created, `~` updated, `-` removed);
 * `--json` the session stream's events. Until Ctrl-C.
 */
export const watchSessions = (options: ListOptions) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    const filter = { project: options.project, attention: options.attention }
    // Unreachable or refused: fail now, with the exit code that says so.
    yield* api.call((c) => c.listSessions(filter))
    const mode = options.json ? "json" : io.tty ? "tty" : "plain"
    const failure = yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        let known = new Map<string, Session>()
        let synced = false
        let drawn = 0
        const width = () => io.stdout.columns || 120
        const draw = () => {
          const list = orderSessions([...known.values()])
          const lines = list.length === 0 ? [io.style.gray(none(options))] : table(list, io.style, width())
          const room = Math.max(2, (io.stdout.rows || 24) - 2)
          const shown = lines.length > room ? [...lines.slice(0, room - 1), io.style.gray(`… ${lines.length - room + 1} more`)] : lines
          io.out(eraseUp(drawn) + shown.map((l) => l + "\x1b[K\n").join(""))
          drawn = shown.length
        }
        const emit = (line: string) => io.out(line + "\n")
        const plainLine = (x: Session) => table([x], io.style, width())[1]!
        const watch = api.client.watchSessions({
          ...filter,
          onChange: (state) => {
            if (!state.synced) return
            // The filter's sessions: one entering it is "created" here, one leaving it "removed".
            const list = orderSessions(state.sessions, options.status)
            const next = new Map(list.map((x) => [x.id, x]))
            if (!synced) {
              synced = true
              known = next
              if (mode === "tty") draw()
              else if (mode === "plain") emit(list.length === 0 ? none(options) : table(list, io.style, width()).join("\n"))
              else {
                for (const x of list) emit(JSON.stringify({ event: "session_snapshot", session: x }))
                emit(JSON.stringify({ event: "snapshot_complete" }))
              }
              return
            }
            let changed = false
            for (const x of list) {
              const old = known.get(x.id)
              if (old === x) continue
              const fields = old === undefined ? undefined : updatedFields(old, x)
              if (old !== undefined && fields === undefined) continue
              changed = true
              if (mode === "json") {
                emit(JSON.stringify(old === undefined ? { event: "session_created", session: x } : { event: "session_updated", id: x.id, fields }))
              } else if (mode === "plain") emit(`${old === undefined ? "+" : "~"} ${plainLine(x)}`)
            }
            for (const id of known.keys()) {
              if (next.has(id)) continue
              changed = true
              if (mode === "json") emit(JSON.stringify({ event: "session_removed", id }))
              else if (mode === "plain") emit(`- ${id}`)
            }
            known = next
            if (changed && mode === "tty") draw()
          }
        })
        return watch
      }),
      (watch) => Effect.promise(() => watch.done),
      (watch) => Effect.sync(() => watch.close())
    )
    if (failure.connection.status === "failed") return yield* Effect.fail(api.failure(failure.connection.error))
  })
