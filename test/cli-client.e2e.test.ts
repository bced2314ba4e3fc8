/**
 * `rein`, the terminal client, end to end: the real bin (`node dist/cli/bin.js`,
 * built fresh) against a real server, as a user drives it. Piped output and
 * `--json` are read from the child's stdout; the terminal case runs in a
 * tmux pseudo-terminal (a private socket per test file) and asserts on the
 * screen.
 */
import { type ChildProcess, execFileSync, execSync, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync } from "node:fs"
import { createServer as createHttpServer, type Server } from "node:http"
import { createServer as createNetServer } from "node:net"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { eventually, request, sse, type SseClient, start, tempDir, type TestServer } from "./helpers.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const bin = join(root, "dist", "cli", "bin.js")

beforeAll(() => {
  execSync("npx tsc -p tsconfig.build.json", { cwd: root, stdio: "pipe", timeout: 120_000 })
  expect(existsSync(bin)).toBe(true)
}, 180_000)

const ESC = /\x1b/

/** The environment without the machine's REIN_* settings. */
const cleanEnv = (extra: Record<string, string> = {}) => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("REIN_") && k !== "NO_COLOR" && k !== "FORCE_COLOR" && v !== undefined) env[k] = v
  }
  return { ...env, ...extra }
}

interface Done {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

interface Running {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<Done>
  /** Resolves once stdout satisfies `check`; rejects after `timeoutMs` or when the process exits first. */
  readonly waitFor: (check: (out: string) => boolean, what: string, timeoutMs?: number) => Promise<void>
}

const children: Array<ChildProcess> = []
const servers: Array<TestServer> = []
const streams: Array<SseClient> = []
const cleanups: Array<() => void | Promise<void>> = []

afterEach(async () => {
  for (const s of streams.splice(0)) s.close()
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r))
      child.kill("SIGKILL")
      await gone
    }
  }
  await Promise.all(servers.splice(0).map((s) => s.close()))
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Starts `rein args...`; stdin is a pipe (closed at once unless `input` is given as a string). */
const spawnRein = (args: ReadonlyArray<string>, options: { env?: Record<string, string>; input?: string } = {}): Running => {
  const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(options.env), stdio: ["pipe", "pipe", "pipe"] })
  children.push(child)
  let stdout = ""
  let stderr = ""
  const listeners = new Set<() => void>()
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString()
    listeners.forEach((l) => l())
  })
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
  if (options.input !== undefined) child.stdin!.end(options.input)
  const exited = new Promise<Done>((resolve) =>
    child.on("close", (code) => {
      listeners.forEach((l) => l())
      resolve({ code, stdout, stderr })
    })
  )
  const waitFor = (check: (out: string) => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        listeners.delete(listener)
      }
      const listener = () => {
        if (check(stdout)) {
          done()
          resolve()
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`rein exited before ${what}; stdout: ${stdout}\nstderr: ${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out waiting for ${what}; stdout: ${stdout}\nstderr: ${stderr}`))
      }, timeoutMs)
      listeners.add(listener)
      listener()
    })
  return { child, stdout: () => stdout, stderr: () => stderr, exited, waitFor }
}

/** Runs `rein args...` to its end, with a client-side timeout. */
const rein = async (args: ReadonlyArray<string>, options: { env?: Record<string, string>; input?: string } = {}): Promise<Done> => {
  const r = spawnRein(args, { input: "", ...options })
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`rein ${args.join(" ")} did not finish; stdout: ${r.stdout()} stderr: ${r.stderr()}`)), 30_000)
  })
  try {
    return await Promise.race([r.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

const startServer = async (options: Parameters<typeof start>[0] = {}) => {
  const s = await start({ bootstrapTimeout: 600_000, ...options })
  servers.push(s)
  return s
}

/** A sandbox: holds the command stream open and posts events. */
const sandbox = async (url: string, id: string, headers: Record<string, string> = {}) => {
  const commands = await sse(`${url}/sessions/${id}/commands`, headers)
  streams.push(commands)
  expect(commands.status).toBe(200)
  return {
    commands,
    post: async (...events: Array<Record<string, unknown>>) => {
      const res = await request(url, "POST", `/sessions/${id}/events`, events, headers)
      expect(res.status, res.text).toBe(202)
    },
    /** The next command (from index `from`) of a type. */
    command: (type: string, from = 0) => commands.waitFor((e) => e.event === "command" && e.data.type === type, 10_000, from)
  }
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// tmux: a pseudo-terminal with a screen to read.

const hasTmux = existsSync("/usr/bin/tmux") || (() => {
  try {
    execFileSync("tmux", ["-V"], { stdio: "pipe" })
    return true
  } catch {
    return false
  }
})()
const socket = `rein-test-${process.pid}-${randomUUID().slice(0, 8)}`
const tmux = (...args: Array<string>) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
afterAll(() => {
  try {
    tmux("kill-server")
  } catch {
    // no server was started
  }
})

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs `rein args` in a fresh tmux window 120x40; `EXIT=<code>` is printed when it ends. */
const terminal = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const name = `t${randomUUID().slice(0, 8)}`
  const vars = Object.entries({ ...env }).map(([k, v]) => `${k}=${shellQuote(v)}`).join(" ")
  const cmd = `env -u NO_COLOR -u REIN_URL -u REIN_TOKEN ${vars} TERM=xterm-256color ${shellQuote(process.execPath)} ${shellQuote(bin)} ${
    args.map(shellQuote).join(" ")
  }; echo EXIT=$?; sleep 600`
  tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd)
  cleanups.push(() => void tmux("kill-session", "-t", name))
  const screen = (escapes = false) => tmux("capture-pane", "-p", ...(escapes ? ["-e"] : []), "-t", name)
  return {
    screen,
    keys: (...keys: Array<string>) => void tmux("send-keys", "-t", name, ...keys),
    /** Waits until the screen satisfies `check`; client-side timeout. */
    waitFor: async (check: (screen: string) => boolean, what: string, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const s = screen()
        if (check(s)) return s
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${s}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }
}

const count = (haystack: string, needle: string) => haystack.split(needle).length - 1

// ---------------------------------------------------------------------------------------------------------------

describe("rein: sessions, create, rm", () => {
  it("creates, lists (table and --json, by project), removes; errors are the server's message and exit 1", async () => {
    const s = await startServer()
    const url = ["--url", s.url]
    const created = await rein([...url, "create", "a1", "--project", "web"])
    expect(created).toMatchObject({ code: 0, stderr: "" })
    expect(created.stdout).toBe("created a1 (bootstrapping, project web)\n")
    expect((await rein([...url, "create", "b2"])).code).toBe(0)
    const json = await rein([...url, "create", "c3", "--project", "api", "--json"])
    expect(JSON.parse(json.stdout)).toMatchObject({ id: "c3", status: "bootstrapping", project: "api", summary: null })

    const again = await rein([...url, "create", "a1"])
    expect(again).toMatchObject({ code: 1, stdout: "" })
    expect(again.stderr).toBe("rein: session a1 already exists\n")
    const bad = await rein([...url, "create", "no spaces"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^rein: id: .*must match/)

    const table = await rein([...url, "sessions"])
    expect(table.code).toBe(0)
    expect(table.stdout).not.toMatch(ESC)
    const lines = table.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^\s+ID\s+STATE\s+PROJECT\s+ACTIVE\s+COST\s+SUMMARY$/)
    // All three starting (working): the most recently active first.
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/).slice(0, 3))).toEqual([
      ["c3", "starting", "api"],
      ["b2", "starting", "-"],
      ["a1", "starting", "web"]
    ])

    const listed = await rein([...url, "sessions", "--json", "--project", "web"])
    const records = listed.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(records).toEqual([await s.getSession("a1")])
    expect((await rein([...url, "sessions", "--project", "none"])).stdout).toBe("no sessions in project none\n")

    expect(await rein([...url, "rm", "b2"])).toMatchObject({ code: 0, stdout: "removed b2\n" })
    expect(await s.getSession("b2")).toBeUndefined()
    expect(await rein([...url, "rm", "b2"])).toMatchObject({ code: 1, stderr: "rein: session b2 not found\n" })
  })

  it("marks a session waiting for an approval with !", async () => {
    const s = await startServer()
    await s.createSession("calm")
    await s.createSession("waits")
    const sb = await sandbox(s.url, "waits")
    await sb.post({ type: "permission_request", requestId: "r1", title: "Run tests?" })
    const out = (await rein(["--url", s.url, "sessions"])).stdout.split("\n")
    expect(out.find((l) => l.includes("waits"))).toMatch(/^!\s+waits\s+needs approval \(1\)/)
    expect(out.find((l) => l.includes("calm"))).toMatch(/^\s+calm\s+starting/)
    const json = (await rein(["--url", s.url, "sessions", "--json"])).stdout.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(json.map((x) => [x.id, x.pendingPermissions])).toEqual([["waits", 1], ["calm", 0]])

    // Only the ones that need you; the cost column from the record's usage.
    const attention = (await rein(["--url", s.url, "sessions", "--attention"])).stdout.trimEnd().split("\n")
    expect(attention.slice(1).map((l) => l.trim().split(/\s+/)[1])).toEqual(["waits"])
    await sb.post({ type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 1.5 })
    const costed = (await rein(["--url", s.url, "sessions"])).stdout.split("\n")
    expect(costed.find((l) => l.includes("waits"))).toMatch(/^!\s+waits\s+needs approval \(1\)\s+-\s+\d+s\s+\$1\.50/)
    // No cost reported: left out, not a dash.
    expect(costed.find((l) => l.includes("calm"))).toMatch(/^\s+calm\s+starting\s+-\s+\d+s$/)
  })

  it("sessions --watch shows a new approval request at once, from the record's pendingPermissions", async () => {
    const s = await startServer()
    await s.createSession("w1")
    const sb = await sandbox(s.url, "w1")
    const plain = spawnRein(["--url", s.url, "sessions", "--watch"])
    const view = spawnRein(["--url", s.url, "sessions", "--watch", "--attention", "--json"])
    await plain.waitFor((o) => /w1\s+working/.test(o), "the table")
    await view.waitFor((o) => o.includes("snapshot_complete"), "the attention snapshot")
    await sb.post({ type: "permission_request", requestId: "r1", title: "Run tests?" })
    await plain.waitFor((o) => /^~ !\s+w1\s+needs approval/m.test(o), "the ! mark")
    await view.waitFor((o) => o.includes(`"session_created"`), "the session entering the attention view")
    await request(s.url, "POST", "/sessions/w1/commands", { type: "permission_reply", requestId: "r1", decision: "allow_once" })
    await plain.waitFor((o) => /^~\s{2,}w1\s+working/m.test(o), "the mark gone")
    await view.waitFor((o) => o.includes(`"session_removed"`), "the session leaving the attention view")
    plain.child.kill("SIGINT")
    view.child.kill("SIGINT")
    expect((await plain.exited).code).toBe(0)
  })

  it("sessions --watch: the table, then one line per change; --json the stream's events", async () => {
    const s = await startServer()
    await s.createSession("w1", "web")
    const plain = spawnRein(["--url", s.url, "sessions", "--watch"])
    const json = spawnRein(["--url", s.url, "sessions", "--watch", "--json"])
    await plain.waitFor((o) => /w1\s+starting/.test(o), "the table")
    await json.waitFor((o) => o.includes("snapshot_complete"), "the snapshots")
    await s.createSession("w2", "web")
    await plain.waitFor((o) => /^\+\s+w2\s+starting/m.test(o), "the created line")
    const sb = await sandbox(s.url, "w1")
    await plain.waitFor((o) => /^~\s+w1\s+working/m.test(o), "the status change")
    sb.commands.close()
    await request(s.url, "DELETE", "/sessions/w2")
    await plain.waitFor((o) => /^- w2$/m.test(o), "the removal")
    await json.waitFor((o) => o.includes(`"session_removed"`), "the removal event")
    expect(plain.stdout()).not.toMatch(ESC)
    const events = json.stdout().trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(events[0]).toMatchObject({ event: "session_snapshot", session: { id: "w1", status: "bootstrapping", pendingPermissions: 0 } })
    expect(events[1]).toEqual({ event: "snapshot_complete" })
    expect(events.slice(2)).toEqual(expect.arrayContaining([
      { event: "session_created", session: expect.objectContaining({ id: "w2", project: "web" }) },
      { event: "session_updated", id: "w1", fields: { status: "live" } },
      { event: "session_removed", id: "w2" }
    ]))
    // Ctrl-C (SIGINT) ends it cleanly.
    plain.child.kill("SIGINT")
    expect((await plain.exited).code).toBe(0)
  })
})

describe("rein sessions: order, states in words, --status (issue 21)", () => {
  it("needs you first, then working, then the rest by last activity; the state's words; cost as the dashboard says it", async () => {
    const s = await startServer()
    for (const id of ["done1", "stopped1", "asks", "gone", "busy"]) await s.createSession(id)
    const done = await sandbox(s.url, "done1")
    await done.post({ type: "turn_start" }, { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.001 }, { type: "turn_end", stopReason: "end_turn" })
    const stopped = await sandbox(s.url, "stopped1")
    await stopped.post({ type: "turn_start" }, { type: "turn_end", stopReason: "cancelled" })
    const asks = await sandbox(s.url, "asks")
    await asks.post({ type: "permission_request", requestId: "r1", title: "ok?" })
    const gone = await sandbox(s.url, "gone")
    gone.commands.close()
    await eventually(async () => (await s.getSession("gone"))?.status === "disconnected", 10_000, "gone to disconnect")
    const busy = await sandbox(s.url, "busy")
    await busy.post({ type: "turn_start" }, { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 2 })

    const url = ["--url", s.url]
    const listed = await rein([...url, "sessions"])
    expect(listed).toMatchObject({ code: 0, stderr: "" })
    const rows = listed.stdout.trimEnd().split("\n").slice(1)
    const cells = (id: string) => rows.find((l) => l.includes(` ${id} `) || l.endsWith(` ${id}`))!
    expect(rows.map((l) => l.slice(3).split(/\s+/)[0])).toEqual(expect.arrayContaining(["asks", "busy", "gone", "stopped1", "done1"]))
    expect(rows[0]).toMatch(/^!\s+asks\s+needs approval \(1\)\s/)
    expect(rows[1]).toMatch(/^\s+busy\s+working\s+-\s+\d+s\s+\$2\.00$/)
    expect(cells("stopped1")).toMatch(/^\s+stopped1\s+stopped\s+-\s+\d+s$/)
    expect(cells("done1")).toMatch(/^\s+done1\s+done\s+-\s+\d+s\s+<\$0\.01$/)
    expect(cells("gone")).toMatch(/^\s+gone\s+disconnected\s/)
    // The rest: the most recently active first.
    const json = (await rein([...url, "sessions", "--json"])).stdout.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(json.map((x) => x.id)).toEqual(rows.map((l) => l.slice(3).split(/\s+/)[0]))
    const rest = json.slice(2).map((x) => Math.max(x.createdAt, x.lastHeartbeat))
    expect(rest).toEqual([...rest].sort((a, b) => b - a))

    const only = async (status: string) =>
      (await rein([...url, "sessions", "--status", status, "--json"])).stdout.trimEnd().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l).id)
    expect(await only("needs-you")).toEqual(["asks"])
    expect(await only("working")).toEqual(["busy"])
    expect((await only("idle")).sort()).toEqual(["done1", "stopped1"])
    expect(await only("disconnected")).toEqual(["gone"])
    expect((await rein([...url, "sessions", "--status", "working", "--project", "x"])).stdout).toBe("no sessions are working in project x\n")
  })
})

describe("rein: prompt, abort, artifacts", () => {
  it("prompt and abort reach the sandbox; without one: no sandbox connected, exit 1", async () => {
    const s = await startServer()
    await s.createSession("p1")
    const none = await rein(["--url", s.url, "prompt", "p1", "hello"])
    expect(none).toMatchObject({ code: 1, stdout: "", stderr: "rein: no sandbox connected to p1\n" })
    expect((await rein(["--url", s.url, "abort", "p1"])).stderr).toBe("rein: no sandbox connected to p1\n")

    const sb = await sandbox(s.url, "p1")
    expect(await rein(["--url", s.url, "prompt", "p1", "fix", "the", "bug"])).toMatchObject({ code: 0, stderr: "" })
    expect((await sb.command("prompt")).data).toEqual({ type: "prompt", text: "fix the bug" })
    const n = sb.commands.events.length
    expect((await rein(["--url", s.url, "prompt", "p1", "-"], { input: "from stdin\nline two\n" })).code).toBe(0)
    expect((await sb.command("prompt", n)).data).toEqual({ type: "prompt", text: "from stdin\nline two" })
    expect((await rein(["--url", s.url, "abort", "p1"])).code).toBe(0)
    expect((await sb.command("abort")).data).toEqual({ type: "abort" })
    expect(await rein(["--url", s.url, "prompt", "p1", "-"], { input: "  \n" })).toMatchObject({ code: 1, stderr: "rein: the prompt is empty\n" })
    expect((await rein(["--url", s.url, "prompt", "nope", "hi"])).stderr).toBe("rein: session nope not found\n")
  })

  it("artifacts: the transcript as plain text, or one JSON artifact per line", async () => {
    const s = await startServer()
    await s.createSession("a1")
    const sb = await sandbox(s.url, "a1")
    await request(s.url, "POST", "/sessions/a1/commands", { type: "prompt", text: "list files" })
    await sb.post(
      { type: "turn_start" },
      { type: "reasoning_delta", delta: "Let me look." },
      { type: "text_delta", delta: "Here **they** are:" },
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "ls" },
      { type: "tool_call_end", toolCallId: "t1", output: "a\nb\nc\nd\ne\nf" },
      { type: "plan", entries: [{ content: "look", status: "completed" }, { content: "fix", status: "in_progress" }, { content: "test", status: "pending" }] },
      { type: "file_change", path: "src/x.ts", action: "modify", diff: "--- a/src/x.ts\n+++ b/src/x.ts\n@@ -1 +1 @@\n-old\n+new" },
      { type: "error", message: "disk full", code: "ENOSPC" },
      { type: "usage", inputTokens: 10, outputTokens: 5, costUsd: 0.25 },
      { type: "turn_end" }
    )
    const plain = await rein(["--url", s.url, "artifacts", "a1"])
    expect(plain.code).toBe(0)
    expect(plain.stdout).toBe([
      "> list files",
      "[thinking] Let me look.",
      "Here **they** are:",
      "[tool] bash ls · done",
      "  | a",
      "  | b",
      "  | c",
      "  | d",
      "  … 2 more lines",
      "[plan]",
      "  [x] look",
      "  [~] fix",
      "  [ ] test",
      "[file] modify src/x.ts",
      "--- a/src/x.ts",
      "+++ b/src/x.ts",
      "@@ -1 +1 @@",
      "-old",
      "+new",
      "[error] disk full (ENOSPC)",
      "[usage] tokens in 10 · out 5 · $0.25",
      ""
    ].join("\n"))
    const json = await rein(["--url", s.url, "artifacts", "a1", "--json"])
    expect(json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))).toEqual((await request(s.url, "GET", "/sessions/a1/artifacts")).body)
    expect(await rein(["--url", s.url, "artifacts", "nope"])).toMatchObject({ code: 1, stderr: "rein: session nope not found\n" })
  })
})

describe("rein: approve, reject", () => {
  it("answers the one pending request, or the named one; says when there is none or several", async () => {
    const s = await startServer()
    await s.createSession("q1")
    const sb = await sandbox(s.url, "q1")
    const url = ["--url", s.url]
    expect(await rein([...url, "approve", "q1"])).toMatchObject({ code: 1, stderr: "rein: no permission request is pending in q1\n" })

    await sb.post({ type: "permission_request", requestId: "r1", title: "Run tests?" })
    expect(await rein([...url, "approve", "q1"])).toMatchObject({ code: 0, stdout: "allowed r1 once\n" })
    expect((await sb.command("permission_reply")).data).toMatchObject({ requestId: "r1", decision: "allow_once" })

    await sb.post(
      { type: "permission_request", requestId: "r2", title: "Edit a file?" },
      { type: "permission_request", requestId: "r3", title: "Delete a file?" }
    )
    expect(await rein([...url, "reject", "q1"])).toMatchObject({
      code: 1,
      stderr: "rein: 2 permission requests are pending in q1 (r2, r3); name one\n"
    })
    let n = sb.commands.events.length
    expect(await rein([...url, "approve", "q1", "r2", "--always"])).toMatchObject({ code: 0, stdout: "always allowed r2\n" })
    expect((await sb.command("permission_reply", n)).data).toMatchObject({ requestId: "r2", decision: "allow_always" })
    n = sb.commands.events.length
    expect(await rein([...url, "reject", "q1"])).toMatchObject({ code: 0, stdout: "rejected r3\n" })
    expect((await sb.command("permission_reply", n)).data).toMatchObject({ requestId: "r3", decision: "reject" })

    // Answered already (here by this very user): said, with the answer it has, and not an error (issues 15, 21).
    expect(await rein([...url, "reject", "q1", "r1"])).toMatchObject({ code: 0, stdout: "r1 was already answered (allowed once); nothing changed\n" })
    // An unknown request is an error: the server's 409 message, exit 1.
    const unknown = await rein([...url, "approve", "q1", "r7"])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^rein: .*r7/)
    const artifacts = (await request(s.url, "GET", "/sessions/q1/artifacts")).body
    expect(artifacts.map((a: any) => [a.requestId, a.decision])).toEqual([["r1", "allow_once"], ["r2", "allow_always"], ["r3", "reject"]])
    expect(await rein([...url, "approve", "q1", "r9", "--always", "--option", "o1"])).toMatchObject({ code: 1 })
  })
})

describe("rein: paged transcripts (issue 23)", () => {
  /** A session of 80 file changes (f0 .. f79, seqs 1 .. 80) after a tool call that keeps running (seq 1 is "slow"). */
  const longSession = async (id: string) => {
    const s = await startServer()
    await s.createSession(id)
    const sb = await sandbox(s.url, id)
    await sb.post(
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "slow", name: "build", input: "make" },
      ...Array.from({ length: 79 }, (_, i) => ({ type: "file_change", path: `f${i + 1}`, action: "modify" }))
    )
    return { s, sb }
  }
  const files = (out: string) => [...out.matchAll(/\[file\] (?:modify|create) (f\d+)/g)].map((m) => m[1])
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `f${from + i}`)

  it("artifacts --limit, --before, --after: one page, and on stderr how to print the next; bad flags say what to change", async () => {
    const { s } = await longSession("pg")
    const url = ["--url", s.url]
    const last = await rein([...url, "artifacts", "pg", "--limit", "10"])
    expect(last.code).toBe(0)
    expect(files(last.stdout)).toEqual(range(70, 79))
    expect(last.stderr).toBe("rein: more before this page: rein artifacts pg --before 71 --limit 10\n")
    const before = await rein([...url, "artifacts", "pg", "--before", "71", "--limit", "10"])
    expect(files(before.stdout)).toEqual(range(60, 69))
    expect(before.stderr).toBe("rein: more before this page: rein artifacts pg --before 61 --limit 10\n")
    const first = await rein([...url, "artifacts", "pg", "--before", "5"])
    expect(first.stdout).toBe("[tool] build make · running\n[file] modify f1\n[file] modify f2\n[file] modify f3\n")
    expect(first.stderr).toBe("")
    const after = await rein([...url, "artifacts", "pg", "--after", "70", "--limit", "5", "--json"])
    expect(after.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).seq)).toEqual([71, 72, 73, 74, 75])
    expect(after.stderr).toBe("rein: more after this page: rein artifacts pg --after 75 --limit 5\n")
    expect((await rein([...url, "artifacts", "pg", "--after", "75", "--limit", "5"])).stderr).toBe("")
    // Without them: the whole transcript, as before.
    expect(files((await rein([...url, "artifacts", "pg"])).stdout)).toEqual(range(1, 79))

    expect(await rein([...url, "artifacts", "pg", "--before", "5", "--after", "2"])).toMatchObject({
      code: 1,
      stderr: "rein: --before and --after cannot be combined: one page is before a seq, or after it\n"
    })
    for (const [flag, value, says] of [["--limit", "5000", "--limit must be 1 to 1000; got 5000"], ["--before", "0", "--before must be a seq (1 or more); got 0"]]) {
      const r = await rein([...url, "artifacts", "pg", flag!, value!])
      expect(r.code, flag).toBe(1)
      expect(r.stderr, flag).toContain(says)
    }
  })

  it("watch --tail N: the last N and what still runs, a line saying where the rest is; --tail 0 everything; piped, 50 by default", async () => {
    const { s, sb } = await longSession("wt")
    const url = ["--url", s.url]
    const w = spawnRein([...url, "watch", "wt", "--tail", "3"])
    await w.waitFor((o) => o.includes("f79"), "the tail")
    expect(w.stdout()).toBe("[tool] build make · running\n[file] modify f77\n[file] modify f78\n[file] modify f79\n")
    // The old tool call still changes live.
    await sb.post({ type: "tool_call_end", toolCallId: "slow", output: "built" }, { type: "file_change", path: "f80", action: "create" })
    await w.waitFor((o) => o.includes("f80"), "live changes")
    expect(w.stdout()).toContain("[tool] build make · done\n  | built\n")
    w.child.kill("SIGINT")
    const done = await w.exited
    expect(done.stderr).toContain("rein: the transcript before #78 is not shown: rein artifacts wt --before 78 prints it\n")

    const all = spawnRein([...url, "watch", "wt", "--tail", "0"])
    await all.waitFor((o) => o.includes("f80"), "everything")
    expect(files(all.stdout())).toEqual([...range(1, 79), "f80"])
    all.child.kill("SIGINT")
    expect((await all.exited).stderr).not.toContain("not shown")

    const piped = spawnRein([...url, "watch", "wt"])
    await piped.waitFor((o) => o.includes("f80"), "a screenful")
    expect(files(piped.stdout())).toEqual(range(31, 79).concat("f80"))
    piped.child.kill("SIGINT")
    expect((await piped.exited).stderr).toContain("rein: the transcript before #32 is not shown: rein artifacts wt --before 32 prints it\n")
    expect((await rein([...url, "watch", "wt", "--tail", "1001"])).stderr).toContain("--tail must be 0 (everything) to 1000; got 1001")
  })
})

describe("rein watch: piped and --json", () => {
  it("piped: append-only plain text, an appended delta prints only what was appended; exits 0 when the session is removed", async () => {
    const s = await startServer()
    await s.createSession("w1")
    const sb = await sandbox(s.url, "w1")
    await sb.post({ type: "turn_start" }, { type: "text_delta", delta: "Hello" })
    const w = spawnRein(["--url", s.url, "watch", "w1"])
    await w.waitFor((o) => o === "Hello", "the snapshot")
    await sb.post({ type: "text_delta", delta: ", world" })
    await w.waitFor((o) => o === "Hello, world", "the appended delta")
    await sb.post({ type: "tool_call_start", toolCallId: "t1", name: "bash", input: "make test" })
    await w.waitFor((o) => o.endsWith("[tool] bash make test · running\n"), "the running call")
    await sb.post({ type: "tool_call_end", toolCallId: "t1", output: "ok" }, { type: "permission_request", requestId: "r1", title: "Push?" })
    await w.waitFor((o) => o.includes("[permission] Push? (r1): waiting"), "the permission")
    await request(s.url, "POST", "/sessions/w1/commands", { type: "permission_reply", requestId: "r1", decision: "reject" })
    await w.waitFor((o) => o.includes("(r1): rejected"), "the answer")
    await request(s.url, "DELETE", "/sessions/w1")
    const done = await w.exited
    expect(done.code).toBe(0)
    expect(done.stderr).toBe("rein: session w1 was removed\n")
    expect(done.stdout).toBe([
      "Hello, world",
      "[tool] bash make test · running",
      "[tool] bash make test · done",
      "  | ok",
      "[permission] Push? (r1): waiting for an answer",
      "[permission] Push? (r1): rejected",
      ""
    ].join("\n"))
  })

  it("piped: usage once, at its turn's end; the plan's first and last versions; acp.* only with --verbose; fences rendered; a stopped turn says so", async () => {
    const s = await startServer()
    await s.createSession("u1")
    const sb = await sandbox(s.url, "u1")
    await request(s.url, "POST", "/sessions/u1/commands", { type: "prompt", text: "go" })
    const w = spawnRein(["--url", s.url, "watch", "u1"])
    const verbose = spawnRein(["--url", s.url, "watch", "u1", "--verbose"])
    await w.waitFor((o) => o.includes("> go"), "the prompt")
    const plan = (a: string, b: string) => ({ type: "plan", entries: [{ content: "look", status: a }, { content: "fix", status: b }] })
    await sb.post(
      { type: "turn_start" },
      plan("in_progress", "pending"),
      { type: "usage", inputTokens: 10, outputTokens: 5, costUsd: 0.5 },
      { type: "custom", name: "acp.available_commands_update", data: { availableCommands: [] } },
      { type: "custom", name: "rein.note", data: "kept" },
      { type: "tool_call_start", toolCallId: "c1", name: "bash", input: "cat notes" }
    )
    await sb.post(
      { type: "tool_call_end", toolCallId: "c1", output: "```console\nline one\nline two\n```" },
      plan("completed", "in_progress"),
      { type: "usage", inputTokens: 20, outputTokens: 5, costUsd: 0.25 },
      { type: "text_delta", delta: "Fixed." }
    )
    await w.waitFor((o) => o.includes("Fixed."), "the reply")
    expect(w.stdout()).not.toContain("[usage]")
    await sb.post(plan("completed", "completed"), { type: "turn_end", stopReason: "end_turn" })
    await w.waitFor((o) => o.includes("[usage]"), "the usage at the turn's end")
    // A second turn, stopped by Abort.
    await request(s.url, "POST", "/sessions/u1/commands", { type: "prompt", text: "again" })
    await sb.post({ type: "turn_start" }, { type: "text_delta", delta: "Start" }, { type: "turn_end", stopReason: "cancelled" })
    await w.waitFor((o) => o.includes("— turn stopped —"), "the stopped turn")
    await verbose.waitFor((o) => o.includes("— turn stopped —"), "the verbose watch")
    const out = w.stdout()
    expect(count(out, "[usage]")).toBe(1)
    expect(out).toContain("[usage] tokens in 30 · out 10 · $0.75\n")
    expect(count(out, "[plan]")).toBe(2)
    expect(out).toMatch(/\[plan\]\n {2}\[x\] look\n {2}\[x\] fix\n\[usage\]/)
    expect(out).toContain("[rein.note] kept")
    expect(out).not.toContain("acp.")
    expect(verbose.stdout()).toContain("[acp.available_commands_update]")
    expect(out).toContain("  | line one\n  | line two\n")
    expect(out).not.toContain("```")
    expect(out).toMatch(/> again\nStart\n— turn stopped —\n$/)
  })

  it("--json: snapshots, snapshot_complete, then created/updated events (appends as appends), session_removed last", async () => {
    const s = await startServer()
    await s.createSession("j1")
    const sb = await sandbox(s.url, "j1")
    await sb.post({ type: "text_delta", delta: "one" })
    const w = spawnRein(["--url", s.url, "watch", "j1", "--json"])
    await w.waitFor((o) => o.includes("snapshot_complete"), "the snapshots")
    await sb.post({ type: "text_delta", delta: " two" })
    await w.waitFor((o) => o.includes(`"append":" two"`), "the append")
    await sb.post({ type: "tool_call_start", toolCallId: "t1", name: "grep" })
    await w.waitFor((o) => o.includes(`"name":"grep"`), "the call")
    await sb.post({ type: "tool_call_end", toolCallId: "t1", isError: true })
    await w.waitFor((o) => o.includes(`"set":"error"`), "the status")
    await request(s.url, "DELETE", "/sessions/j1")
    const done = await w.exited
    expect(done.code).toBe(0)
    const events = done.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(events.map((e) => e.event)).toEqual([
      "artifact_snapshot",
      "snapshot_complete",
      "artifact_updated",
      "artifact_created",
      "artifact_updated",
      "session_removed"
    ])
    expect(events[0]).toMatchObject({ artifact: { seq: 1, kind: "text", text: "one" } })
    expect(events[2]).toMatchObject({ seq: 1, field: "text", append: " two" })
    expect(events[3]).toMatchObject({ artifact: { seq: 2, kind: "tool_call", name: "grep", status: "running" } })
    expect(events[4]).toMatchObject({ seq: 2, field: "status", set: "error" })
    expect(events[5]).toEqual({ event: "session_removed", id: "j1" })
  })

  it("resumes across a server restart (same SQLite file, same port) without printing anything twice", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const dbPath = join(dir, "rein.db")
    const port = await freePort()
    const first = await start({ port, dbPath, bootstrapTimeout: 600_000 })
    let firstClosed = false
    cleanups.push(() => (firstClosed ? undefined : first.close()))
    await first.createSession("r1")
    const sb1 = await sandbox(first.url, "r1")
    await sb1.post({ type: "turn_start" }, { type: "text_delta", delta: "before the restart" }, { type: "tool_call_start", toolCallId: "t1", name: "build" })
    const w = spawnRein(["--url", first.url, "watch", "r1"])
    await w.waitFor((o) => o.includes("[tool] build · running"), "the first transcript")
    await first.close()
    firstClosed = true
    sb1.commands.close()
    await eventually(() => w.stderr().includes("reconnecting"), 20_000, "the watch to notice")

    const second = await startServer({ port, dbPath })
    const sb2 = await sandbox(second.url, "r1")
    await eventually(() => w.stderr().includes("reconnected"), 20_000, "the watch to reconnect")
    await sb2.post({ type: "tool_call_end", toolCallId: "t1", output: "built" }, { type: "text_delta", delta: "after it" })
    await w.waitFor((o) => o.includes("after it"), "the new text")
    await request(second.url, "DELETE", "/sessions/r1")
    const done = await w.exited
    expect(done.code).toBe(0)
    expect(done.stdout).toBe([
      "before the restart",
      "[tool] build · running",
      "[tool] build · done",
      "  | built",
      "after it",
      ""
    ].join("\n"))
    expect(count(done.stdout, "before the restart")).toBe(1)
  })

  it("exits 1 for a session that does not exist, 2 when the server cannot be reached (naming the URL)", async () => {
    const s = await startServer()
    expect(await rein(["--url", s.url, "watch", "ghost"])).toMatchObject({ code: 1, stderr: "rein: session ghost not found\n" })
    const port = await freePort()
    for (const args of [["watch", "x"], ["sessions"], ["create", "x"], ["prompt", "x", "hi"], ["artifacts", "x"]]) {
      const r = await rein(["--url", `http://127.0.0.1:${port}`, ...args])
      expect(r.code, args.join(" ")).toBe(2)
      expect(r.stderr).toMatch(new RegExp(`^rein: cannot reach the Rein server at http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`))
    }
    // REIN_URL is the default's override; a bad URL is a usage error.
    expect((await rein(["sessions"], { env: { REIN_URL: s.url } })).code).toBe(0)
    expect((await rein(["--url", "ftp://x", "sessions"])).code).toBe(1)
  })
})

describe("rein: auth", () => {
  it("--token or REIN_TOKEN; without it the server's 401 message, exit 1; create prints the sandbox token", async () => {
    const s = await startServer({ token: "s3cret" })
    const refused = await rein(["--url", s.url, "sessions"])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^rein: .+/)
    const created = await rein(["--url", s.url, "--token", "s3cret", "create", "t1"])
    expect(created.code).toBe(0)
    const token = /^sandbox token: (\S+)$/m.exec(created.stdout)?.[1]
    expect(token).toBeDefined()
    const env = { REIN_URL: s.url, REIN_TOKEN: "s3cret" }
    expect((await rein(["sessions", "--json"], { env })).stdout).toContain(`"id":"t1"`)
    // The sandbox, with its own token; the watch with the client token.
    const sb = await sandbox(s.url, "t1", { authorization: `Bearer ${token}` })
    await sb.post({ type: "text_delta", delta: "authorized" })
    const w = spawnRein(["watch", "t1"], { env })
    await w.waitFor((o) => o.includes("authorized"), "the transcript")
    expect((await rein(["watch", "t1"], { env: { REIN_URL: s.url, REIN_TOKEN: "wrong" } })).code).toBe(1)
    expect((await rein(["prompt", "t1", "go"], { env })).code).toBe(0)
    expect((await sb.command("prompt")).data.text).toBe("go")
  })
})

describe("rein: --help", () => {
  it("rein --help reads like git --help: usage, commands, options, examples with rein; plain text when piped", async () => {
    const r = await rein(["--help"])
    expect(r).toMatchObject({ code: 0, stderr: "" })
    expect(r.stdout).not.toMatch(ESC)
    expect(r.stdout).toMatch(/^rein: .*\n\nUsage: rein \[--url URL\] \[--token TOKEN\] <command>/)
    expect(r.stdout).not.toMatch(/A user-defined piece of text|--wizard|--completions|--log-level/)
    expect(r.stdout.indexOf("Commands:")).toBeLessThan(r.stdout.indexOf("Options:"))
    expect(r.stdout).toMatch(/^ {2}\$ rein watch demo/m)
    expect(r.stdout).not.toMatch(/^ {2}\$ (?!rein |export )/m)
    // Short, as git --help is: the commands and their options one line each, mostly (issue 20 added five commands' worth).
    expect(r.stdout.split("\n").length).toBeLessThan(70)
    expect(await rein(["--version"])).toMatchObject({ code: 0, stdout: "0.1.0\n", stderr: "" })
    // `rein` alone, `rein help` and -h say the same.
    for (const args of [[], ["help"], ["-h"]]) expect((await rein(args)).stdout, args.join(" ")).toBe(r.stdout)
  })

  it("every command has its help: usage, options, examples; `rein help <command>` the same", async () => {
    for (const c of ["sessions", "create", "rm", "watch", "prompt", "abort", "approve", "reject", "artifacts"]) {
      const r = await rein([c, "--help"])
      expect(r.code, c).toBe(0)
      expect(r.stdout, c).not.toMatch(ESC)
      expect(r.stdout, c).toMatch(new RegExp(`^Usage: rein ${c}`))
      expect(r.stdout, c).toContain(`Examples:\n  $ rein ${c}`)
      expect((await rein(["help", c])).stdout, c).toBe(r.stdout)
    }
    expect(await rein(["nope", "--help"])).toMatchObject({ code: 1, stdout: "", stderr: "rein: nope is not a rein command (see rein --help)\n" })
  })

  it.skipIf(!hasTmux)("on a terminal: bold headings; with NO_COLOR=1 none", async () => {
    const styled = terminal(["--help"])
    await styled.waitFor((x) => x.includes("EXIT=0"), "the help")
    expect(styled.screen(true)).toMatch(/\x1b\[1mExamples:/)
    const plain = terminal(["--help"], { NO_COLOR: "1" })
    await plain.waitFor((x) => x.includes("EXIT=0"), "the help")
    expect(plain.screen()).toContain("Examples:")
    expect(plain.screen(true)).not.toMatch(/\x1b\[[0-9;]*m/)
  })
})

describe("rein: messages", () => {
  it("every error starts with rein: and says what to change", async () => {
    const cases: Array<[Array<string>, RegExp]> = [
      [["--url", "notaurl", "sessions"], /^rein: --url must be an http:\/\/ or https:\/\/ URL.*"notaurl"\n$/],
      [["--url=ftp://x", "sessions"], /^rein: --url must be .*"ftp:\/\/x"\n$/],
      [["bogus"], /^rein: bogus is not a rein command \(see rein --help\)\n$/],
      [["watch"], /^rein: missing argument <id> \(see rein watch --help\)\n$/],
      [["sessions", "--bogus"], /^rein: .*--bogus.* \(see rein sessions --help\)\n$/],
      [["sessions", "--status", "busy"], /^rein: --status must be one of needs-you, working, idle, disconnected; got "busy"/]
    ]
    for (const [args, message] of cases) {
      const r = await rein(args)
      expect(r.code, args.join(" ")).toBe(1)
      expect(r.stdout, args.join(" ")).toBe("")
      expect(r.stderr, args.join(" ")).toMatch(message)
    }
    const env = await rein(["sessions"], { env: { REIN_URL: "notaurl" } })
    expect(env).toMatchObject({ code: 1, stderr: expect.stringMatching(/^rein: REIN_URL must be an http:\/\/ or https:\/\/ URL.*"notaurl"\n$/) })
  })

  it("a server that wants a token: the message names --token and REIN_TOKEN; a wrong one says it was refused", async () => {
    const s = await startServer({ token: "s3cret" })
    const missing = await rein(["--url", s.url, "sessions"])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe(`rein: the server at ${s.url} needs a token: pass --token TOKEN or set REIN_TOKEN\n`)
    const wrong = await rein(["--url", s.url, "--token", "nope", "watch", "x"])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^rein: the token \(--token \/ REIN_TOKEN\) was refused/)
  })
})

describe.skipIf(!hasTmux)("rein watch on a terminal (tmux)", () => {
  it("colour, Markdown, a tool call whose line changes in place, a plan, a coloured diff; y answers the permission; Ctrl-C exits 0", async () => {
    const s = await startServer()
    await s.createSession("tty")
    const sb = await sandbox(s.url, "tty")
    await request(s.url, "POST", "/sessions/tty/commands", { type: "prompt", text: "tidy up" })
    await sb.post(
      { type: "turn_start" },
      { type: "reasoning_delta", delta: "Thinking it over." },
      { type: "text_delta", delta: "# Cleanup\n\nI will **remove** the `tmp` files." },
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "rm -r tmp" }
    )
    const t = terminal(["--url", s.url, "watch", "tty"])
    await t.waitFor((x) => x.includes("bash rm -r tmp · running"), "the running call")
    const screen = t.screen()
    expect(screen).toContain("❯ tidy up")
    expect(screen).toContain("Cleanup")
    expect(screen).not.toContain("# Cleanup")
    expect(screen).toContain("I will remove the tmp files.")
    expect(screen).not.toContain("**")
    const styled = t.screen(true)
    expect(styled).toMatch(/\x1b\[[0-9;]*2[;m][^\n]*Thinking it over/) // reasoning dimmed

    await sb.post(
      { type: "tool_call_end", toolCallId: "t1", output: "removed 3 files" },
      { type: "plan", entries: [{ content: "remove tmp", status: "completed" }, { content: "run tests", status: "in_progress" }] },
      { type: "file_change", path: "Makefile", action: "modify", diff: "--- a/Makefile\n+++ b/Makefile\n@@ -1 +1 @@\n-clean: old\n+clean: new" },
      { type: "permission_request", requestId: "p1", title: "Run the test suite?" }
    )
    const after = await t.waitFor((x) => x.includes("Run the test suite?") && x.includes(" y  allow once"), "the permission prompt")
    // The call's one line changed in place: shown once, now done.
    expect(count(after, "bash rm -r tmp")).toBe(1)
    expect(after).toContain("✓ bash rm -r tmp · done")
    expect(after).toContain("│ removed 3 files")
    expect(after).toMatch(/☑ remove tmp\n\s+◐ run tests/)
    expect(after).toContain("± Makefile modify")
    expect(t.screen(true)).toMatch(/\x1b\[32m\+clean: new/)
    expect(t.screen(true)).toMatch(/\x1b\[31m-clean: old/)

    t.keys("y")
    expect((await sb.command("permission_reply")).data).toMatchObject({ requestId: "p1", decision: "allow_once" })
    const answered = await t.waitFor((x) => x.includes("Run the test suite? (p1) · allowed once"), "the answer on screen")
    expect(answered).not.toContain(" y  allow once")

    t.keys("C-c")
    await t.waitFor((x) => x.includes("EXIT=0"), "a clean exit")
  })

  it("the running turn's plan is redrawn in place, not printed again per update; usage once, at the turn's end", async () => {
    const s = await startServer()
    await s.createSession("pl")
    const sb = await sandbox(s.url, "pl")
    await request(s.url, "POST", "/sessions/pl/commands", { type: "prompt", text: "plan it" })
    const t = terminal(["--url", s.url, "watch", "pl"])
    await t.waitFor((x) => x.includes("❯ plan it"), "the prompt")
    const plan = (a: string, b: string, c: string) => ({
      type: "plan",
      entries: [{ content: "alpha step", status: a }, { content: "beta step", status: b }, { content: "gamma step", status: c }]
    })
    await sb.post({ type: "turn_start" }, plan("in_progress", "pending", "pending"), { type: "tool_call_start", toolCallId: "a", name: "bash", input: "one" })
    await t.waitFor((x) => x.includes("bash one · running"), "the first call")
    await sb.post({ type: "tool_call_end", toolCallId: "a", output: "1" }, plan("completed", "in_progress", "pending"), { type: "usage", inputTokens: 3, outputTokens: 4, costUsd: 0.01 })
    await sb.post({ type: "tool_call_start", toolCallId: "b", name: "bash", input: "two" }, { type: "tool_call_end", toolCallId: "b", output: "2" })
    await sb.post(plan("completed", "completed", "in_progress"), { type: "text_delta", delta: "Almost there." }, { type: "usage", inputTokens: 3, outputTokens: 4, costUsd: 0.01 })
    const running = await t.waitFor((x) => x.includes("Almost there.") && /☑ beta step/.test(x), "the third version of the plan")
    expect(count(running, "alpha step")).toBe(1)
    expect(count(running, "Plan")).toBe(1)
    expect(running).not.toContain("tokens in")
    await sb.post(plan("completed", "completed", "completed"), { type: "turn_end", stopReason: "end_turn" })
    const ended = await t.waitFor((x) => x.includes("tokens in 6 · out 8 · $0.02"), "the usage at the turn's end")
    expect(count(ended, "alpha step")).toBe(1)
    expect(count(ended, "tokens in")).toBe(1)
    expect(ended).toMatch(/☑ gamma step/)
    t.keys("C-c")
    await t.waitFor((x) => x.includes("EXIT=0"), "a clean exit")
  })

  it("shows the reconnect while the server restarts, then resumes without drawing anything twice", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const dbPath = join(dir, "rein.db")
    const port = await freePort()
    const first = await start({ port, dbPath, bootstrapTimeout: 600_000 })
    let firstClosed = false
    cleanups.push(() => (firstClosed ? undefined : first.close()))
    await first.createSession("tr")
    const sb1 = await sandbox(first.url, "tr")
    await sb1.post({ type: "text_delta", delta: "Written **before** the restart." }, { type: "tool_call_start", toolCallId: "t1", name: "deploy" })
    const t = terminal(["--url", first.url, "watch", "tr"])
    await t.waitFor((x) => x.includes("deploy · running"), "the first transcript")
    await first.close()
    firstClosed = true
    sb1.commands.close()
    await t.waitFor((x) => x.includes(`reconnecting to http://127.0.0.1:${port}`), "the reconnecting line")
    const second = await startServer({ port, dbPath })
    const sb2 = await sandbox(second.url, "tr")
    await sb2.post({ type: "tool_call_end", toolCallId: "t1", output: "deployed" }, { type: "text_delta", delta: "And after." })
    const x = await t.waitFor((x) => x.includes("And after.") && !x.includes("reconnecting"), "the resumed transcript")
    expect(count(x, "Written before the restart.")).toBe(1)
    expect(count(x, "deploy ·")).toBe(1)
    expect(x).toContain("✓ deploy · done")
    await request(second.url, "DELETE", "/sessions/tr")
    const end = await t.waitFor((x) => x.includes("EXIT=0"), "the exit when the session is removed")
    expect(end).toContain("rein: session tr was removed")
  })

  it("sessions --watch: the table redrawn in place as sessions come, change and go", async () => {
    const s = await startServer()
    await s.createSession("first", "web")
    const t = terminal(["--url", s.url, "sessions", "--watch"])
    await t.waitFor((x) => /first\s+starting\s+web/.test(x), "the table")
    await s.createSession("second")
    await t.waitFor((x) => /second\s+starting/.test(x), "the new row")
    const sb = await sandbox(s.url, "second")
    await sb.post({ type: "permission_request", requestId: "r1", title: "ok?" })
    const x = await t.waitFor((x) => /!\s+second\s+needs approval/.test(x), "the changed row, marked")
    expect(count(x, "STATE")).toBe(1)
    expect(count(x, "second")).toBe(1)
    await request(s.url, "DELETE", "/sessions/first")
    await t.waitFor((x) => !x.includes("first") && x.includes("second"), "the row gone")
    t.keys("C-c")
    await t.waitFor((x) => x.includes("EXIT=0"), "a clean exit")
  })

  it("a 409 on answering says the request was already answered, and the watch goes on", async () => {
    // A server that shows a pending permission and answers every reply with 409: the race, made certain.
    const permission = { seq: 1, kind: "permission", requestId: "r1", toolCallId: null, title: "Deploy?", options: null, decision: null, createdAt: 1, updatedAt: 1 }
    const fake: Server = createHttpServer((req, res) => {
      if (req.method === "GET" && req.url === "/sessions/race") {
        res.writeHead(200, { "content-type": "application/json" })
        return res.end(JSON.stringify({ id: "race", status: "live", summary: null, project: null, createdAt: 1, lastHeartbeat: 1 }))
      }
      // The watch opens with ?tail= (a screenful).
      if (req.method === "GET" && req.url?.split("?")[0] === "/sessions/race/stream") {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
        return res.write(`id: 1\nevent: artifact_snapshot\ndata: ${JSON.stringify({ artifact: permission })}\n\nevent: snapshot_complete\ndata: {}\n\n`)
      }
      if (req.method === "POST" && req.url === "/sessions/race/commands") {
        res.writeHead(409, { "content-type": "application/json" })
        return res.end(JSON.stringify({ error: { code: "conflict", message: "permission request r1 was already answered" } }))
      }
      res.writeHead(404).end()
    })
    await new Promise<void>((r) => fake.listen(0, "127.0.0.1", r))
    cleanups.push(() => new Promise<void>((r) => fake.close(() => r())))
    fake.on("connection", (c) => cleanups.push(() => void c.destroy()))
    const { port } = fake.address() as { port: number }
    const t = terminal(["watch", "race"], { REIN_URL: `http://127.0.0.1:${port}` })
    await t.waitFor((x) => x.includes("Deploy?") && x.includes(" n  reject"), "the prompt")
    t.keys("n")
    const screen = await t.waitFor((x) => x.includes("r1 was already answered; nothing changed"), "the note")
    expect(screen).not.toContain("someone else")
    expect(screen).not.toContain("EXIT=")
    t.keys("C-c")
    await t.waitFor((x) => x.includes("EXIT=0"), "a clean exit")
  })
})

describe("rein: permission options and tool titles (issue 13 protocol)", () => {
  const options = [
    { optionId: "o-once", name: "Allow this time", kind: "allow_once" },
    { optionId: "o-never", name: "Never for this repo", kind: "reject_always" }
  ]

  it("approve --option answers with an option; unknown ones are the server's 400; titles and the agent are shown", async () => {
    const s = await startServer()
    await s.createSession("o1")
    const sb = await sandbox(s.url, "o1")
    await sb.post(
      { type: "agent", name: "claude-code", version: "1.2.3" },
      { type: "tool_call_start", toolCallId: "t1", name: "edit", title: "Edit src/a.ts", kind: "edit", locations: [{ path: "src/a.ts", line: 3 }] },
      { type: "permission_request", requestId: "r1", toolCallId: "t1", title: "Allow the edit?", options }
    )
    const url = ["--url", s.url]
    const unknown = await rein([...url, "approve", "o1", "--option", "o-nope"])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^rein: optionId: .*o-nope.* not an option of permission request r1/)
    expect(await rein([...url, "approve", "o1", "--option", "o-never"])).toMatchObject({ code: 0, stdout: "answered r1 with o-never\n" })
    expect((await sb.command("permission_reply")).data).toEqual({ type: "permission_reply", requestId: "r1", decision: "reject", optionId: "o-never" })
    const out = (await rein([...url, "artifacts", "o1"])).stdout
    expect(out).toBe([
      "[agent] claude-code 1.2.3",
      "[tool] Edit src/a.ts src/a.ts:3 · running",
      "[permission] Allow the edit? (r1): rejected (Never for this repo)",
      ""
    ].join("\n"))
  })

  it.skipIf(!hasTmux)("on a terminal: the options by name with their numbers; a number answers with that option", async () => {
    const s = await startServer()
    await s.createSession("o2")
    const sb = await sandbox(s.url, "o2")
    await sb.post(
      { type: "tool_call_start", toolCallId: "t1", name: "bash", title: "Run the migrations", kind: "execute" },
      { type: "permission_request", requestId: "r1", toolCallId: "t1", title: "Run it?", options }
    )
    const t = terminal(["--url", s.url, "watch", "o2"])
    const screen = await t.waitFor((x) => x.includes(" 2  Never for this repo"), "the options")
    expect(screen).toContain("◌ Run the migrations · running")
    expect(screen).toMatch(/1\) Allow this time \[allow_once\]\n\s+2\) Never for this repo \[reject_always\]/)
    t.keys("2")
    expect((await sb.command("permission_reply")).data).toMatchObject({ requestId: "r1", decision: "reject", optionId: "o-never" })
    await t.waitFor((x) => x.includes("Run it? (r1) · rejected (Never for this repo)"), "the answer")
    t.keys("C-c")
    await t.waitFor((x) => x.includes("EXIT=0"), "a clean exit")
  })
})
