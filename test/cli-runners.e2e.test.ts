/**
 * `rein` and agents started by the hub (issue 20), end to end: the real bin (`node dist/cli/bin.js`,
 * built fresh) against a real server with its embedded runner, the scripted ACP agent as a profile
 * (a real process), a real git repository in a temp dir. `create --agent`, `run`, `stop`, `start`,
 * `runners`; the agent and branch in `sessions` and `watch`; the worktree's changes as one line in
 * `watch` and whole in `artifacts`. Piped output is read from the child's stdout; the terminal
 * cases run in a tmux pseudo-terminal (a private socket for this file).
 */
import { type ChildProcess, execFileSync, execSync, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { idFromPrompt } from "../src/cli/Commands.js"
import { start, type TestServer, until } from "./helpers.js"
import { cleanup, makeRepo, tempDir } from "./runner-helpers.js"
import { buildAgent } from "./sandboxBuild.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const bin = join(root, "dist", "cli", "bin.js")
const TOKEN = "cli-runners-token"
const ESC = /\x1b/

let agentJs: string
beforeAll(() => {
  execSync("npx tsc -p tsconfig.build.json", { cwd: root, stdio: "pipe", timeout: 120_000 })
  expect(existsSync(bin)).toBe(true)
  agentJs = buildAgent("acp-agent")
}, 180_000)

const children: Array<ChildProcess> = []
const servers: Array<TestServer> = []
const cleanups: Array<() => void> = []
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r))
      child.kill("SIGKILL")
      await gone
    }
  }
  for (const c of cleanups.splice(0).reverse()) c()
  for (const s of servers.splice(0)) await s.close()
})
afterAll(() => cleanup())

/** The environment without the machine's REIN_* settings. */
const cleanEnv = () => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("REIN_") && k !== "NO_COLOR" && k !== "FORCE_COLOR" && v !== undefined) env[k] = v
  }
  return env
}

interface Done {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `rein args...` in `cwd` to its end (stdin closed), with a client-side timeout. */
const rein = (args: ReadonlyArray<string>, options: { cwd?: string } = {}): Promise<Done> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd ?? root, env: cleanEnv(), stdio: ["pipe", "pipe", "pipe"] })
    children.push(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()))
    child.stdin!.end()
    const timer = setTimeout(() => reject(new Error(`rein ${args.join(" ")} did not finish; stdout: ${stdout} stderr: ${stderr}`)), 40_000)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

/** A server with auth and its embedded runner serving `repo`: `scripted` (the test agent) and `broken` (dies at start). */
const hub = async (repo: string) => {
  const dir = tempDir()
  const agentsFile = join(dir, "agents.json")
  writeFileSync(
    agentsFile,
    JSON.stringify({
      agents: {
        scripted: { name: "Scripted", command: process.execPath, args: [agentJs] },
        broken: { name: "Broken", command: process.execPath, args: [agentJs, "--die-at-start"] }
      }
    })
  )
  const server = await start({
    token: TOKEN,
    bootstrapTimeout: 600_000,
    runner: { repos: [repo], agentsFile, worktrees: join(dir, "worktrees"), minFreeDisk: 0, log: () => {} }
  })
  servers.push(server)
  const auth = { authorization: `Bearer ${TOKEN}` }
  const call = (method: string, path: string, body?: unknown) => server.request(method, path, body, auth)
  await until(() => call("GET", "/runners"), (r) => expect(r.body[0]).toMatchObject({ id: "local", online: true }))
  return { server, call, flags: ["--url", server.url, "--token", TOKEN] }
}

describe("rein create --agent, sessions, artifacts (issue 20)", () => {
  it("creates a session whose agent a runner starts, --repo . from the cwd; prints agent, runner, branch; no sandbox token", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    const created = await rein([...flags, "create", "fix-1", "--agent", "scripted", "--repo", ".", "--prompt", "write notes.txt hello from rein"], { cwd: repo })
    expect(created).toMatchObject({ code: 0, stderr: "" })
    expect(created.stdout).toBe(`created fix-1 (bootstrapping, agent scripted on runner local, branch rein/fix-1)\n  repository ${repo}\n`)
    const session = await until(() => call("GET", "/sessions/fix-1"), (r) => expect(r.body).toMatchObject({ status: "idle", workspace: { path: expect.any(String) } }))
    const path = session.body.workspace.path as string
    expect(readFileSync(join(path, "notes.txt"), "utf8")).toBe("hello from rein\n")

    // --json: the record, with the sandbox token the server issued; --base names the worktree's base.
    const json = await rein([...flags, "create", "fix-2", "--agent", "scripted", "--repo", repo, "--base", "main", "--project", "web", "--json"])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toMatchObject({
      id: "fix-2",
      project: "web",
      agent: "scripted",
      runner: "local",
      workspace: { repo, branch: "rein/fix-2", baseRef: "main" },
      sandboxToken: expect.stringMatching(/^rst_/)
    })

    // The list names the agent, and the branch when the line has room.
    await until(() => call("GET", "/sessions/fix-2"), (r) => expect(r.body.status).toBe("live"))
    const table = await rein([...flags, "sessions"])
    expect(table.code).toBe(0)
    const lines = table.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^\s+ID\s+STATE\s+PROJECT\s+AGENT\s+BRANCH\s+ACTIVE\s+COST\s+SUMMARY$/)
    expect(lines.find((l) => l.includes("fix-1 "))).toMatch(/^\s+fix-1\s+done\s+-\s+scripted\s+rein\/fix-1\s+\d+s\s+write notes\.txt hello from rein$/)
    expect(lines.find((l) => l.includes("fix-2 "))).toMatch(/^\s+fix-2\s+\w+\s+web\s+scripted\s+rein\/fix-2\s/)

    // watch shows the worktree's changes as one line; artifacts prints them whole.
    const changes = await until(() => call("GET", "/sessions/fix-1/artifacts"), (r) => expect(r.body.some((a: any) => a.kind === "changes")).toBe(true))
    expect(changes.body.find((a: any) => a.kind === "changes").diff).toContain("+hello from rein")
    const artifacts = await rein([...flags, "artifacts", "fix-1"])
    expect(artifacts.code).toBe(0)
    expect(artifacts.stdout).not.toMatch(ESC)
    const out = artifacts.stdout.split("\n")
    const at = out.indexOf("[changes] 1 file changed, +1 -0")
    expect(at, artifacts.stdout).toBeGreaterThan(0)
    expect(out.slice(at + 1)).toEqual(expect.arrayContaining(["+++ b/notes.txt", "+hello from rein"]))
    expect(out).toContain("> write notes.txt hello from rein")
    expect(out.indexOf("> write notes.txt hello from rein")).toBeLessThan(at)
  })

  it("says what is missing: no runner offers the agent, --repo without --agent, a repository no runner serves", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    const none = await rein([...flags, "create", "x1", "--agent", "nope"])
    expect(none).toMatchObject({ code: 1, stdout: "" })
    expect(none.stderr).toMatch(/^rein: no online runner offers agent nope \(offered: [a-z, ]*scripted[a-z, ]*\)\n$/)
    expect((await call("GET", "/sessions/x1")).status).toBe(404)
    const other = tempDir()
    const repoMissing = await rein([...flags, "create", "x2", "--agent", "scripted", "--repo", "."], { cwd: other })
    expect(repoMissing.code).toBe(1)
    expect(repoMissing.stderr).toBe(`rein: no runner offering scripted serves repository ${other} (served: ${repo})\n`)
    const bare = await rein([...flags, "create", "x3", "--repo", "."])
    expect(bare).toMatchObject({ code: 1, stderr: "rein: --repo, --base, --prompt and --runner say how to start an agent: they need --agent PROFILE\n" })
  })
})

describe("rein run, stop, start, runners (issue 20)", () => {
  it("run: creates with an id made up from the prompt, prints the turn, exits 0 when it ends", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    const r = await rein([...flags, "run", "scripted", "--repo", ".", "echo", "hello", "from", "run"], { cwd: repo })
    expect(r.code, r.stderr).toBe(0)
    const id = /^created (echo-hello-from-run-[a-z0-9]{4}) /.exec(r.stdout)?.[1]
    expect(id, r.stdout).toBeDefined()
    expect(r.stdout).not.toMatch(ESC)
    expect(r.stdout).toContain(`(bootstrapping, agent scripted on runner local, branch rein/${id})`)
    expect(r.stdout).toContain("> echo hello from run\n")
    expect(r.stdout).toContain("hello from run\n")
    expect(r.stderr).toContain(`rein: ${id} waits for you: rein prompt ${id} <text> goes on`)
    // The agent keeps running: the session is idle, waiting for the next prompt.
    expect((await call("GET", `/sessions/${id}`)).body).toMatchObject({ status: "idle", agent: "scripted" })

    // --id names it; the options may follow the prompt's first word.
    const named = await rein([...flags, "run", "scripted", "echo", "--id", "mine", "again"])
    expect(named.code, named.stderr).toBe(0)
    expect(named.stdout).toMatch(/^created mine \(/)
    expect(named.stdout).toContain("> echo again\n")

    // The turn's usage, held back while it runs, is printed before run ends.
    const usage = await rein([...flags, "run", "scripted", "--id", "u1", "usage"])
    expect(usage.code, usage.stderr).toBe(0)
    expect(usage.stdout).toMatch(/^\[usage\] tokens in \d+ · out \d+/m)
  })

  it("run: an agent that fails to start ends it with exit 1 and why", async () => {
    const repo = makeRepo()
    const { flags } = await hub(repo)
    const r = await rein([...flags, "run", "broken", "--id", "b1", "echo", "hi"])
    expect(r.code).toBe(1)
    expect(r.stdout).toContain("[error]")
    expect(r.stderr).toMatch(/^rein: the agent of b1 failed: .*exited with code 5; its stderr ended with: scripted agent: no configuration, giving up\n$/)
  })

  it("stop and start the agent; the transcript says a new conversation began; no runner agent: said plainly", async () => {
    const repo = makeRepo()
    const { server, call, flags } = await hub(repo)
    expect((await rein([...flags, "create", "s2", "--agent", "scripted"])).code).toBe(0)
    await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body.status).toBe("live"))

    const stopped = await rein([...flags, "stop", "s2"])
    expect(stopped).toMatchObject({ code: 0, stderr: "" })
    expect(stopped.stdout).toBe("stopping s2's agent; its worktree and transcript stay (rein start s2 starts it again)\n")
    await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body.status).toBe("disconnected"))

    const started = await rein([...flags, "start", "s2"])
    expect(started).toMatchObject({ code: 0, stderr: "", stdout: "starting s2's agent in its worktree (rein watch s2 follows it)\n" })
    await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body.status).toBe("live"))
    const twice = await rein([...flags, "start", "s2"])
    expect(twice).toMatchObject({ code: 1, stderr: "rein: session s2's agent is running: stop it first\n" })
    await until(() => call("GET", "/sessions/s2/artifacts"), (r) =>
      expect(r.body.some((a: any) => a.kind === "custom" && a.name === "rein.new_conversation")).toBe(true))
    const artifacts = await rein([...flags, "artifacts", "s2"])
    expect(artifacts.stdout).toContain("— agent started again: a new conversation —\n")

    await server.createSession("plain")
    for (const command of ["stop", "start"]) {
      const r = await rein([...flags, command, "plain"])
      expect(r).toMatchObject({ code: 1, stdout: "", stderr: "rein: session plain has no agent a runner starts: its sandbox connects by itself\n" })
    }
    expect((await rein([...flags, "stop", "nope"])).stderr).toBe("rein: session nope not found\n")
  })

  it("runners: a table (online, agents, repos, sessions of max, free disk in human units) and --json", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    expect((await rein([...flags, "create", "r1", "--agent", "scripted"])).code).toBe(0)
    await until(() => call("GET", "/runners"), (r) => expect(r.body[0].sessions).toBe(1))
    const table = await rein([...flags, "runners"])
    expect(table).toMatchObject({ code: 0, stderr: "" })
    const lines = table.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(/^ID\s+NAME\s+ONLINE\s+AGENTS\s+SESSIONS\s+FREE DISK\s+REPOS$/)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toMatch(new RegExp(`^local\\s+.+ \\(embedded\\)\\s+yes\\s+[a-z, ]*scripted, broken\\s+1/∞\\s+\\d+(\\.\\d)? [KMGTP]iB\\s+${repo.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`))
    const json = await rein([...flags, "runners", "--json"])
    const records = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(records).toEqual((await call("GET", "/runners")).body)
  })

  it("made-up ids: the prompt's first words as a slug, and a short random part", () => {
    expect(idFromPrompt("Fix the login bug, please!", 123456)).toBe(`fix-the-login-bug-please-${(123456).toString(36).slice(-4)}`)
    expect(idFromPrompt("Ça   marche? déjà", 1)).toBe("ca-marche-deja-0001")
    expect(idFromPrompt("日本語", 35)).toBe("session-000z")
    expect(idFromPrompt("a ".repeat(100), 0).length).toBeLessThanOrEqual(45)
    expect(idFromPrompt("x".repeat(100), 0)).toBe(`${"x".repeat(40)}-0000`)
  })
})

// ---------------------------------------------------------------------------------------------------------------
// tmux: a pseudo-terminal with a screen to read.

const hasTmux = (() => {
  try {
    execFileSync("tmux", ["-V"], { stdio: "pipe" })
    return true
  } catch {
    return false
  }
})()
const socket = `rein-runners-test-${process.pid}-${randomUUID().slice(0, 8)}`
const tmux = (...args: Array<string>) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
afterAll(() => {
  try {
    tmux("kill-server")
  } catch {
    // no server was started
  }
})

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs `rein args` in `cwd` in a fresh tmux window 120x40; `EXIT=<code>` is printed when it ends. */
const terminal = (args: ReadonlyArray<string>, cwd: string) => {
  const name = `t${randomUUID().slice(0, 8)}`
  const cmd = `env -u NO_COLOR -u REIN_URL -u REIN_TOKEN TERM=xterm-256color ${shellQuote(process.execPath)} ${shellQuote(bin)} ${
    args.map(shellQuote).join(" ")
  }; echo EXIT=$?; sleep 600`
  tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c", cwd, cmd)
  cleanups.push(() => void tmux("kill-session", "-t", name))
  const screen = () => tmux("capture-pane", "-p", "-t", name)
  return {
    screen,
    keys: (...keys: Array<string>) => void tmux("send-keys", "-t", name, ...keys),
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

describe.skipIf(!hasTmux)("rein run and watch on a terminal (tmux)", () => {
  it("run --repo .: the header names agent, runner and branch; the changes as one line; exit 0 when the turn ends", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    const t = terminal([...flags, "run", "scripted", "--repo", ".", "--id", "t1", "write notes.txt hello from tmux"], repo)
    const screen = await t.waitFor((s) => /EXIT=\d/.test(s), "rein run to end", 30_000)
    expect(screen).toContain("EXIT=0")
    expect(screen).toMatch(/watching t1 \(starting, agent scripted on runner local, branch rein\/t1\) on http:\/\/127\.0\.0\.1:\d+ · until its turn ends/)
    expect(screen).toContain("❯ write notes.txt hello from tmux")
    expect(screen).toContain("wrote notes.txt")
    expect(screen).toMatch(/± changes 1 file changed, \+1 -0/)
    expect(screen).not.toContain("+hello from tmux")
    expect(screen).toContain("rein: t1 waits for you")
    expect((await call("GET", "/sessions/t1")).body.status).toBe("idle")

    // rein watch: the same header, the changes line once.
    const w = terminal([...flags, "watch", "t1"], repo)
    const watched = await w.waitFor((s) => s.includes("± changes"), "the changes line")
    expect(watched).toMatch(/watching t1 \(done, agent scripted on runner local, branch rein\/t1\) on /)
    w.keys("C-c")
    await w.waitFor((s) => s.includes("EXIT=0"), "watch to end on Ctrl-C")
  })

  it("run: Ctrl-C stops watching, the agent keeps running", async () => {
    const repo = makeRepo()
    const { call, flags } = await hub(repo)
    const t = terminal([...flags, "run", "scripted", "--id", "t2", "slow-stream"], repo)
    await t.waitFor((s) => s.includes("❯ slow-stream"), "the prompt")
    await until(() => call("GET", "/sessions/t2"), (r) => expect(r.body.status).toBe("live"))
    t.keys("C-c")
    const screen = await t.waitFor((s) => /EXIT=\d/.test(s), "rein run to end")
    expect(screen).toContain("EXIT=0")
    expect(screen.replace(/\s+/g, " ")).toContain("rein: t2's agent keeps running: rein watch t2 follows it, rein stop t2 stops it")
    expect((await call("GET", "/sessions/t2")).body.status).toBe("live")
  })
})
