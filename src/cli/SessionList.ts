/**
 * `rein sessions`: the list as a table (id, status, project, age, summary,
 * and `!` for a session waiting for an approval), `--json` one record per
 * line, `--watch` kept live over the client's `SessionsWatch`.
 */
import * as Effect from "effect/Effect"
import type { Session } from "../Domain/Session.js"
import type { ReinClient } from "../client/ReinClient.js"
import { Api } from "./Api.js"
import { eraseUp, type Style, truncate } from "./Ansi.js"
import { fromUnknown } from "./Errors.js"
import { Io } from "./Io.js"
import { isPendingPermission } from "./Transcript.js"

export type Listed = Session & { readonly pendingPermissions: number }

export const age = (ms: number): string => {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86_400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

const statusColor = (status: string, s: Style) =>
  status === "live" ? s.green(status) : status === "idle" ? s.blue(status) : status === "disconnected" ? s.red(status) : s.yellow(status)

/** The table, a header line and one line per session, columns padded to fit. */
export const table = (sessions: ReadonlyArray<Listed>, s: Style, width: number, now = Date.now()): Array<string> => {
  const rows = sessions.map((x) => [
    x.pendingPermissions > 0 ? "!" : " ",
    x.id,
    x.status,
    x.project ?? "-",
    age(now - x.createdAt),
    (x.summary ?? "").replace(/\s+/g, " ")
  ])
  const head = [" ", "ID", "STATUS", "PROJECT", "AGE", "SUMMARY"]
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)))
  const line = (r: Array<string>, styled: boolean) => {
    const cells = r.slice(0, 5).map((c, i) => c.padEnd(widths[i]!))
    const used = cells.join("  ").length + 2
    const summary = truncate(r[5]!, Math.max(8, width - used))
    if (!styled) return [...cells, summary].join("  ").trimEnd()
    const [mark, id, status, project, ageText] = cells as [string, string, string, string, string]
    return [
      mark.trim() === "!" ? s.inverse(s.yellow("!")) : mark,
      s.bold(id),
      statusColor(r[2]!, s) + status.slice(r[2]!.length),
      s.gray(project),
      s.gray(ageText),
      summary
    ].join("  ").trimEnd()
  }
  return [s.bold(line(head, false)), ...rows.map((r) => line(r, true))]
}

/** How often `sessions --watch` recounts a live session's pending requests when the server does not count them. */
const RECOUNT_MS = 2_000

/** How many permission requests of the session wait for an answer: the record's own count when the server has one. */
const pendingCount = async (client: ReinClient, session: Session): Promise<number> => {
  const own = (session as { pendingPermissions?: unknown }).pendingPermissions
  if (typeof own === "number") return own
  try {
    return (await client.artifacts(session.id)).filter(isPendingPermission).length
  } catch (e) {
    // removed meanwhile: nothing pending
    if ((e as { status?: number }).status === 404) return 0
    throw e
  }
}

const withPending = (client: ReinClient, sessions: ReadonlyArray<Session>): Promise<Array<Listed>> => {
  // At most 8 requests at a time.
  const out: Array<Listed> = new Array(sessions.length)
  let next = 0
  const worker = async () => {
    while (next < sessions.length) {
      const i = next++
      out[i] = { ...sessions[i]!, pendingPermissions: await pendingCount(client, sessions[i]!) }
    }
  }
  return Promise.all(Array.from({ length: Math.min(8, sessions.length) }, worker)).then(() => out)
}

export const listSessions = (options: { readonly project: string | undefined; readonly json: boolean }) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    const listed = yield* api.call((c) => c.listSessions({ project: options.project }))
    const sessions = yield* api.call((c) => withPending(c, listed))
    if (options.json) {
      io.out(sessions.map((x) => JSON.stringify(x) + "\n").join(""))
    } else if (sessions.length === 0) {
      io.out(options.project !== undefined ? `no sessions in project ${options.project}\n` : "no sessions\n")
    } else {
      io.out(table(sessions, io.style, io.stdout.columns || 120).join("\n") + "\n")
    }
  })

/**
 * `sessions --watch`: on a terminal the table redrawn in place; piped, the
 * table and then one line per change (`+` created, `~` updated, `-` removed);
 * `--json` the session stream's events. Until Ctrl-C.
 */
export const watchSessions = (options: { readonly project: string | undefined; readonly json: boolean }) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    // Unreachable or refused: fail now, with the exit code that says so.
    const first = yield* api.call((c) => c.listSessions({ project: options.project }))
    // Whether the server's records carry `pendingPermissions` themselves (issue 16).
    const serverCounts = first.some((x) => typeof (x as { pendingPermissions?: unknown }).pendingPermissions === "number")
    const mode = options.json ? "json" : io.tty ? "tty" : "plain"
    const failure = yield* Effect.acquireUseRelease(
      Effect.sync(() => {
        const known = new Map<string, Listed>()
        let synced = false
        let drawn = 0
        let generation = 0
        const draw = () => {
          const list = [...known.values()].sort((a, b) => a.createdAt - b.createdAt)
          const lines = list.length === 0 ? [io.style.gray("no sessions")] : table(list, io.style, io.stdout.columns || 120)
          const room = Math.max(2, (io.stdout.rows || 24) - 2)
          const shown = lines.length > room ? [...lines.slice(0, room - 1), io.style.gray(`… ${lines.length - room + 1} more`)] : lines
          io.out(eraseUp(drawn) + shown.map((l) => l + "\x1b[K\n").join(""))
          drawn = shown.length
        }
        const emit = (line: string) => io.out(line + "\n")
        const plainLine = (x: Listed) => table([x], io.style, io.stdout.columns || 120)[1]!
        /** Counts the session's pending requests, then shows the change from `old` (undefined: a new session). */
        const refresh = (x: Session, old: Listed | undefined) => {
          const gen = generation
          pendingCount(api.client, x).catch(() => 0).then((n) => {
            if (gen !== generation) return
            const current = known.get(x.id)
            if (current === undefined && old !== undefined) return
            const next: Listed = { ...(current ?? x), pendingPermissions: n }
            known.set(x.id, next)
            if (!synced) return
            if (mode === "tty") draw()
            else if (mode === "plain") {
              if (old === undefined) emit(`+ ${plainLine(next)}`)
              else if (old.status !== next.status || old.summary !== next.summary || old.pendingPermissions !== next.pendingPermissions) {
                emit(`~ ${plainLine(next)}`)
              }
            }
          })
        }
        const watch = api.client.watchSessions({
          project: options.project,
          onChange: (state) => {
            if (!state.synced) return
            const ids = new Set(state.sessions.map((x) => x.id))
            if (!synced) {
              synced = true
              generation++
              known.clear()
              const gen = generation
              withPending(api.client, state.sessions).catch(() => state.sessions.map((x) => ({ ...x, pendingPermissions: 0 }))).then((list) => {
                if (gen !== generation) return
                for (const x of list) known.set(x.id, x)
                if (mode === "tty") draw()
                else if (mode === "plain") emit(list.length === 0 ? "no sessions" : table(list, io.style, io.stdout.columns || 120).join("\n"))
                else {
                  for (const x of list) emit(JSON.stringify({ event: "session_snapshot", session: x }))
                  emit(JSON.stringify({ event: "snapshot_complete" }))
                }
              })
              return
            }
            for (const x of state.sessions) {
              const old = known.get(x.id)
              if (old === undefined) {
                if (mode === "json") emit(JSON.stringify({ event: "session_created", session: x }))
                refresh(x, undefined)
              } else if (old.status !== x.status || old.summary !== x.summary) {
                if (mode === "json") {
                  const fields: Record<string, unknown> = {}
                  if (old.status !== x.status) fields.status = x.status
                  if (old.summary !== x.summary) fields.summary = x.summary
                  emit(JSON.stringify({ event: "session_updated", id: x.id, fields }))
                }
                known.set(x.id, { ...old, status: x.status, summary: x.summary })
                refresh(x, old)
              }
            }
            for (const [oldId] of known) {
              if (ids.has(oldId)) continue
              known.delete(oldId)
              if (mode === "json") emit(JSON.stringify({ event: "session_removed", id: oldId }))
              else if (mode === "plain") emit(`- ${oldId}`)
              else draw()
            }
          }
        })
        // Without the server's own count, a new permission request changes nothing on the record:
        // recount the live sessions (only they can be asked) every few seconds.
        const poll = setInterval(() => {
          if (!synced || serverCounts) return
          for (const x of known.values()) {
            if (x.status !== "live") continue
            const { pendingPermissions: _, ...record } = x
            refresh(record, x)
          }
        }, RECOUNT_MS)
        return { watch, poll }
      }),
      ({ watch }) => Effect.promise(() => watch.done),
      ({ poll, watch }) =>
        Effect.sync(() => {
          clearInterval(poll)
          watch.close()
        })
    )
    if (failure.connection.status === "failed") return yield* Effect.fail(fromUnknown(api.url)(failure.connection.error))
  })
