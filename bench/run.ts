/**
 * `npm run bench [-- --json] [--only <name>[,<name>]] [--target <url>] [--rounds <n>]`
 *
 * Runs every scenario against a fresh Rein server (the CLI, `node dist/bin.js`,
 * on a temp SQLite file) and against the floor (a no-op node:http / SSE server
 * in its own process), alternating, best of `--rounds` (3), and prints Rein's
 * figure, the floor's and the ratio. Progress goes to stderr.
 */
import { cpus } from "node:os"
import { parseArgs } from "node:util"
import { type Child, runTag, startFloor, startRein, within } from "./lib.js"
import type { Check, Figures, Scenario, Summary, Target } from "./scenario.js"
import { batch } from "./scenarios/batch.js"
import { fanout } from "./scenarios/fanout.js"
import { idleConnections } from "./scenarios/idle-connections.js"
import { ingest } from "./scenarios/ingest.js"
import { longMessage } from "./scenarios/long-message.js"
import { resumeStorm } from "./scenarios/resume-storm.js"
import { sessions } from "./scenarios/sessions.js"

const scenarios: ReadonlyArray<Scenario> = [ingest, batch, fanout, longMessage, idleConnections, resumeStorm, sessions]

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    only: { type: "string" },
    target: { type: "string" },
    rounds: { type: "string", default: "3" },
    help: { type: "boolean", short: "h", default: false }
  }
})

if (args.help) {
  console.log(`usage: npm run bench -- [--json] [--only <name>[,<name>...]] [--target <url>] [--rounds <n>]
scenarios: ${scenarios.map((s) => s.name).join(", ")}`)
  process.exit(0)
}

const log = (s: string) => process.stderr.write(`${s}\n`)

const fail = (message: string): never => {
  log(`bench: ${message}`)
  process.exit(2)
}

const only = args.only?.split(",").map((s) => s.trim()).filter((s) => s !== "")
for (const name of only ?? []) {
  if (!scenarios.some((s) => s.name === name)) fail(`unknown scenario ${name} (one of ${scenarios.map((s) => s.name).join(", ")})`)
}
const selected = scenarios.filter((s) => only === undefined || only.includes(s.name))
const rounds = Number(args.rounds)
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) fail("--rounds must be 1 to 10")

const parseTarget = (raw: string): string => {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return fail(`--target ${raw} is not a URL`)
  }
  const h = u.hostname.replace(/^\[|\]$/g, "")
  if (h !== "localhost" && !h.startsWith("127.") && h !== "::1") {
    fail("--target must be a loopback address: the bench only talks to loopback")
  }
  return u.origin
}
const target = args.target === undefined ? undefined : parseTarget(args.target)

interface Outcome {
  readonly scenario: Scenario
  readonly rein: ReadonlyArray<Figures>
  readonly floor: ReadonlyArray<Figures>
  readonly errors: ReadonlyArray<string>
  readonly ms: number
}

const runOne = async (scenario: Scenario, kind: "rein" | "floor"): Promise<Figures> => {
  let child: Child | undefined
  try {
    child = kind === "floor" ? await startFloor() : target === undefined ? await startRein() : undefined
    const t: Target = {
      kind,
      url: child?.url ?? target!,
      pid: child?.pid,
      dbDir: child?.dbDir,
      tag: runTag()
    }
    const figures = await within(scenario.run(t), scenario.timeoutMs, `${scenario.name} (${kind})`)
    if (child !== undefined) await child.stop()
    scenario.afterStop?.(t, figures)
    return figures
  } finally {
    await child?.stop()
    child?.cleanup()
  }
}

const runScenario = async (scenario: Scenario): Promise<Outcome> => {
  const t0 = performance.now()
  const rein: Array<Figures> = []
  const floor: Array<Figures> = []
  const errors: Array<string> = []
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so neither always runs on a warmer (or busier) machine.
    const order: ReadonlyArray<"rein" | "floor"> = r % 2 === 0 ? ["rein", "floor"] : ["floor", "rein"]
    for (const kind of order) {
      const s = performance.now()
      try {
        const figures = await runOne(scenario, kind)
        ;(kind === "rein" ? rein : floor).push(figures)
        log(`  ${scenario.name} round ${r + 1} ${kind}: ${brief(figures)} (${((performance.now() - s) / 1000).toFixed(1)} s)`)
      } catch (e) {
        const message = `${kind} round ${r + 1}: ${(e as Error).message}`
        errors.push(message)
        log(`  ${scenario.name} ${message}`)
      }
    }
  }
  return { scenario, rein, floor, errors, ms: performance.now() - t0 }
}

const brief = (f: Figures) =>
  Object.entries(f).map(([k, v]) => `${k}=${v === null ? "n/a" : fmt(v)}`).join(" ")

const fmt = (x: number | null): string => {
  if (x === null || Number.isNaN(x)) return "n/a"
  const a = Math.abs(x)
  if (a >= 1000) return Math.round(x).toLocaleString("en-US")
  if (a >= 100) return x.toFixed(0)
  if (a >= 10) return x.toFixed(1)
  if (a >= 1) return x.toFixed(2)
  if (a === 0) return "0"
  return x.toPrecision(2)
}

const pickOf = (values: ReadonlyArray<number | null | undefined>, pick: "max" | "min"): number | null => {
  const xs = values.filter((v): v is number => typeof v === "number" && !Number.isNaN(v))
  if (xs.length === 0) return null
  return pick === "max" ? Math.max(...xs) : Math.min(...xs)
}

const summarize = (o: Outcome) => {
  const summaries = new Map<string, Summary>()
  for (const m of o.scenario.metrics) {
    const reinRuns = o.rein.map((f) => f[m.key] ?? null)
    const rein = pickOf(reinRuns, m.pick)
    const floor = m.floor ? pickOf(o.floor.map((f) => f[m.key]), m.pick) : null
    const ratio = rein !== null && floor !== null && floor !== 0 ? rein / floor : null
    const xs = reinRuns.filter((v): v is number => v !== null && !Number.isNaN(v)).sort((a, b) => a - b)
    const mid = xs[Math.floor(xs.length / 2)]
    const spread = xs.length > 1 && mid !== undefined && mid !== 0 ? (100 * (xs[xs.length - 1]! - xs[0]!)) / Math.abs(mid) : null
    summaries.set(m.key, { rein, floor, ratio, spread, reinRuns })
  }
  const get = (key: string): Summary => {
    const s = summaries.get(key)
    if (s === undefined) throw new Error(`${o.scenario.name}: no metric ${key}`)
    return s
  }
  let checks: ReadonlyArray<Check>
  if (o.rein.length === 0) checks = [{ label: "scenario ran", ok: false }]
  else checks = o.scenario.checks(get)
  return { summaries, checks }
}

const pad = (s: string, n: number, right = false) => (right ? s.padStart(n) : s.padEnd(n))

const table = (outcomes: ReadonlyArray<Outcome>) => {
  const rows: Array<Array<string>> = [["scenario", "metric", "unit", "rein", "floor", "ratio", "spread"]]
  const notes: Array<string> = []
  for (const o of outcomes) {
    const { checks, summaries } = summarize(o)
    let first = true
    for (const m of o.scenario.metrics) {
      const s = summaries.get(m.key)!
      rows.push([
        first ? o.scenario.name : "",
        m.label,
        m.unit,
        fmt(s.rein),
        m.floor ? fmt(s.floor) : "-",
        s.ratio === null ? "-" : `${s.ratio.toFixed(2)}x`,
        s.spread === null ? "-" : `${s.spread.toFixed(0)}%`
      ])
      first = false
    }
    for (const c of checks) {
      rows.push(["", `  ${c.ok === null ? "n/a " : c.ok ? "PASS" : "MISS"} ${c.label}`, "", "", "", "", ""])
    }
    for (const e of o.errors) notes.push(`${o.scenario.name}: ${e}`)
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i]!.startsWith("  ") && i === 1 ? 0 : r[i]!.length))))
  const line = (r: ReadonlyArray<string>) =>
    r[1]!.startsWith("  ") && r[2] === ""
      ? `${pad(r[0]!, widths[0]!)}  ${r[1]}`
      : r.map((c, i) => pad(c, widths[i]!, i >= 3)).join("  ")
  const out = [line(rows[0]!), rows[0]!.map((_, i) => "-".repeat(widths[i]!)).join("  ")]
  for (const r of rows.slice(1)) out.push(line(r))
  if (notes.length > 0) out.push("", "errors:", ...notes.map((n) => `  ${n}`))
  return out.join("\n")
}

const json = (outcomes: ReadonlyArray<Outcome>) => {
  const out: Record<string, Record<string, unknown>> = {}
  for (const o of outcomes) {
    const { checks, summaries } = summarize(o)
    const s: Record<string, unknown> = {}
    for (const m of o.scenario.metrics) {
      const x = summaries.get(m.key)!
      s[m.key] = x.rein
      if (m.floor) {
        s[`${m.key}_floor`] = x.floor
        s[`${m.key}_ratio`] = x.ratio
      }
      s[`${m.key}_spread_pct`] = x.spread
    }
    s.targets = Object.fromEntries(checks.map((c) => [c.label, c.ok]))
    if (o.errors.length > 0) s.errors = o.errors
    s.seconds = Math.round(o.ms / 100) / 10
    out[o.scenario.name] = s
  }
  return JSON.stringify(out, null, 2)
}

const main = async () => {
  const t0 = performance.now()
  log(
    `rein bench: ${selected.map((s) => s.name).join(", ")}; ${rounds} round(s); ` +
      `rein ${target ?? "fresh per run (node dist/bin.js)"}; floor fresh per run; ` +
      `node ${process.version}, ${cpus().length} CPU(s)`
  )
  const outcomes: Array<Outcome> = []
  for (const s of selected) {
    log(`${s.name}: ${s.description}`)
    outcomes.push(await runScenario(s))
  }
  const total = (performance.now() - t0) / 1000
  if (args.json) console.log(json(outcomes))
  else console.log(`\n${table(outcomes)}\n\nwhole run: ${total.toFixed(0)} s`)
  log(`done in ${total.toFixed(0)} s`)
  process.exit(outcomes.some((o) => o.rein.length === 0) ? 1 : 0)
}

main().catch((e) => {
  log(`bench failed: ${(e as Error).stack ?? e}`)
  process.exit(1)
})
