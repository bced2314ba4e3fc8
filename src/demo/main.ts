/**
 * `npm run demo`: the server, a `demo` session with a simulated agent, and
 * the dashboard's URL. Every session created in the dashboard gets a
 * simulated agent too. Ctrl-C stops everything cleanly.
 *
 * Settings: REIN_PORT (4800), REIN_HOST (127.0.0.1), REIN_DB (":memory:"),
 * REIN_TOKEN (auth off), REIN_DEMO_PROMPT (a first prompt; empty for none).
 */
import { ReinClient } from "../client/index.js"
import type { Session } from "../Domain/Session.js"
import { createServer, type ReinServer } from "../createServer.js"
import { type DemoAgent, startDemoAgent } from "./agent.js"

const port = Number(process.env.REIN_PORT ?? 4800)
const host = process.env.REIN_HOST ?? "127.0.0.1"
const dbPath = process.env.REIN_DB ?? ":memory:"
const token = process.env.REIN_TOKEN || undefined
const firstPrompt = process.env.REIN_DEMO_PROMPT ?? "Show me what you can do in this project."

const log = (line: string) => console.log(`[demo] ${line}`)

let server: ReinServer
try {
  server = await createServer({ port, host, dbPath, ...(token ? { token } : {}) })
} catch (e) {
  const message = e instanceof Error ? e.message : String(e)
  console.error(`Could not start the server on ${host}:${port}: ${message}`)
  console.error(`Is something else on port ${port}? Pick another with REIN_PORT=4801 npm run demo`)
  process.exit(1)
}

const origin = `http://${host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host}:${server.port}`
const client = new ReinClient({ baseUrl: origin, token })
/** Each session's simulated agent, by id, from the moment it is being attached. */
const agents = new Map<string, Promise<DemoAgent | undefined>>()

/** A simulated agent for every session that has no sandbox. */
const attach = (session: Session) => {
  if (agents.has(session.id) || (session.status !== "bootstrapping" && session.status !== "disconnected")) return
  const attached: Promise<DemoAgent | undefined> = startDemoAgent({ baseUrl: origin, sessionId: session.id, token, log }).then(
    (agent) => {
      log(`simulated agent connected to session "${session.id}"`)
      void agent.done.then(() => {
        if (agents.get(session.id) === attached) agents.delete(session.id)
      })
      return agent
    },
    (e) => {
      agents.delete(session.id)
      if (e?.status !== 404) log(`could not attach an agent to "${session.id}": ${e instanceof Error ? e.message : String(e)}`)
      return undefined
    }
  )
  agents.set(session.id, attached)
}

const existing = await client.getSession("demo")
if (existing === undefined) await client.createSession("demo", { project: "demo" })
const watch = client.watchSessions({ onChange: (s) => s.sessions.forEach(attach) })
await watch.until((s) => s.synced)
const demoAgent = await agents.get("demo")
if (demoAgent && existing === undefined && firstPrompt !== "") await client.prompt("demo", firstPrompt).catch(() => {})

const dashboard = `${origin}/#/sessions/demo${token ? `&token=${encodeURIComponent(token)}` : ""}`
console.log(`
  Rein demo

  Dashboard:  ${dashboard}

  The "demo" session has a simulated agent: a script, not a model. It answers each prompt
  with reasoning, a plan, a real listing of ${process.cwd()}, streamed Markdown,
  a permission request before a pretend write (nothing is written), a diff, usage and a summary.
  Press Abort in the dashboard to stop a turn. Sessions you create there get a simulated agent too.

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
  watch.close()
  await Promise.allSettled([...agents.values()].map((a) => a.then((agent) => agent?.stop())))
  await server.close()
  console.log("[demo] stopped")
  process.exit(0)
}
process.on("SIGINT", () => void shutdown("SIGINT"))
process.on("SIGTERM", () => void shutdown("SIGTERM"))
