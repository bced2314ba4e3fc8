/**
 * `rein-sandbox` end to end: a real Rein server on a socket, the real
 * `rein-sandbox` process (src/sandbox/bin.ts, built by sandboxBuild.ts), and a scripted ACP agent
 * (test/fixtures/acp-agent.ts) over real stdio. Driven over HTTP, as a
 * dashboard or curl would.
 */
import { applyPatch } from "diff"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer as createNetServer } from "node:net"
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { createServer, type ReinServer } from "../src/createServer.js"
import { request, start, tempDir, type TestServer } from "./helpers.js"
import { buildAgent, buildSandboxBin } from "./sandboxBuild.js"

let bin: string
let agentJs: string

beforeAll(() => {
  bin = buildSandboxBin()
  agentJs = buildAgent("acp-agent")
  expect(existsSync(bin)).toBe(true)
}, 180_000)

interface Sandbox {
  readonly child: ChildProcess
  readonly stderr: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const sandboxes: Array<Sandbox> = []
const cleanups: Array<() => void | Promise<void>> = []

afterEach(async () => {
  for (const s of sandboxes.splice(0)) {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill("SIGKILL")
      await s.exited
    }
  }
  for (const c of cleanups.splice(0).reverse()) await c()
})

const cleanEnv = () => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("REIN_") && v !== undefined) env[k] = v
  return env
}

/** `agent`: the command after `--` (default: the scripted agent with `agentArgs`). */
const runSandbox = (
  args: ReadonlyArray<string>,
  agentArgs: ReadonlyArray<string> = [],
  env: Record<string, string> = {},
  agent: ReadonlyArray<string> = [process.execPath, agentJs, ...agentArgs]
): Sandbox => {
  const child = spawn(process.execPath, [bin, ...args, "--", ...agent], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr!.on("data", (d) => (stderr += d))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal }))
  )
  const s = { child, stderr: () => stderr, exited }
  sandboxes.push(s)
  return s
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))])

/** Polls the artifacts until `check` passes on them; the last failure is the error. */
const until = async (base: string, id: string, check: (arts: Array<any>) => void, timeoutMs = 20_000): Promise<Array<any>> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await request(base, "GET", `/sessions/${id}/artifacts`)
    try {
      check(res.body)
      return res.body
    } catch (e) {
      if (Date.now() > deadline) throw e
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

const waitStatus = async (base: string, id: string, status: string, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await request(base, "GET", `/sessions/${id}`)
    if (res.body?.status === status) return
    if (Date.now() > deadline) throw new Error(`session ${id} is ${res.body?.status}, not ${status}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const kinds = (arts: Array<any>, kind: string) => arts.filter((a) => a.kind === kind)
const texts = (arts: Array<any>) => kinds(arts, "text").map((a) => a.text)

let n = 0
/** A session with a sandbox running the scripted agent in its own directory, ready for prompts. */
const session = async (server: { url: string }, extra: ReadonlyArray<string> = []) => {
  const id = `s${++n}-${process.pid}`
  const { dir, cleanup } = tempDir()
  cleanups.push(cleanup)
  const cwd = join(dir, "project")
  mkdirSync(cwd)
  const sandbox = runSandbox(["--url", server.url, "--session", id, "--create", "--cwd", cwd, ...extra])
  // Ready once initialize and session/new were answered.
  const deadline = Date.now() + 20_000
  while (!sandbox.stderr().includes("ACP session ")) {
    if (Date.now() > deadline || sandbox.child.exitCode !== null) throw new Error(`rein-sandbox did not start: ${sandbox.stderr()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  const command = async (body: unknown) => {
    const res = await request(server.url, "POST", `/sessions/${id}/commands`, body)
    expect(res.status, res.text).toBe(202)
  }
  return { id, cwd, dir, sandbox, command, prompt: (text: string) => command({ type: "prompt", text }) }
}

describe("rein-sandbox with a scripted ACP agent", () => {
  let server: TestServer
  beforeAll(async () => {
    server = await start()
  })
  afterAll(async () => {
    await server.close()
  })

  it("holds the session: the agent artifact has its name, version, modes and commands", async () => {
    const s = await session(server)
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "agent")[0].commands).toHaveLength(2))
    const agent = kinds(arts, "agent")[0]
    expect(agent).toMatchObject({
      name: "Scripted Agent",
      version: "1.2.3",
      currentModeId: "ask",
      modes: [{ id: "ask", name: "Ask", description: "Ask before edits" }, { id: "code", name: "Code" }],
      commands: [{ name: "init", description: "Write AGENTS.md" }, { name: "compact", description: "Compact" }]
    })
    expect((await request(server.url, "GET", `/sessions/${s.id}`)).body.status).toBe("live")
  })

  it("text and reasoning stream into one artifact each, then the turn ends", async () => {
    const s = await session(server)
    await s.prompt("text")
    await waitStatus(server.url, s.id, "idle")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["Hello, world."]))
    expect(kinds(arts, "reasoning").map((a) => a.text)).toEqual(["Thinking about it."])
    expect(kinds(arts, "user_message").map((a) => a.text)).toEqual(["text"])
  })

  it("a plan keeps its priorities", async () => {
    const s = await session(server)
    await s.prompt("plan")
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "plan")).toHaveLength(1))
    expect(kinds(arts, "plan")[0].entries).toEqual([
      { content: "Read the code", priority: "high", status: "completed" },
      { content: "Fix the bug", priority: "medium", status: "in_progress" },
      { content: "Write a test", priority: "low", status: "pending" }
    ])
  })

  it("a tool call with a diff and a permission allowed over HTTP: the file changes, file_change has the exact diff", async () => {
    const s = await session(server)
    writeFileSync(join(s.cwd, "a.txt"), "one\ntwo\nthree\n")
    await s.prompt("tool-diff a.txt")
    const pending = await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
    const call = kinds(pending, "tool_call")[0]
    expect(call).toMatchObject({ toolCallId: "edit-1", title: "Edit a.txt", toolKind: "edit", status: "pending" })
    expect(call.locations).toEqual([{ path: join(s.cwd, "a.txt"), line: 1 }])
    expect(JSON.parse(call.input)).toEqual({ file_path: join(s.cwd, "a.txt") })
    // Not before the call completes: the edit may still be rejected.
    expect(kinds(pending, "file_change")).toEqual([])
    const permission = kinds(pending, "permission")[0]
    expect(permission.toolCallId).toBe("edit-1")
    expect(permission.options.map((o: any) => o.name)).toEqual(["Allow", "Always allow edits", "Reject"])
    // The request carries what approving changes (the call's diff content), for people to read first.
    expect(applyPatch("one\ntwo\nthree\n", permission.diff)).toBe("one\n2\nthree\n")
    expect(permission.diff).toMatch(/^--- a\/a\.txt\n\+\+\+ b\/a\.txt\n/)
    await s.command({ type: "permission_reply", requestId: permission.requestId, decision: "allow_once" })
    await waitStatus(server.url, s.id, "idle")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["Edited with allow."]))
    expect(kinds(arts, "tool_call")[0].status).toBe("done")
    const [change] = kinds(arts, "file_change")
    expect(change).toMatchObject({ path: "a.txt", action: "modify" })
    expect(applyPatch("one\ntwo\nthree\n", change.diff)).toBe("one\n2\nthree\n")
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("one\n2\nthree\n")
    expect(kinds(arts, "permission")[0]).toMatchObject({ decision: "allow_once", optionId: "allow" })
  })

  it("a permission rejected: the call fails, no file_change, the file stays", async () => {
    const s = await session(server)
    writeFileSync(join(s.cwd, "a.txt"), "one\ntwo\n")
    await s.prompt("tool-diff a.txt")
    const pending = await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
    await s.command({ type: "permission_reply", requestId: kinds(pending, "permission")[0].requestId, decision: "reject" })
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["Edit rejected."]))
    expect(kinds(arts, "tool_call")[0]).toMatchObject({ status: "error", output: "The user rejected the edit." })
    expect(kinds(arts, "file_change")).toEqual([])
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("one\ntwo\n")
  })

  it("a permission answered with a chosen optionId reaches the agent as that option", async () => {
    const s = await session(server)
    await s.prompt("permission")
    const pending = await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
    const permission = kinds(pending, "permission")[0]
    expect(permission.title).toBe("Ready to code?")
    // As the agent gave them, sorted by kind by the server (allow once first).
    expect(permission.options.map((o: any) => o.optionId)).toEqual(["manual", "auto", "bypass", "plan"])
    await s.command({ type: "permission_reply", requestId: permission.requestId, optionId: "bypass" })
    await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["chose bypass"]))
  })

  it("abort during streaming: session/cancel, the turn ends cancelled, and the next prompt runs", async () => {
    const s = await session(server)
    await s.prompt("slow-stream")
    await until(server.url, s.id, (arts) => expect(texts(arts)[0] ?? "").toContain("chunk 3 "))
    await s.command({ type: "abort" })
    await waitStatus(server.url, s.id, "idle")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    expect(texts(arts)[0]).not.toContain("chunk 399")
    await s.prompt("echo still here")
    await until(server.url, s.id, (arts) => expect(texts(arts)[1]).toBe("still here"))
  })

  it("abort during a pending permission: it is answered cancelled at once, the call and the permission show it", async () => {
    const s = await session(server)
    writeFileSync(join(s.cwd, "a.txt"), "one\ntwo\n")
    await s.prompt("tool-diff a.txt")
    await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
    await s.command({ type: "abort" })
    await waitStatus(server.url, s.id, "idle")
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")[0].decision).toBe("cancelled"))
    expect(kinds(arts, "tool_call")[0].status).toBe("cancelled")
    expect(kinds(arts, "file_change")).toEqual([])
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("one\ntwo\n")
  })

  it("a second prompt during a turn is queued, said so, and runs after it in order", async () => {
    const s = await session(server)
    await s.prompt("echo first")
    await s.prompt("echo second")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["first", "second"]))
    const queued = kinds(arts, "custom").filter((a) => a.name === "rein.prompt_queued")
    expect(queued.map((a) => a.data)).toEqual([{ text: "echo second", position: 1 }])
    await waitStatus(server.url, s.id, "idle")
  })

  it("fs: reads and writes inside --cwd, each write a file_change; paths outside are refused with a JSON-RPC error", async () => {
    const s = await session(server)
    writeFileSync(join(s.cwd, "notes.txt"), "alpha\nbeta\ngamma\n")
    await s.prompt("fs notes.txt")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    expect(texts(arts)[0]).toBe(`read "alpha\\nbeta\\ngamma\\n"; line 2 "beta\\n"`)
    expect(readFileSync(join(s.cwd, "notes.txt"), "utf8")).toBe("ALPHA\nBETA\nGAMMA\n")
    expect(readFileSync(join(s.cwd, "sub", "created.txt"), "utf8")).toBe("fresh\n")
    const changes = kinds(arts, "file_change")
    expect(changes.map((c) => [c.path, c.action])).toEqual([["notes.txt", "modify"], ["sub/created.txt", "create"]])
    expect(applyPatch("alpha\nbeta\ngamma\n", changes[0].diff)).toBe("ALPHA\nBETA\nGAMMA\n")

    writeFileSync(join(s.dir, "secret.txt"), "secret")
    await s.prompt(`fs-outside ${join(s.dir, "secret.txt")}`)
    const after = await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(3))
    expect(texts(after)[1]).toMatch(/^refused: -32602 .*outside the working directory/)
    expect(texts(after)[2]).toBe("write refused: -32602")
    expect(existsSync(join(s.dir, "escape.txt"))).toBe(false)
  })

  it("terminal: the command runs in --cwd, its output goes into the tool call", async () => {
    const s = await session(server)
    await s.prompt("terminal")
    const arts = await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    expect(texts(arts)[0]).toMatch(/^exit 4; output /)
    const call = kinds(arts, "tool_call")[0]
    expect(call).toMatchObject({ title: "Run echo", toolKind: "execute", status: "done" })
    expect(call.output).toContain(`out-${s.cwd}`)
    expect(call.output).toContain("err")
  })

  it("usage: the context window, and the cumulative cost counted once", async () => {
    const s = await session(server)
    await s.prompt("usage")
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "usage")[0]?.context?.used).toBe(5400))
    expect(kinds(arts, "usage")).toHaveLength(1)
    expect(kinds(arts, "usage")[0]).toMatchObject({ costUsd: 0.75, context: { used: 5400, size: 200000 } })
  })

  it("updates Rein has no event for, or that fail the SDK's schema, arrive as custom acp.<variant>", async () => {
    const s = await session(server)
    await s.prompt("unknown")
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "custom")).toHaveLength(2))
    expect(kinds(arts, "custom").map((a) => [a.name, a.data.sessionUpdate])).toEqual([
      ["acp.future_thing", "future_thing"],
      ["acp.usage_update", "usage_update"]
    ])
  })

  it("the agent's title for the session (session_info_update) is the session's summary", async () => {
    const s = await session(server)
    await s.prompt("title Fixing the flaky build")
    await waitStatus(server.url, s.id, "idle")
    expect((await request(server.url, "GET", `/sessions/${s.id}`)).body.summary).toBe("Fixing the flaky build")
  })

  it("set_mode is session/set_mode; the agent artifact follows the current mode", async () => {
    const s = await session(server)
    await s.command({ type: "set_mode", modeId: "code" })
    await until(server.url, s.id, (arts) => expect(kinds(arts, "agent")[0].currentModeId).toBe("code"))
  })

  it("a JSON-RPC error answering the prompt: an error, then turn_end error", async () => {
    const s = await session(server)
    await s.prompt("fail")
    await waitStatus(server.url, s.id, "idle")
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "error")).toHaveLength(1))
    expect(kinds(arts, "error")[0].message).toContain("scripted failure")
    await s.prompt("echo fine")
    await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["fine"]))
  })

  it("the agent crashing: an error with its exit code and stderr, the turn ended, rein-sandbox exits non-zero", async () => {
    const s = await session(server)
    await s.prompt("crash")
    const exit = await withTimeout(s.sandbox.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(1)
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "error")).toHaveLength(1))
    expect(kinds(arts, "error")[0].message).toMatch(/exited with code 3[\s\S]*boom: the scripted agent crashes on purpose/)
    expect(kinds(arts, "error")[0]).toMatchObject({ code: 3, fatal: true })
    expect(texts(arts)).toEqual(["about to crash"])
    // The turn was ended (the session is not left "live"), and the sandbox is gone.
    await waitStatus(server.url, s.id, "disconnected")
  })

  it("the agent crashing with prompts queued: the transcript says they were not run", async () => {
    const s = await session(server)
    await s.prompt("crash-on-cancel")
    await until(server.url, s.id, (arts) => expect(texts(arts)).toEqual(["waiting to crash"]))
    await s.prompt("echo one")
    await s.prompt("echo two")
    await until(server.url, s.id, (arts) => expect(kinds(arts, "custom").filter((c) => c.name === "rein.prompt_queued")).toHaveLength(2))
    await s.command({ type: "abort" })
    const exit = await withTimeout(s.sandbox.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(1)
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "error")).toHaveLength(2))
    expect(kinds(arts, "error")[1]).toMatchObject({ code: "prompts_not_run" })
    expect(kinds(arts, "error")[1].message).toMatch(/^2 queued prompts were not run: .*exited with code 3/)
    // Nothing of the queued prompts ran.
    expect(texts(arts)).toEqual(["waiting to crash"])
  })

  it("an agent that dies before its ACP session: an error with its exit code and stderr, exit 1", async () => {
    const id = `dies-${process.pid}`
    const s = runSandbox(["--url", server.url, "--session", id, "--create"], ["--die-at-start"])
    const exit = await withTimeout(s.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(1)
    const arts = await until(server.url, id, (arts) => expect(kinds(arts, "error")).toHaveLength(1))
    expect(kinds(arts, "error")[0].message).toMatch(
      /did not start an ACP session: .*; it exited with code 5; its stderr ended with:\nscripted agent: no configuration, giving up/
    )
    expect(kinds(arts, "error")[0].fatal).toBe(true)
    // No turn ever ran, and still the session needs someone: its agent could not start.
    const attention = async () => ((await request(server.url, "GET", "/sessions?attention=1")).body as Array<any>).map((r) => r.id)
    expect((await request(server.url, "GET", `/sessions/${id}`)).body.lastStopReason).toBe("error")
    expect(await attention()).toContain(id)
    // An agent that starts on it again clears that.
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const again = runSandbox(["--url", server.url, "--session", id, "--cwd", dir])
    await until(server.url, id, (arts) => expect(kinds(arts, "agent")[0]?.name).toBe("Scripted Agent"))
    const deadline = Date.now() + 20_000
    while ((await attention()).includes(id)) {
      if (Date.now() > deadline) throw new Error(`still needs attention: ${again.stderr()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    expect((await request(server.url, "GET", `/sessions/${id}`)).body.lastStopReason).toBeNull()
  })

  it("an agent that cannot be spawned (ENOENT): a fatal error, the session needs someone, exit 1", async () => {
    const id = `enoent-${process.pid}`
    const s = runSandbox(["--url", server.url, "--session", id, "--create"], [], {}, ["/nonexistent/agent"])
    expect((await withTimeout(s.exited, 20_000, "rein-sandbox to exit")).code).toBe(1)
    const arts = await until(server.url, id, (arts) => expect(kinds(arts, "error")).toHaveLength(1))
    expect(kinds(arts, "error")[0]).toMatchObject({ fatal: true, message: expect.stringMatching(/cannot start the agent "\/nonexistent\/agent": .*ENOENT/) })
    expect(((await request(server.url, "GET", "/sessions?attention=1")).body as Array<any>).map((r) => r.id)).toContain(id)
  })

  it("a program that never answers initialize: an error naming it after --start-timeout, the program stopped, exit 1", async () => {
    const id = `mute-${process.pid}`
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const pidFile = join(dir, "mute.pid")
    // Not an ACP agent: it reads its stdin and says nothing.
    const mute = `require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); process.stdin.resume()`
    const s = runSandbox(["--url", server.url, "--session", id, "--create", "--start-timeout", "500", "--grace", "200"], [], {}, [
      process.execPath,
      "-e",
      mute
    ])
    const exit = await withTimeout(s.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code, s.stderr()).toBe(1)
    const arts = await until(server.url, id, (arts) => expect(kinds(arts, "error")).toHaveLength(1))
    expect(kinds(arts, "error")[0].message).toMatch(/did not start an ACP session: no answer to initialize within 500 ms \(is it an ACP agent/)
    expect(s.stderr()).toMatch(/no answer to initialize within 500 ms/)
    expect(alive(Number(readFileSync(pidFile, "utf8")))).toBe(false)
    await waitStatus(server.url, id, "disconnected")
  })

  it("stopping gives what the agent started the grace too, not only the agent", async () => {
    const s = await session(server)
    const pidFile = join(s.dir, "tidy.pid")
    const doneFile = join(s.dir, "tidy.done")
    await s.prompt(`spawn-tidy-child ${pidFile} ${doneFile}`)
    await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    // The agent exits at once on SIGTERM; its child needs 300 ms of the 5 s grace to tidy up.
    expect((await request(server.url, "DELETE", `/sessions/${s.id}`)).status).toBe(204)
    expect((await withTimeout(s.sandbox.exited, 20_000, "rein-sandbox to exit")).code).toBe(0)
    expect(readFileSync(doneFile, "utf8")).toBe("tidy\n")
    expect(alive(Number(readFileSync(pidFile, "utf8")))).toBe(false)
  })

  it("the session deleted: the agent and everything it started are stopped, exit 0", async () => {
    const s = await session(server)
    const pidFile = join(s.dir, "child.pid")
    await s.prompt(`spawn-child ${pidFile}`)
    await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    const childPid = Number(readFileSync(pidFile, "utf8"))
    expect(alive(childPid)).toBe(true)
    expect((await request(server.url, "DELETE", `/sessions/${s.id}`)).status).toBe(204)
    const exit = await withTimeout(s.sandbox.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(0)
    await waitGone(childPid)
  })

  it("SIGTERM: a clean stop, the running turn ended cancelled, the agent's group gone, exit 0", async () => {
    const s = await session(server)
    const pidFile = join(s.dir, "child.pid")
    await s.prompt(`spawn-child ${pidFile}`)
    await until(server.url, s.id, (arts) => expect(texts(arts)).toHaveLength(1))
    const childPid = Number(readFileSync(pidFile, "utf8"))
    writeFileSync(join(s.cwd, "a.txt"), "one\ntwo\n")
    await s.prompt("tool-diff a.txt")
    await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
    s.sandbox.child.kill("SIGTERM")
    const exit = await withTimeout(s.sandbox.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(0)
    await waitGone(childPid)
    await waitStatus(server.url, s.id, "disconnected")
    // The turn ended cancelled before the sandbox left: its permission and tool call say so.
    const arts = await until(server.url, s.id, (arts) => expect(kinds(arts, "permission")[0].decision).toBe("cancelled"))
    expect(kinds(arts, "tool_call")[0].status).toBe("cancelled")
  })
})

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
const waitGone = async (pid: number, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  while (alive(pid)) {
    if (Date.now() > deadline) throw new Error(`process ${pid} is still alive`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = createNetServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })

describe("rein-sandbox restarted on the same session", () => {
  it("an event the server refuses (a tool call id reused by the new agent) costs only itself, not its batch", async () => {
    const server = await start()
    cleanups.push(() => server.close())
    const first = await session(server)
    await first.prompt("terminal")
    await until(server.url, first.id, (arts) => expect(texts(arts)).toHaveLength(1))
    first.sandbox.child.kill("SIGTERM")
    expect((await withTimeout(first.sandbox.exited, 20_000, "rein-sandbox to exit")).code).toBe(0)
    const second = runSandbox(["--url", server.url, "--session", first.id, "--cwd", first.cwd])
    const deadline = Date.now() + 20_000
    while (!second.stderr().includes("ACP session ")) {
      if (Date.now() > deadline || second.child.exitCode !== null) throw new Error(`rein-sandbox did not start: ${second.stderr()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect((await request(server.url, "POST", `/sessions/${first.id}/commands`, { type: "prompt", text: "terminal" })).status).toBe(202)
    const arts = await until(server.url, first.id, (arts) => expect(texts(arts)).toHaveLength(2)).catch(async (e) => {
      console.log("rein-sandbox stderr and the artifacts at the failure:", second.stderr(), JSON.stringify((await request(server.url, "GET", `/sessions/${first.id}/artifacts`)).body))
      throw e
    })
    expect(texts(arts)[1]).toMatch(/^exit 4; output /)
    expect(second.stderr()).toContain("already started")
    await waitStatus(server.url, first.id, "idle")
  })
})

describe("rein-sandbox across a server restart", () => {
  it("a turn streaming while the server restarts (SQLite file): nothing lost, nothing doubled", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const port = await freePort()
    const dbPath = join(dir, "rein.db")
    let server: ReinServer = await createServer({ port, dbPath })
    cleanups.push(() => server.close())
    const url = `http://127.0.0.1:${port}`
    const s = await session({ url })
    await s.prompt("drip 40 60")
    await until(url, s.id, (arts) => expect(texts(arts)[0] ?? "").toContain("c5;"))
    await server.close()
    await new Promise((r) => setTimeout(r, 700))
    server = await createServer({ port, dbPath })
    const expected = Array.from({ length: 40 }, (_, i) => `c${i};`).join("")
    const arts = await until(url, s.id, (arts) => expect(texts(arts)).toEqual([expected]), 40_000)
    expect(kinds(arts, "user_message")).toHaveLength(1)
    await waitStatus(url, s.id, "idle", 20_000)
  }, 90_000)
})

describe("rein-sandbox with auth", () => {
  const token = "s3cret-token"
  let server: TestServer
  beforeAll(async () => {
    server = await start({ token })
  })
  afterAll(async () => {
    await server.close()
  })
  const auth = { authorization: `Bearer ${token}` }

  it("REIN_TOKEN, REIN_URL and REIN_SESSION reach rein-sandbox but not the agent or its commands", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const id = "auth-env"
    const s = runSandbox(["--create", "--cwd", dir], [], { REIN_TOKEN: token, REIN_URL: server.url, REIN_SESSION: id })
    await withTimeout((async () => {
      while (!s.stderr().includes("ACP session ")) {
        if (s.child.exitCode !== null) throw new Error(`rein-sandbox exited: ${s.stderr()}`)
        await new Promise((r) => setTimeout(r, 20))
      }
    })(), 20_000, "rein-sandbox ready")
    expect((await request(server.url, "POST", `/sessions/${id}/commands`, { type: "prompt", text: "env" }, auth)).status).toBe(202)
    const deadline = Date.now() + 20_000
    for (;;) {
      const arts = (await request(server.url, "GET", `/sessions/${id}/artifacts`, undefined, auth)).body as Array<any>
      const said = texts(arts).find((t: string) => t.startsWith("agent:"))
      if (said !== undefined) {
        expect(said).toBe("agent:none:none term:none")
        break
      }
      if (Date.now() > deadline) throw new Error(`no answer: ${JSON.stringify(arts)}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  })

  it("a refused token: exit 1, saying why; no agent is started", async () => {
    const created = await request(server.url, "POST", "/sessions/auth-a", {}, auth)
    expect(created.status).toBe(201)
    const s = runSandbox(["--url", server.url, "--session", "auth-a", "--token", "wrong"])
    const exit = await withTimeout(s.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(1)
    expect(s.stderr()).toMatch(/cannot hold session auth-a's command stream/)
    expect(s.stderr()).not.toContain("ACP session")
  })

  it("with the session's sandbox token: it runs, and the session deleted is told apart from a refusal (exit 0)", async () => {
    const created = await request(server.url, "POST", "/sessions/auth-b", {}, auth)
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const s = runSandbox(["--url", server.url, "--session", "auth-b", "--token", created.body.sandboxToken, "--cwd", dir])
    const deadline = Date.now() + 20_000
    while (!s.stderr().includes("ACP session ")) {
      if (Date.now() > deadline || s.child.exitCode !== null) throw new Error(`rein-sandbox did not start: ${s.stderr()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect((await request(server.url, "POST", "/sessions/auth-b/commands", { type: "prompt", text: "text" }, auth)).status).toBe(202)
    const deadline2 = Date.now() + 20_000
    for (;;) {
      const arts = (await request(server.url, "GET", "/sessions/auth-b/artifacts", undefined, auth)).body
      if (texts(arts).length === 1) break
      if (Date.now() > deadline2) throw new Error("no answer")
      await new Promise((r) => setTimeout(r, 50))
    }
    expect((await request(server.url, "DELETE", "/sessions/auth-b", undefined, auth)).status).toBe(204)
    const exit = await withTimeout(s.exited, 20_000, "rein-sandbox to exit")
    expect(exit.code).toBe(0)
    expect(s.stderr()).toContain("session auth-b was deleted")
  })

})

describe("rein-sandbox flags", () => {
  const run = (args: ReadonlyArray<string>) => {
    const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout!.on("data", (d) => (out += d))
    child.stderr!.on("data", (d) => (out += d))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
      child.once("exit", (code, signal) => r({ code, signal }))
    )
    const s = { child, stderr: () => out, exited }
    sandboxes.push(s)
    return s
  }

  it("--help names every flag and the agent command after --", async () => {
    const s = run(["--help"])
    expect((await withTimeout(s.exited, 20_000, "exit")).code).toBe(0)
    for (const flag of ["--url", "--session", "--token", "--cwd", "--create", "--project", "--grace", "--start-timeout", "<agent command>"]) {
      expect(s.stderr()).toContain(flag)
    }
  })

  it("--help says what is confined to --cwd (what rein-sandbox serves) and what is not (the agent's own tools)", async () => {
    const s = run(["--help"])
    expect((await withTimeout(s.exited, 20_000, "exit")).code).toBe(0)
    const help = s.stderr().replace(/\u001b\[[0-9;]*m/g, "").replace(/\s+/g, " ")
    expect(help).not.toContain("its file and terminal access is confined to it")
    expect(help).toContain("(ACP fs/*) and the terminals (ACP terminal/*) that rein-sandbox serves the agent are confined to --cwd")
    expect(help).toContain("The agent's own tools are not")
  })

  it("no agent command, a bad --url, or --project without --create: a non-zero exit that says so", async () => {
    const a = run(["--url", "http://127.0.0.1:1", "--session", "x"])
    expect((await withTimeout(a.exited, 20_000, "exit")).code).toBe(1)
    expect(a.stderr()).toContain("Missing argument <agent command>")
    const b = run(["--url", "ftp://x", "--session", "x", "--", "true"])
    expect((await withTimeout(b.exited, 20_000, "exit")).code).toBe(1)
    expect(b.stderr()).toContain("url must be an http:// or https:// URL")
    const c = run(["--url", "http://127.0.0.1:1", "--session", "x", "--project", "p", "--", "true"])
    expect((await withTimeout(c.exited, 20_000, "exit")).code).toBe(2)
    expect(c.stderr()).toContain("--project needs --create")
  })

  it("a server not there yet is waited for, said as rein says it; SIGTERM meanwhile is a clean stop (exit 0)", async () => {
    const port = await freePort()
    const s = run(["--url", `http://127.0.0.1:${port}`, "--session", "x", "--", "true"])
    const deadline = Date.now() + 20_000
    while (!s.stderr().includes("reconnecting")) {
      if (Date.now() > deadline) throw new Error(`no reconnect: ${s.stderr()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(s.stderr()).toContain(`rein-sandbox: cannot reach the Rein server at http://127.0.0.1:${port}: ECONNREFUSED; reconnecting`)
    expect(s.stderr()).not.toContain("fetch failed")
    s.child.kill("SIGTERM")
    expect((await withTimeout(s.exited, 20_000, "exit")).code).toBe(0)
    expect(s.stderr()).toContain("rein-sandbox: stopped")
  })

  it("--create with no server: cannot reach the Rein server at <url>, exit 1", async () => {
    const port = await freePort()
    const s = run(["--url", `http://127.0.0.1:${port}`, "--session", "x", "--create", "--", "true"])
    expect((await withTimeout(s.exited, 20_000, "exit")).code).toBe(1)
    expect(s.stderr()).toContain(`rein-sandbox: cannot reach the Rein server at http://127.0.0.1:${port}: ECONNREFUSED`)
    expect(s.stderr()).not.toContain("fetch failed")
  })

  it("a session that does not exist (no --create): not found, exit 1, no agent started", async () => {
    const server = await start()
    cleanups.push(() => server.close())
    const s = run(["--url", server.url, "--session", "missing", "--", process.execPath, agentJs])
    expect((await withTimeout(s.exited, 20_000, "exit")).code).toBe(1)
    expect(s.stderr()).toContain(`rein-sandbox: session missing not found at ${server.url}`)
    expect(s.stderr()).not.toContain("was deleted")
    expect(s.stderr()).not.toContain("ACP session")
  })
})

describe("rein-sandbox taken over (issue 20)", () => {
  it("a second rein-sandbox on the session supersedes the first: it says so and exits 1, without reconnecting; the second keeps the session", async () => {
    const server = await start()
    cleanups.push(() => server.close())
    const first = await session(server)
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const second = runSandbox(["--url", server.url, "--session", first.id, "--cwd", dir])
    const exit = await withTimeout(first.sandbox.exited, 20_000, "the first rein-sandbox to exit")
    expect(exit.code).toBe(1)
    expect(first.sandbox.stderr()).toContain(`another sandbox took session ${first.id} over; this one stops`)
    expect(first.sandbox.stderr()).not.toContain("reconnecting")
    await waitStatus(server.url, first.id, "live")
    expect(second.child.exitCode).toBeNull()
    // The second answers prompts now.
    const deadline = Date.now() + 20_000
    while (!second.stderr().includes("ACP session ")) {
      if (Date.now() > deadline) throw new Error(`the second did not start: ${second.stderr()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    await first.prompt("echo still here")
    await until(server.url, first.id, (arts) => expect(texts(arts)).toContain("still here"))
  })
})
