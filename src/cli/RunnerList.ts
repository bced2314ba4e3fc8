/**
 * `rein runners`: the runners the hub knows (issue 20), one line each: id, name, online, the agent
 * profiles it offers, its repositories, sessions running of its maximum, free disk; `--json` one
 * record per line.
 */
import * as Effect from "effect/Effect"
import type { RunnerInfo } from "../Domain/Runner.js"
import { Api } from "./Api.js"
import { type Style, truncate } from "./Ansi.js"
import { Io } from "./Io.js"

/** Bytes in binary units, as `df -h` reads them: `512 B`, `3.2 KiB`, `41 GiB`. */
export const humanBytes = (bytes: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
  let n = bytes
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

/** The table: a header line and one line per runner; the repositories take what the line leaves (all of them with no `width`). */
export const runnerTable = (runners: ReadonlyArray<RunnerInfo>, s: Style, width = Infinity): Array<string> => {
  const rows = runners.map((r) => [
    r.id,
    r.embedded ? `${r.name} (embedded)` : r.name,
    r.online ? "yes" : "no",
    r.agents.length === 0 ? "-" : r.agents.map((a) => a.id).join(", "),
    `${r.sessions}/${r.maxSessions ?? "∞"}`,
    r.freeDisk === null ? "-" : humanBytes(r.freeDisk),
    r.repos.length === 0 ? "-" : r.repos.join(", ")
  ])
  const head = ["ID", "NAME", "ONLINE", "AGENTS", "SESSIONS", "FREE DISK", "REPOS"]
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]!].length)))
  const line = (r: Array<string>, x: RunnerInfo | undefined) => {
    const cells = r.slice(0, 6).map((c, i) => c.padEnd(widths[i]!))
    const used = cells.join("  ").length + 2
    const repos = truncate(r[6]!, Math.max(12, width - used))
    if (x === undefined) return [...cells, repos].join("  ").trimEnd()
    const [id, name, online, ...rest] = cells as [string, string, string, ...Array<string>]
    return [s.bold(id), name, (x.online ? s.green : s.red)(online.trimEnd()) + online.slice(online.trimEnd().length), ...rest, s.gray(repos)]
      .join("  ")
      .trimEnd()
  }
  return [s.bold(line(head, undefined)), ...rows.map((r, i) => line(r, runners[i]))]
}

export const listRunners = (options: { readonly json: boolean }) =>
  Effect.gen(function*() {
    const api = yield* Api
    const io = yield* Io
    const runners = yield* api.call((c) => c.listRunners())
    if (options.json) return io.out(runners.map((r) => JSON.stringify(r) + "\n").join(""))
    if (runners.length === 0) return io.out("no runners: rein-server runs one unless started with --no-runner; rein-runner adds one\n")
    // Piped, the paths whole: a cut path names no repository.
    io.out(runnerTable(runners, io.style, io.tty ? io.stdout.columns || 120 : undefined).join("\n") + "\n")
  })
