/**
 * `npm run bench [-- --json] [--only <name>[,<name>]] [--target <url>[,<url>] | --pg <url>] [--rounds <n>] [--bin <path>] [--budget <s>]`
 *
 * Runs every scenario against a fresh Rein server (the CLI, `node dist/bin.js`,
 * on a temp SQLite file, or on the PostgreSQL database of `--pg`) and against
 * the floor (a no-op node:http / SSE server in its own process), alternating
 * which goes first, best of 3 rounds (fewer where a scenario says so or the
 * time budget runs short), and prints Rein's figure, the floor's and the
 * ratio. Progress goes to stderr. The two-instance variants (`fanout-cross`,
 * `fanout-split`) run only with `--pg` (two fresh instances on it) or two
 * `--target` URLs.
 */
import { cpus } from "node:os"
import { parseArgs } from "node:util"
import { type Child, runTag, startFloor, startRein, within } from "./lib.js"
import type { Check, Figures, Scenario, Summary, Target } from "./scenario.js"
import { agents } from "./scenarios/agents.js"
import { batch } from "./scenarios/batch.js"
import { fanout, fanoutCross, fanoutSplit } from "./scenarios/fanout.js"
import { idleConnections } from "./scenarios/idle-connections.js"
import { ingest } from "./scenarios/ingest.js"
import { longMessage } from "./scenarios/long-message.js"
import { manySessions } from "./scenarios/many-sessions.js"
import { resumeStorm } from "./scenarios/resume-storm.js"
import { sessions } from "./scenarios/sessions.js"

const scenarios: ReadonlyArray<Scenario> = [
  ingest,
  batch,
  fanout,
  fanoutCross,
  fanoutSplit,
  longMessage,
  idleConnections,
  resumeStorm,
  sessions,
  manySessions,
  agents
]

const { values: args } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    only: { type: "string" },
    target: { type: "string" },
    pg: { type: "string" },
    rounds: { type: "string" },
    bin: { type: "string" },
    budget: { type: "string", default: "260" },
    help: { type: "boolean", short: "h", default: false }
  }
})

if (args.help) {
  console.log(`usage: npm run bench -- [--json] [--only <name>[,<name>...]] [--target <url>[,<url>] | --pg <url>] [--rounds <n>] [--bin <path>]
  --json     one JSON object { scenario: { metric: value, ... } } on stdout
  --only     run only these scenarios (--only fanout includes its two-instance variants when they can run)
  --target   measure an already running server (loopback only) instead of starting one; a second URL,
             another instance over the same PostgreSQL database, adds the two-instance scenarios
  --pg       start Rein on this PostgreSQL database instead of a temp SQLite file (postgres://...;
             the database must exist; the bench adds sessions and never removes anything), and run the
             two-instance scenarios against two fresh instances on it
  --rounds   rounds per scenario (default: 3, or the scenario's own smaller default)
  --bin      the server entry point to start (default dist/bin.js)
  --budget   seconds the scenarios may take in all (default 260): rounds after the first are
             skipped when they would not leave time for the first round of the scenarios after them
scenarios: ${scenarios.map((s) => s.name + (s.variantOf === undefined ? "" : " (two instances)")).join(", ")}`)
  process.exit(0)
}

const log = (s: string) => process.stderr.write(`${s}\n`)

const fail = (message: string): never => {
  log(`bench: ${message}`)
  process.exit(2)
}

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
const targets = args.target?.split(",").map((s) => s.trim()).filter((s) => s !== "").map(parseTarget)
if (targets !== undefined && (targets.length < 1 || targets.length > 2)) fail("--target takes one URL, or two (instances A and B)")
if (targets !== undefined && args.pg !== undefined) fail("--target and --pg exclude each other")
if (args.pg !== undefined && !/^postgres(ql)?:\/\//.test(args.pg)) fail("--pg must be a postgres:// URL")
const twoInstances = args.pg !== undefined || targets?.length === 2

const only = args.only?.split(",").map((s) => s.trim()).filter((s) => s !== "")
for (const name of only ?? []) {
  const s = scenarios.find((s) => s.name === name)
  if (s === undefined) fail(`unknown scenario ${name} (one of ${scenarios.map((s) => s.name).join(", ")})`)
  if (s?.variantOf !== undefined && !twoInstances) fail(`${name} needs two instances: --pg <url>, or --target <urlA>,<urlB>`)
}
const selected = scenarios.filter((s) =>
  (only === undefined || only.includes(s.name) || (s.variantOf !== undefined && only.includes(s.variantOf))) &&
  (s.variantOf === undefined || twoInstances)
)
const rounds = args.rounds === undefined ? undefined : Number(args.rounds)
if (rounds !== undefined && (!Number.isInteger(rounds) || rounds < 1 || rounds > 10)) fail("--rounds must be 1 to 10")
const roundsOf = (s: Scenario) => rounds ?? s.rounds ?? 3
const budgetMs = Number(args.budget) * 1000
if (!(budgetMs > 0)) fail("--budget must be a positive number of seconds")
const started = performance.now()

interface Outcome {
  readonly scenario: Scenario
  readonly rein: ReadonlyArray<Figures>
  readonly floor: ReadonlyArray<Figures>
  readonly errors: ReadonlyArray<string>
  readonly ms: number
}

/** A server's stderr, if it wrote any, in the progress output (Rein normally writes none). */
const showStderr = (scenario: Scenario, name: string, child: Child) => {
  const lines = child.stderr().trimEnd().split("\n").filter((l) => l !== "")
  if (lines.length === 0) return
  log(`  ${scenario.name}: ${name} wrote to stderr (${lines.length} line(s)${lines.length > 20 ? ", the first 20" : ""}):`)
  for (const l of lines.slice(0, 20)) log(`    | ${l.length > 300 ? `${l.slice(0, 300)}...` : l}`)
}

const runOne = async (scenario: Scenario, kind: "rein" | "floor"): Promise<Figures> => {
  // The floor is one server even for a two-instance scenario; Rein is two fresh instances (A then B) there.
  const children: Array<Child> = []
  const pair = scenario.variantOf !== undefined
  try {
    if (kind === "floor") children.push(await startFloor())
    else if (targets === undefined) {
      children.push(await startRein(args.bin, args.pg))
      if (pair) children.push(await startRein(args.bin, args.pg))
    }
    const [a, b] = children
    const t: Target = {
      kind,
      url: a?.url ?? targets![0]!,
      peer: kind === "floor" || !pair ? undefined : b?.url ?? targets![1],
      pid: a?.pid,
      dbDir: a?.dbDir,
      tag: runTag()
    }
    const figures = await within(scenario.run(t), scenario.timeoutMs, `${scenario.name} (${kind})`)
    for (const c of children) await c.stop()
    scenario.afterStop?.(t, figures)
    return figures
  } finally {
    for (const [i, c] of children.entries()) {
      await c.stop()
      showStderr(scenario, kind === "floor" ? "the floor" : pair ? `rein ${i === 0 ? "A" : "B"}` : "rein", c)
      c.cleanup()
    }
  }
}

const runScenario = async (scenario: Scenario, reserveMs: number): Promise<Outcome> => {
  const t0 = performance.now()
  let lastRoundMs = 0
  const rein: Array<Figures> = []
  const floor: Array<Figures> = []
  const errors: Array<string> = []
  for (let r = 0; r < roundsOf(scenario); r++) {
    const roundStart = performance.now()
    if (r > 0 && roundStart - started + lastRoundMs + reserveMs > budgetMs) {
      log(`  ${scenario.name}: round(s) ${r + 1} to ${roundsOf(scenario)} skipped to stay within the ${budgetMs / 1000} s budget`)
      break
    }
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
    lastRoundMs = performance.now() - roundStart
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

const pickOf = (values: ReadonlyArray<number | null | undefined>, pick: "max" | "min" | "median"): number | null => {
  const xs = values.filter((v): v is number => typeof v === "number" && !Number.isNaN(v)).sort((a, b) => a - b)
  if (xs.length === 0) return null
  if (pick === "median") return xs.length % 2 === 1 ? xs[(xs.length - 1) / 2]! : (xs[xs.length / 2 - 1]! + xs[xs.length / 2]!) / 2
  return pick === "max" ? xs[xs.length - 1]! : xs[0]!
}

const summarize = (o: Outcome) => {
  const summaries = new Map<string, Summary>()
  for (const m of o.scenario.metrics) {
    const reinRuns = o.rein.map((f) => f[m.key] ?? null)
    const rein = pickOf(reinRuns, m.pick)
    const floor = m.floor !== "none" ? pickOf(o.floor.map((f) => f[m.key]), m.pick) : null
    const ratio = m.floor === "ratio" && rein !== null && floor !== null && floor !== 0 ? rein / floor : null
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
        first ? `${o.scenario.name} (${o.rein.length}/${o.floor.length})` : "",
        m.label,
        m.unit,
        fmt(s.rein),
        m.floor !== "none" ? fmt(s.floor) : "-",
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
  out.push(
    "",
    "(r/f): rounds measured for Rein/the floor. Each figure is the best round (the worst or the median, where the label says so);",
    "ratio = rein / floor; spread = (max - min) / median over Rein's rounds."
  )
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
      if (m.floor !== "none") s[`${m.key}_floor`] = x.floor
      if (m.floor === "ratio") s[`${m.key}_ratio`] = x.ratio
      s[`${m.key}_spread_pct`] = x.spread
    }
    s.targets = Object.fromEntries(checks.map((c) => [c.label, c.ok]))
    if (o.errors.length > 0) s.errors = o.errors
    s.rounds = o.rein.length
    s.floor_rounds = o.floor.length
    s.seconds = Math.round(o.ms / 100) / 10
    out[o.scenario.name] = s
  }
  return JSON.stringify(out, null, 2)
}

const redact = (url: string) => {
  const u = new URL(url)
  if (u.password !== "") u.password = "***"
  return u.toString()
}

const main = async () => {
  const t0 = started
  log(
    `rein bench: ${selected.map((s) => `${s.name} x${roundsOf(s)}`).join(", ")}; ` +
      `rein ${
        targets?.join(" and ") ??
          `fresh per run (node ${args.bin ?? "dist/bin.js"}${args.pg === undefined ? "" : `, on ${redact(args.pg)}`})`
      }; floor fresh per run; ` +
      `node ${process.version}, ${cpus().length} CPU(s)`
  )
  const outcomes: Array<Outcome> = []
  for (const [i, s] of selected.entries()) {
    log(`${s.name}: ${s.description}`)
    const reserve = selected.slice(i + 1).reduce((a, x) => a + x.estimateS * 1000, 0)
    outcomes.push(await runScenario(s, reserve))
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
