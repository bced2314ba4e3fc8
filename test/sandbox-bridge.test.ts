/**
 * The bridge (src/sandbox/Bridge.ts) in this process against a real server, with a fetch that
 * records every event it posts: what the wire carries that artifacts do not show (`fatal`,
 * `started`), and what the agent's stderr becomes in the error that says it died.
 */
import { buildSync } from "esbuild"
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { Event } from "../src/Domain/Event.js"
import { Bridge, type BridgeOptions } from "../src/sandbox/Bridge.js"
import { stderrLines } from "../src/sandbox/Agent.js"
import { start, tempDir, type TestServer } from "./helpers.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const agentJs = join(root, "dist-test", "acp-agent-bridge.js")

let server: TestServer
const cleanups: Array<() => void | Promise<void>> = []

beforeAll(async () => {
  buildSync({ entryPoints: [join(root, "test/fixtures/acp-agent.ts")], outfile: agentJs, format: "esm", platform: "node", target: "node20" })
  server = await start()
}, 60_000)
afterAll(async () => {
  await server.close()
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

let n = 0
/** A bridge on a new session, and every event it posted so far. */
const bridge = (command: string, args: ReadonlyArray<string>, extra: Partial<BridgeOptions> = {}) => {
  const { dir, cleanup } = tempDir()
  const cwd = join(dir, "project")
  mkdirSync(cwd)
  const posted: Array<Event> = []
  const lines: Array<string> = []
  const recording: typeof fetch = async (input, init) => {
    if (String(input).endsWith("/events") && init?.method === "POST" && typeof init.body === "string") {
      const body = JSON.parse(init.body) as Event | Array<Event>
      posted.push(...(Array.isArray(body) ? body : [body]))
    }
    return fetch(input, init)
  }
  const b = new Bridge({
    url: server.url,
    sessionId: `b${++n}-${process.pid}`,
    create: {},
    cwd,
    command,
    args,
    graceMs: 500,
    log: (line) => lines.push(line),
    fetch: recording,
    ...extra
  })
  cleanups.push(async () => {
    b.stop()
    await b.run()
    cleanup()
  })
  return { bridge: b, posted, lines }
}

const until = async (check: () => void, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return check()
    } catch (e) {
      if (Date.now() > deadline) throw e
    }
    await new Promise((r) => setTimeout(r, 20))
  }
}

const errors = (events: ReadonlyArray<Event>) => events.filter((e) => e.type === "error")

describe("fatal and started on the wire", () => {
  it("the agent event sent once the ACP session exists says started: true", async () => {
    const b = bridge(process.execPath, [agentJs])
    void b.bridge.run()
    await until(() => expect(b.lines.some((l) => l.startsWith("ACP session "))).toBe(true))
    await until(() => expect(b.posted.find((e) => e.type === "agent" && e.name === "Scripted Agent")).toMatchObject({ started: true }))
    // Later agent events (its commands, a mode change) do not say it again.
    await until(() => expect(b.posted.filter((e) => e.type === "agent")).toHaveLength(2))
    expect(b.posted.filter((e) => e.type === "agent" && e.started === true)).toHaveLength(1)
  })

  it("the agent dying mid-turn: a fatal error with its exit code", async () => {
    const b = bridge(process.execPath, [agentJs])
    const run = b.bridge.run()
    await until(() => expect(b.lines.some((l) => l.startsWith("ACP session "))).toBe(true))
    const res = await server.request("POST", `/sessions/${(b.bridge as any).options.sessionId}/commands`, { type: "prompt", text: "crash" })
    expect(res.status).toBe(202)
    expect((await run).reason).toBe("agent_exited")
    const [error] = errors(b.posted)
    expect(error).toMatchObject({ fatal: true, code: 3 })
    expect(error!.type === "error" && error!.message).toMatch(/exited with code 3; its stderr ended with:\nboom: the scripted agent crashes on purpose$/)
  })

  it("an agent that cannot be spawned (ENOENT): a fatal error", async () => {
    const b = bridge("/nonexistent/agent", [])
    const exit = await b.bridge.run()
    expect(exit).toMatchObject({ code: 1, reason: "startup_failed" })
    expect(errors(b.posted)).toEqual([{ type: "error", message: expect.stringMatching(/ENOENT/), fatal: true }])
  })

  it("an agent that dies before its ACP session: a fatal error keeping its stderr's lines, without npm's notices", async () => {
    const script = [
      `echo "npm warn exec The following package was not found and will be installed: some-agent@1.0.0" >&2`,
      `echo "npm notice" >&2`,
      `echo "npm notice New major version of npm available! 10.8.2 -> 11.6.2" >&2`,
      `echo "npm notice To update run: npm install -g npm@11.6.2" >&2`,
      `echo "Error: no API key" >&2`,
      `echo "    at main (agent.js:1:1)" >&2`,
      `exit 7`
    ].join("; ")
    const b = bridge("sh", ["-c", script])
    const exit = await b.bridge.run()
    expect(exit).toMatchObject({ code: 1, reason: "startup_failed" })
    const [error] = errors(b.posted)
    expect(error).toMatchObject({ type: "error", fatal: true })
    expect(error!.type === "error" && error!.message).toMatch(
      /^the agent did not start an ACP session: .*; it exited with code 7; its stderr ended with:\nError: no API key\n {4}at main \(agent\.js:1:1\)$/
    )
  })

  it("a program that is not an ACP agent: a fatal error after the start timeout", async () => {
    const b = bridge(process.execPath, ["-e", "process.stdin.resume()"], { startTimeoutMs: 300 })
    const exit = await b.bridge.run()
    expect(exit).toMatchObject({ code: 1, reason: "startup_failed" })
    expect(errors(b.posted)).toEqual([{ type: "error", message: expect.stringMatching(/no answer to initialize within 300 ms/), fatal: true }])
  })
})

describe("the agent's stderr in an error", () => {
  it("keeps its line breaks, resolves colours and redraws, drops npm's own lines but not npm's errors", () => {
    const raw = [
      "npm warn exec The following package was not found and will be installed: x@1",
      "\u001b[33mWarning:\u001b[39m slow start",
      "loading 10%\rloading 100%",
      "npm notice New major version of npm available!",
      "npm error code E404",
      "Traceback:\r",
      "  line 2",
      ""
    ].join("\n")
    expect(stderrLines(raw)).toBe("Warning: slow start\nloading 100%\nnpm error code E404\nTraceback:\n  line 2")
  })

  it("a tail that starts mid-line drops that partial line", () => {
    expect(stderrLines("ial line\nwhole line\n", true)).toBe("whole line")
  })
})
