/**
 * `npm run demo`: the server with its embedded runner, a throwaway sample repository, and a
 * `demo` session whose agent is the simulated one (src/demo/AcpAgent.ts), started by the runner
 * in its own worktree as any agent is (issue 20). Sessions created in the dashboard with the
 * `demo` agent get one too; a session created without an agent waits for its own sandbox (the
 * demo agent only takes sessions created for it). Ctrl-C stops everything and removes the sample
 * repository and its worktrees.
 *
 * Settings: REIN_PORT (4800), REIN_HOST (127.0.0.1), REIN_DB (":memory:"), REIN_TOKEN (auth off),
 * REIN_DEMO_PROMPT (a first prompt; empty for none).
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ReinClient } from "../client/index.js"
import { createServer, type ReinServer } from "../createServer.js"

const port = Number(process.env.REIN_PORT ?? 4800)
const host = process.env.REIN_HOST ?? "127.0.0.1"
const dbPath = process.env.REIN_DB ?? ":memory:"
const token = process.env.REIN_TOKEN || undefined
const firstPrompt = process.env.REIN_DEMO_PROMPT ?? "Show me what you can do in this project."

/** A small git repository to work on, and the place for its worktrees; both go at exit. */
const scratch = mkdtempSync(join(tmpdir(), "rein-demo-"))
const repo = join(scratch, "sample-app")
mkdirSync(join(repo, "src"), { recursive: true })
writeFileSync(join(repo, "README.md"), "# sample-app\n\nA tiny project for the Rein demo.\n")
writeFileSync(join(repo, "src", "login.ts"), "export const login = (user: string) => user.length > 0\n")
const git = (...args: Array<string>) => execFileSync("git", args, { cwd: repo, stdio: "ignore" })
git("init", "-q", "-b", "main")
git("add", ".")
git("-c", "user.name=Rein Demo", "-c", "user.email=demo@rein.invalid", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "sample app")

let server: ReinServer
try {
  server = await createServer({
    port,
    host,
    dbPath,
    ...(token ? { token } : {}),
    runner: { repos: [repo], worktrees: join(scratch, "worktrees"), log: (line) => console.log(`[demo] runner: ${line}`) }
  })
} catch (e) {
  rmSync(scratch, { recursive: true, force: true })
  const message = e instanceof Error ? e.message : String(e)
  console.error(`Could not start the server on ${host}:${port}: ${message}`)
  console.error(`Is something else on port ${port}? Pick another with REIN_PORT=4801 npm run demo`)
  process.exit(1)
}

const origin = `http://${host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host}:${server.port}`
const client = new ReinClient({ baseUrl: origin, token })
if ((await client.getSession("demo")) === undefined) {
  await client.createSession("demo", { project: "demo", agent: "demo", ...(firstPrompt !== "" ? { prompt: firstPrompt } : {}) })
}

const dashboard = `${origin}/#/sessions/demo${token ? `&token=${encodeURIComponent(token)}` : ""}`
console.log(`
  Rein demo

  Dashboard:  ${dashboard}

  The "demo" session runs the simulated agent: a script, not a model, started by the hub's
  runner in its own git worktree of a sample repository (${repo}). It answers each prompt
  with reasoning, a plan, a real listing of its worktree, streamed Markdown, a permission request
  before a pretend write (nothing is written), a diff, usage and a title.
  Press Abort in the dashboard to stop a turn; "New session" with the demo agent starts another.

  Server: ${origin} (db: ${dbPath}${token ? ", token required" : ""}). Ctrl-C to stop.
`)

let stopping = false
const shutdown = async (signal: string) => {
  if (stopping) {
    console.error("forced exit")
    process.exit(130)
  }
  stopping = true
  console.log(`\n[demo] ${signal}: stopping the agents and the server…`)
  await server.close()
  rmSync(scratch, { recursive: true, force: true })
  console.log("[demo] stopped")
  process.exit(0)
}
process.on("SIGINT", () => void shutdown("SIGINT"))
process.on("SIGTERM", () => void shutdown("SIGTERM"))
