#!/usr/bin/env node
/**
 * The simulated demo agent as an ACP agent over stdio: what the hub's `demo` profile runs, and
 * what any ACP client can run.
 *
 *   node dist/demo/acp-bin.js [--pace <n>]
 *   rein-sandbox --url http://127.0.0.1:4800 --session s1 --create -- node dist/demo/acp-bin.js
 *
 * `--pace` (env REIN_DEMO_PACE) multiplies every pause: 1 (default) reads naturally, 0.2 is quick,
 * 0 answers at once. It needs nothing: no network, no keys. It exits when its stdin closes.
 */
import { serveStdio } from "./AcpAgent.js"

const usage = "usage: node dist/demo/acp-bin.js [--pace <n>]  (an ACP agent over stdio; env REIN_DEMO_PACE)"

const fail = (message: string): never => {
  process.stderr.write(`rein-demo: ${message}\n${usage}\n`)
  process.exit(2)
}

const paceOf = (args: ReadonlyArray<string>): number => {
  let raw = process.env.REIN_DEMO_PACE
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--help" || arg === "-h") {
      process.stderr.write(`${usage}\n`)
      process.exit(0)
    } else if (arg === "--pace") raw = args[++i] ?? fail("--pace needs a value")
    else if (arg.startsWith("--pace=")) raw = arg.slice("--pace=".length)
    else fail(`unknown argument ${arg}`)
  }
  if (raw === undefined || raw === "") return 1
  const pace = Number(raw)
  return Number.isFinite(pace) && pace >= 0 ? pace : fail(`--pace must be a number of 0 or more, not ${raw}`)
}

const connection = serveStdio({ pace: paceOf(process.argv.slice(2)) })
void connection.closed.then(() => process.exit(0))
