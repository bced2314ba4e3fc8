/**
 * Starting agents from the hub (issue 20), end to end: a real server with its embedded runner,
 * the scripted ACP agent as a profile (a real process over stdio), a real git repository in a
 * temp dir, driven over HTTP as the dashboard and `rein` do. The worktree and branch exist, the
 * agent's write lands in the worktree only, the Changes artifact shows it; stop and start; a
 * killed agent is an error that needs someone and can be started again; delete stops the process,
 * removes the worktree and keeps a branch with commits; no runner is `409 no_runner` with nothing
 * created; the agent's environment holds none of the server's secrets.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { processStartTime } from "../src/runner/Processes.js"
import { readMarker } from "../src/runner/Worktrees.js"
import { start, type TestServer, until } from "./helpers.js"
import { alive, cleanup, commitAll, git, makeRepo, tempDir } from "./runner-helpers.js"
import { buildAgent, buildRunnerBin, root } from "./sandboxBuild.js"

const TOKEN = "server-secret-token"
/** bubblewrap (Debian's `bubblewrap`; `.ci/run` installs it) confines a profile's agent to its worktree. */
const bwrap = ["/usr/bin/bwrap", "/bin/bwrap"].find((p) => existsSync(p))
let agentJs: string
let runnerJs: string
beforeAll(() => {
  agentJs = buildAgent("acp-agent")
  runnerJs = buildRunnerBin()
}, 60_000)

const servers: Array<TestServer> = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})
afterAll(() => cleanup())

const auth = { authorization: `Bearer ${TOKEN}` }

/** A server with its embedded runner serving `repo`, offering `scripted` (the test agent) and, with bubblewrap, `boxed` (the same, confined). */
const hub = async (
  repo: string,
  { bootstrapTimeout = 600_000, ...extra }: { readonly maxSessions?: number; readonly minFreeDisk?: number; readonly bootstrapTimeout?: number } = {}
) => {
  const dir = tempDir()
  const agentsFile = join(dir, "agents.json")
  const scripted = { name: "Scripted", command: process.execPath, args: [agentJs] }
  // The documented wrapper: everything read-only but the worktree, a private /tmp. (This checkout,
  // which holds the test agent, is bound back read-only, as it may itself live under /tmp.)
  const boxed = bwrap === undefined ? {} : {
    boxed: {
      ...scripted,
      name: "Scripted, confined",
      wrapper: [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--ro-bind", root, root, "--bind", "{cwd}", "{cwd}", "--die-with-parent", "--"
      ]
    }
  }
  // The same agent able to resume a conversation (ACP session/load).
  const resumable = { ...scripted, name: "Scripted, resumable", args: [agentJs, "--load"] }
  writeFileSync(agentsFile, JSON.stringify({ agents: { scripted, resumable, ...boxed } }))
  const worktrees = join(dir, "worktrees")
  const server = await start({
    token: TOKEN,
    bootstrapTimeout,
    runner: {
      repos: [repo],
      agentsFile,
      worktrees,
      minFreeDisk: 0,
      ...extra,
      // What a user's shell might hold: an API key the profile does not pass, and Rein's own secrets.
      env: { ...process.env, REIN_TOKEN: TOKEN, DATABASE_URL: "postgres://secret", OPENAI_API_KEY: "sk-not-for-scripted" },
      log: process.env.REIN_TEST_LOG ? (line) => console.error(line) : () => {}
    }
  })
  servers.push(server)
  const call = (method: string, path: string, body?: unknown) => server.request(method, path, body, auth)
  await until(() => call("GET", "/runners"), (r) =>
    expect(r.body[0]).toMatchObject({ id: "local", online: true, agents: expect.arrayContaining([{ id: "scripted", name: "Scripted" }]) }))
  return { server, call, worktrees }
}

const artifacts = (call: Awaited<ReturnType<typeof hub>>["call"], id: string) =>
  call("GET", `/sessions/${id}/artifacts`).then((r) => r.body as Array<any>)

describe("runners: agents started by the hub", () => {
  it("a session with an agent gets a worktree on rein/<id>, its first prompt, and its write lands there only", async () => {
    const repo = makeRepo()
    const { call, worktrees } = await hub(repo)
    const created = await call("POST", "/sessions/fix-1", { agent: "scripted", prompt: "write notes.txt hello from the agent" })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ id: "fix-1", agent: "scripted", runner: "local", workspace: { repo, branch: "rein/fix-1" } })
    expect(created.body.sandboxToken).toMatch(/^rst_/)

    const session = await until(() => call("GET", "/sessions/fix-1"), (r) =>
      expect(r.body).toMatchObject({ status: "idle", workspace: { path: expect.any(String) } }))
    const path = session.body.workspace.path as string
    expect(path).toBe(join(worktrees, "app", "fix-1"))
    expect(git(path, "rev-parse", "--abbrev-ref", "HEAD")).toBe("rein/fix-1")
    expect(readFileSync(join(path, "notes.txt"), "utf8")).toBe("hello from the agent\n")
    expect(existsSync(join(repo, "notes.txt"))).toBe(false)
    // The first prompt is in the transcript, answered; it names the session.
    const all = await artifacts(call, "fix-1")
    expect(all.find((a) => a.kind === "user_message")?.text).toBe("write notes.txt hello from the agent")
    expect(all.find((a) => a.kind === "text")?.text).toBe("wrote notes.txt")
    expect(session.body.summary).toBe("write notes.txt hello from the agent")
    // The Changes view: the worktree against its base, after the turn.
    const changes = await until(() => artifacts(call, "fix-1"), (a) => expect(a.find((x) => x.kind === "changes")).toBeDefined())
    const diff = changes.find((x) => x.kind === "changes").diff as string
    expect(diff).toContain("+++ b/notes.txt")
    expect(diff).toContain("+hello from the agent")
    // The marker records the agent by pid and start time.
    const marker = await readMarker(path)
    expect(marker?.processes).toHaveLength(1)
    expect(await processStartTime(marker!.processes[0]!.pid)).toBe(marker!.processes[0]!.startTime)
  })

  it("stop stops the agent and keeps the worktree; start runs it again there; delete removes process and worktree, keeps a branch with commits", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    expect((await call("POST", "/sessions/s2", { agent: "scripted", repo })).status).toBe(201)
    const live = await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body).toMatchObject({ status: "live", workspace: { path: expect.any(String) } }))
    const path = live.body.workspace.path as string
    const pid = await until(() => readMarker(path), (m) => expect(m?.processes).toHaveLength(1)).then((m) => m!.processes[0]!.pid)
    expect(alive(pid)).toBe(true)

    expect((await call("POST", "/sessions/s2/stop")).status).toBe(202)
    await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body.status).toBe("disconnected"))
    await until(async () => alive(pid), (a) => expect(a).toBe(false))
    expect(existsSync(path)).toBe(true)
    // Stopped on purpose: nobody is needed.
    expect((await call("GET", "/sessions?attention=1")).body).toEqual([])

    expect((await call("POST", "/sessions/s2/start")).status).toBe(202)
    await until(() => call("GET", "/sessions/s2"), (r) => expect(r.body.status).toBe("live"))
    // A running agent cannot be started twice.
    expect((await call("POST", "/sessions/s2/start")).body.error.code).toBe("conflict")
    expect((await call("POST", "/sessions/s2/commands", { type: "prompt", text: "write kept.txt keep me" })).status).toBe(202)
    await until(() => artifacts(call, "s2"), (a) => expect(a.some((x) => x.kind === "text" && x.text === "wrote kept.txt")).toBe(true))
    // The restart said so: a new conversation.
    expect((await artifacts(call, "s2")).some((a) => a.kind === "custom" && a.name === "rein.new_conversation")).toBe(true)
    commitAll(path, "the agent's work")
    const pid2 = (await readMarker(path))!.processes[0]!.pid

    expect((await call("DELETE", "/sessions/s2")).status).toBe(204)
    await until(async () => alive(pid2) || existsSync(path), (busy) => expect(busy).toBe(false))
    expect(git(repo, "branch", "--list", "rein/s2")).toContain("rein/s2")
  })

  it("started again, an agent that can session/load resumes its conversation (its replay not repeated); one that cannot says it starts anew", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    const idOf = async (id: string) => {
      const before = (await artifacts(call, id)).length
      expect((await call("POST", `/sessions/${id}/commands`, { type: "prompt", text: "session-id" })).status).toBe(202)
      const all = await until(() => artifacts(call, id), (a) => expect(a.slice(before).some((x) => x.kind === "text")).toBe(true))
      return all.slice(before).find((x) => x.kind === "text").text as string
    }
    for (const agent of ["resumable", "scripted"]) {
      const id = `re-${agent}`
      await call("POST", `/sessions/${id}`, { agent })
      await until(() => call("GET", `/sessions/${id}`), (r) => expect(r.body.status).toBe("live"))
      const first = await idOf(id)
      expect((await call("POST", `/sessions/${id}/stop`)).status).toBe(202)
      await until(() => call("GET", `/sessions/${id}`), (r) => expect(r.body.status).toBe("disconnected"))
      expect((await call("POST", `/sessions/${id}/start`)).status).toBe(202)
      await until(() => call("GET", `/sessions/${id}`), (r) => expect(r.body.status).toBe("live"))
      const second = await idOf(id)
      const all = await artifacts(call, id)
      const notices = all.filter((a) => a.kind === "custom" && String(a.name).endsWith("_conversation")).map((a) => a.name)
      if (agent === "resumable") {
        expect(second).toBe(first)
        expect(notices).toEqual(["rein.resumed_conversation"])
        expect(JSON.stringify(all)).not.toContain("(replayed history)")
      } else {
        expect(notices).toEqual(["rein.new_conversation"])
        expect(all.find((a) => a.name === "rein.new_conversation").data.text).toMatch(/new conversation \(it cannot resume/)
      }
    }
  })

  it("an agent killed is an error that needs someone; started again from the hub it runs", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    await call("POST", "/sessions/k1", { agent: "scripted" })
    const live = await until(() => call("GET", "/sessions/k1"), (r) => expect(r.body).toMatchObject({ status: "live", workspace: { path: expect.any(String) } }))
    const marker = await until(() => readMarker(live.body.workspace.path), (m) => expect(m?.processes).toHaveLength(1))
    process.kill(marker!.processes[0]!.pid, "SIGKILL")
    await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body.map((s: any) => s.id)).toEqual(["k1"]))
    const error = (await artifacts(call, "k1")).find((a) => a.kind === "error")
    expect(error).toMatchObject({ fatal: true })
    expect(error.message).toMatch(/SIGKILL/)
    expect((await call("POST", "/sessions/k1/start")).status).toBe(202)
    await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body).toEqual([]))
    expect((await call("GET", "/sessions/k1")).body.status).toBe("live")
  })

  it("a start that cannot happen says why in the transcript: not a git repository", async () => {
    const notRepo = tempDir()
    const { call } = await hub(notRepo)
    expect((await call("POST", "/sessions/nr", { agent: "scripted" })).status).toBe(201)
    await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body.map((s: any) => s.id)).toEqual(["nr"]))
    const error = (await artifacts(call, "nr")).find((a) => a.kind === "error")
    expect(error.message).toMatch(/worktree/)
    expect(error.message).toMatch(/git/)
  })

  it("below its free-disk threshold a runner refuses the start and says why; at its session cap it is full", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo, { minFreeDisk: 2 ** 60, maxSessions: 1, bootstrapTimeout: 300 })
    expect((await call("POST", "/sessions/d1", { agent: "scripted" })).status).toBe(201)
    expect((await call("POST", "/sessions/plain")).status).toBe(201)
    await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body.map((s: any) => s.id)).toEqual(["d1"]))
    const error = (await artifacts(call, "d1")).find((a) => a.kind === "error")
    expect(error).toMatchObject({ fatal: true, message: expect.stringMatching(/^not starting: \d+ MiB free in .+, below this runner's \d+ MiB$/) })
    expect((await call("GET", "/sessions/d1")).body.workspace.path).toBeNull()
    // A session without an agent is removed at its bootstrap timeout; one the hub starts waits for
    // its agent or for a person, with the error that says why.
    await until(() => call("GET", "/sessions/plain"), (r) => expect(r.status).toBe(404))
    expect((await call("GET", "/sessions/d1")).body).toMatchObject({ status: "bootstrapping", lastStopReason: "error" })

    const capped = await hub(makeRepo(), { maxSessions: 1 })
    expect((await capped.call("POST", "/sessions/c1", { agent: "scripted" })).status).toBe(201)
    await until(() => capped.call("GET", "/runners"), (r) => expect(r.body[0]).toMatchObject({ sessions: 1, maxSessions: 1 }))
    const full = await capped.call("POST", "/sessions/c2", { agent: "scripted" })
    expect(full.body.error).toEqual({ code: "no_runner", message: "every runner that could start scripted is full" })
    expect((await capped.call("GET", "/sessions/c2")).status).toBe(404)
  })

  it("no runner that can: 409 no_runner naming what is missing, and nothing created", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    const none = await call("POST", "/sessions/x1", { agent: "codex-9000" })
    expect(none.status).toBe(409)
    expect(none.body.error).toEqual({
      code: "no_runner",
      message: `no online runner offers agent codex-9000 (offered: demo, claude, codex, gemini, scripted, resumable${bwrap === undefined ? "" : ", boxed"})`
    })
    const elsewhere = await call("POST", "/sessions/x2", { agent: "scripted", repo: "/nowhere" })
    expect(elsewhere.body.error.code).toBe("no_runner")
    expect(elsewhere.body.error.message).toContain("serves repository /nowhere")
    expect((await call("POST", "/sessions/x3", { prompt: "hi" })).body.error).toEqual({ code: "bad_request", message: "prompt: needs agent" })
    expect((await call("GET", "/sessions")).body).toEqual([])

    const bare = await start({ token: TOKEN })
    servers.push(bare)
    const offline = await bare.request("POST", "/sessions/x4", { agent: "demo" }, auth)
    expect(offline.status).toBe(409)
    expect(offline.body.error.message).toMatch(/^no runner is online/)
    expect((await bare.request("GET", "/sessions", undefined, auth)).body).toEqual([])
  })

  it.skipIf(bwrap === undefined)("a profile's wrapper confines the agent: with bubblewrap it writes in its worktree and nowhere else", async () => {
    const repo = makeRepo()
    const { call, worktrees } = await hub(repo)
    await call("POST", "/sessions/box", { agent: "boxed", prompt: "write inside.txt in the worktree" })
    const s = await until(() => call("GET", "/sessions/box"), (r) => expect(r.body).toMatchObject({ status: "idle", lastStopReason: "end_turn" }))
    expect(readFileSync(join(s.body.workspace.path, "inside.txt"), "utf8")).toBe("in the worktree\n")
    // Its own write outside the worktree (as Claude's Write tool would do) is refused by the file system...
    const outside = join("/var/tmp", `rein-escape-${process.pid}.txt`)
    onTestFinished(() => rmSync(outside, { force: true }))
    expect((await call("POST", "/sessions/box/commands", { type: "prompt", text: `write ${outside} out` })).status).toBe(202)
    await until(() => call("GET", "/sessions/box"), (r) => expect(r.body.lastStopReason).toBe("error"))
    expect(existsSync(outside)).toBe(false)
    expect(JSON.stringify(await artifacts(call, "box"))).toMatch(/EROFS|read-only/i)
    // ...and what it writes in /tmp stays in its private /tmp.
    expect((await call("POST", "/sessions/box/commands", { type: "prompt", text: `write ${join(worktrees, "escaped.txt")} out` })).status).toBe(202)
    await until(() => call("GET", "/sessions/box"), (r) => expect(r.body.lastStopReason).toBe("end_turn"))
    expect(existsSync(join(worktrees, "escaped.txt"))).toBe(false)
  })

  it("the agent's environment is built from an allow-list: none of the server's secrets", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    await call("POST", "/sessions/e1", { agent: "scripted", prompt: "dump-env env.json" })
    const s = await until(() => call("GET", "/sessions/e1"), (r) => expect(r.body.status).toBe("idle"))
    const env = JSON.parse(readFileSync(join(s.body.workspace.path, "env.json"), "utf8")) as Record<string, string>
    expect(env.PATH).toBe(process.env.PATH)
    for (const secret of ["REIN_TOKEN", "DATABASE_URL", "OPENAI_API_KEY"]) expect(env[secret]).toBeUndefined()
    expect(JSON.stringify(env)).not.toContain(TOKEN)
    expect(JSON.stringify(env)).not.toContain("rst_")
  })

  it("a runner's offer speaks only for its own sessions: vanishing, it cannot make another's session need someone", async () => {
    const repo = makeRepo()
    const { call, server } = await hub(repo)
    expect((await call("POST", "/sessions/not-yours")).status).toBe(201)
    const { id, token } = (await call("POST", "/runners", { name: "liar" })).body
    const runnerAuth = { authorization: `Bearer ${token}` }
    const offer = { agents: [], repos: [], sessions: 1, running: ["not-yours"], maxSessions: null, freeDisk: null }
    const jobs = new AbortController()
    await fetch(`${server.url}/runners/${id}/jobs`, { headers: runnerAuth, signal: jobs.signal })
    expect((await server.request("PUT", `/runners/${id}/offer`, offer, runnerAuth)).status).toBe(204)
    jobs.abort()
    await until(() => call("GET", "/runners"), (r) => expect(r.body.find((x: any) => x.id === id).online).toBe(false))
    await new Promise((r) => setTimeout(r, 2_500))
    expect((await call("GET", "/sessions?attention=1")).body).toEqual([])
    expect((await artifacts(call, "not-yours"))).toEqual([])
  })

  it("deleting keeps a worktree with uncommitted work; a new session under that id is refused it rather than handed it", async () => {
    const repo = makeRepo()
    const { call } = await hub(repo)
    expect((await call("POST", "/sessions/twice", { agent: "scripted", prompt: "write draft.txt unsaved work" })).status).toBe(201)
    const s = await until(() => call("GET", "/sessions/twice"), (r) => expect(r.body).toMatchObject({ status: "idle", workspace: { path: expect.any(String) } }))
    const path = s.body.workspace.path as string
    expect((await call("DELETE", "/sessions/twice")).status).toBe(204)
    await until(async () => (await readMarker(path))?.processes ?? [], (p) => expect(p.every((x) => !alive(x.pid))).toBe(true))
    expect(readFileSync(join(path, "draft.txt"), "utf8")).toBe("unsaved work\n")
    expect((await call("POST", "/sessions/twice", { agent: "scripted" })).status).toBe(201)
    const refused = await until(() => artifacts(call, "twice"), (a) => expect(a.some((x) => x.kind === "error")).toBe(true))
    expect(refused.find((x) => x.kind === "error").message).toBe(
      `an earlier session named twice left its worktree at ${path} (uncommitted changes: 1 changed: draft.txt); it is kept`
    )
    expect(readFileSync(join(path, "draft.txt"), "utf8")).toBe("unsaved work\n")
  })

  it("after the server's token changes (or auth is turned on), an agent session still starts again", async () => {
    const repo = makeRepo()
    const dir = tempDir()
    const agentsFile = join(dir, "agents.json")
    writeFileSync(agentsFile, JSON.stringify({ agents: { scripted: { command: process.execPath, args: [agentJs] } } }))
    const options = (token?: string) => ({
      dbPath: join(dir, "rein.db"),
      ...(token !== undefined ? { token } : {}),
      runner: { repos: [repo], agentsFile, worktrees: join(dir, "worktrees"), minFreeDisk: 0, log: () => {} }
    })
    const ready = async (server: TestServer, headers: Record<string, string>) =>
      until(() => server.request("GET", "/runners", undefined, headers), (r) => expect(r.body[0]?.agents?.length ?? 0).toBeGreaterThan(0))
    for (const [before, after] of [[undefined, "first-token"], ["first-token", "second-token"]] as const) {
      const headersOf = (t: string | undefined): Record<string, string> => t === undefined ? {} : { authorization: `Bearer ${t}` }
      const one = await start(options(before))
      await ready(one, headersOf(before))
      const id = `rot-${after}`
      expect((await one.request("POST", `/sessions/${id}`, { agent: "scripted" }, headersOf(before))).status).toBe(201)
      await until(() => one.request("GET", `/sessions/${id}`, undefined, headersOf(before)), (r) => expect(r.body.status).toBe("live"))
      await one.close()
      const two = await start(options(after))
      servers.push(two)
      await ready(two, headersOf(after))
      expect((await two.request("POST", `/sessions/${id}/start`, undefined, headersOf(after))).status).toBe(202)
      await until(() => two.request("GET", `/sessions/${id}`, undefined, headersOf(after)), (r) => expect(r.body.status).toBe("live"))
      await two.close()
      servers.splice(servers.indexOf(two), 1)
    }
  })

  it("a runner starts agents only in the repositories it serves", async () => {
    const repo = makeRepo()
    const other = makeRepo("other")
    const { call } = await hub(repo)
    expect((await call("POST", "/sessions/r1", { agent: "scripted" })).status).toBe(201)
    await until(() => call("GET", "/sessions/r1"), (r) => expect(r.body.status).toBe("live"))
    expect((await call("POST", "/sessions/r1/stop")).status).toBe(202)
    await until(() => call("GET", "/sessions/r1"), (r) => expect(r.body.status).toBe("disconnected"))
    // The sandbox token may say anything about its workspace; a start still goes only where the runner serves.
    expect((await call("POST", "/sessions/r1/events", { type: "workspace", repo: other, path: "/x", branch: "rein/r1", baseRef: "HEAD" })).status).toBe(202)
    expect((await call("POST", "/sessions/r1/start")).status).toBe(202)
    await until(() => artifacts(call, "r1"), (a) => expect(a.at(-1)).toMatchObject({ kind: "error", message: `this runner does not serve repository ${other}` }))
  })

  it("POST /runners answers a token once; a revoked runner's job stream ends and its token stops working", async () => {
    const repo = makeRepo()
    const { call, server } = await hub(repo)
    const made = await call("POST", "/runners", { name: "vm-1" })
    expect(made.status).toBe(201)
    expect(made.body).toMatchObject({ id: expect.stringMatching(/^run_/), name: "vm-1", token: expect.stringMatching(/^rrt_/) })
    const runnerAuth = { authorization: `Bearer ${made.body.token}` }
    const offer = { agents: [{ id: "codex", name: "Codex" }], repos: ["/srv/app"], sessions: 0, maxSessions: 2, freeDisk: 1e9 }
    expect((await server.request("PUT", `/runners/${made.body.id}/offer`, offer, runnerAuth)).status).toBe(204)
    // A runner token opens only its own routes.
    expect((await server.request("GET", "/sessions", undefined, runnerAuth)).status).toBe(403)
    expect((await server.request("PUT", "/runners/local/offer", offer, runnerAuth)).status).toBe(403)
    const jobs = await fetch(`${server.url}/runners/${made.body.id}/jobs`, { headers: runnerAuth })
    expect(jobs.status).toBe(200)
    const listed = await until(() => call("GET", "/runners"), (r) =>
      expect(r.body.find((x: any) => x.id === made.body.id)).toMatchObject({ online: true, agents: [{ id: "codex" }], maxSessions: 2 }))
    expect(listed.body.find((x: any) => x.id === made.body.id).token).toBeUndefined()
    // Two runners offering different agents: each session goes to the one that offers its agent.
    const c = await call("POST", "/sessions/on-vm", { agent: "codex", repo: "/srv/app" })
    expect(c.body).toMatchObject({ runner: made.body.id, agent: "codex" })
    const text = await readUntil(jobs, "runner_revoked", async () => {
      expect((await call("DELETE", `/runners/${made.body.id}`)).status).toBe(204)
    })
    expect(text).toContain(`"type":"start","sessionId":"on-vm","agent":"codex","repo":"/srv/app"`)
    expect(text).toContain(`event: runner_revoked`)
    expect((await server.request("PUT", `/runners/${made.body.id}/offer`, offer, runnerAuth)).status).toBe(403)
    expect((await call("GET", "/runners")).body.map((r: any) => r.id)).toEqual(["local"])
  })
})

/** Reads an SSE response until `event` arrives (after `then` ran once the stream is open); returns all it read. */
const readUntil = async (res: Response, event: string, then: () => Promise<void>): Promise<string> => {
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  let ran = false
  const deadline = setTimeout(() => void reader.cancel(), 20_000)
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      if (!ran && text.includes("snapshot_complete") && text.includes("event: job")) {
        ran = true
        await then()
      }
      if (text.includes(`event: ${event}`)) break
    }
  } finally {
    clearTimeout(deadline)
    await reader.cancel().catch(() => {})
  }
  return text
}

describe("rein-runner: a remote runner", () => {
  /** `rein-runner` as a process, its stderr kept. */
  const runnerProcess = (url: string, token: string, args: ReadonlyArray<string>) => {
    const child = spawn(process.execPath, [runnerJs, "--url", url, "--token", token, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, REIN_TOKEN: "", REIN_RUNNER_TOKEN: "" }
    })
    let stderr = ""
    child.stderr!.on("data", (b) => (stderr += String(b)))
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)))
    children.push(child)
    return { child, exited, stderr: () => stderr }
  }
  const children: Array<ChildProcess> = []
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
  })

  it("kill -9 and restarted, it reconciles: no agent process and no worktree of a deleted session; a session that still exists starts again", async () => {
    const repo = makeRepo()
    const dir = tempDir()
    const agentsFile = join(dir, "agents.json")
    writeFileSync(agentsFile, JSON.stringify({ agents: { scripted: { command: process.execPath, args: [agentJs] } } }))
    const worktrees = join(dir, "worktrees")
    const server = await start({ token: TOKEN, bootstrapTimeout: 600_000 })
    servers.push(server)
    const call = (method: string, path: string, body?: unknown) => server.request(method, path, body, auth)
    const { token } = (await call("POST", "/runners", { name: "vm-2" })).body
    const args = ["--agents", agentsFile, "--repos", repo, "--worktrees", worktrees]
    const first = runnerProcess(server.url, token, args)
    await until(() => call("GET", "/runners"), (r) => expect(r.body[0]).toMatchObject({ online: true, repos: [repo] }))

    for (const id of ["gone", "kept"]) expect((await call("POST", `/sessions/${id}`, { agent: "scripted" })).status).toBe(201)
    const pids: Record<string, number> = {}
    for (const id of ["gone", "kept"]) {
      const s = await until(() => call("GET", `/sessions/${id}`), (r) => expect(r.body).toMatchObject({ status: "live", workspace: { path: expect.any(String) } }))
      pids[id] = (await until(() => readMarker(s.body.workspace.path), (m) => expect(m?.processes).toHaveLength(1)))!.processes[0]!.pid
    }
    const gonePath = join(worktrees, "app", "gone")
    // Each agent starts a long-running child in its process group: an agent may exit when its stdin
    // closes with the runner, what it started does not.
    const children: Record<string, number> = {}
    for (const id of ["gone", "kept"]) {
      const pidFile = join(dir, `${id}.pid`)
      expect((await call("POST", `/sessions/${id}/commands`, { type: "prompt", text: `spawn-child ${pidFile}` })).status).toBe(202)
      children[id] = Number(await until(async () => existsSync(pidFile) ? readFileSync(pidFile, "utf8") : "", (t) => expect(t).toMatch(/^\d+$/)))
    }
    first.child.kill("SIGKILL")
    await first.exited
    // The runner is gone; what its agents started is not (their own process groups).
    expect(alive(children.gone!) && alive(children.kept!)).toBe(true)
    await until(() => call("GET", "/runners"), (r) => expect(r.body[0].online).toBe(false))
    // A runner that went away took its agents along: both sessions need someone, nothing restarts them elsewhere.
    const needy = await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body.map((x: any) => x.id).sort()).toEqual(["gone", "kept"]))
    expect(needy.body.every((x: any) => x.status === "disconnected")).toBe(true)
    expect((await artifacts(call, "kept")).at(-1)).toMatchObject({ kind: "error", fatal: true, message: expect.stringContaining("went away") })
    expect((await call("DELETE", "/sessions/gone")).status).toBe(204)

    const second = runnerProcess(server.url, token, args)
    await until(() => call("GET", "/runners"), (r) => expect(r.body[0].online).toBe(true))
    await until(async () => [alive(pids.gone!), alive(pids.kept!), alive(children.gone!), alive(children.kept!), existsSync(gonePath)], (v) =>
      expect(v).toEqual([false, false, false, false, false]))
    expect(second.stderr()).toContain("removed the worktree of deleted session gone")
    expect(existsSync(join(worktrees, "app", "kept"))).toBe(true)
    await until(() => call("GET", "/sessions/kept"), (r) => expect(r.body.status).toBe("disconnected"))
    expect((await call("POST", "/sessions/kept/start")).status).toBe(202)
    await until(() => call("GET", "/sessions/kept"), (r) => expect(r.body.status).toBe("live"))

    // Once its agent started, it needs nobody.
    await until(() => call("GET", "/sessions?attention=1"), (r) => expect(r.body).toEqual([]))

    // SIGTERM: its agents stop, their sessions stay, it exits 0; stopped cleanly, nobody is needed.
    second.child.kill("SIGTERM")
    expect(await second.exited).toBe(0)
    await until(() => call("GET", "/sessions/kept"), (r) => expect(r.body.status).toBe("disconnected"))
    await new Promise((r) => setTimeout(r, 2_500))
    expect((await call("GET", "/sessions?attention=1")).body).toEqual([])
  })

  it("a bad token or a revoked runner stops with a message and exit 1", async () => {
    const server = await start({ token: TOKEN })
    servers.push(server)
    const { token, id } = (await server.request("POST", "/runners", { name: "vm-3" }, auth)).body
    const repo = makeRepo()
    const r = runnerProcess(server.url, token, ["--repos", repo, "--worktrees", join(tempDir(), "w")])
    await until(() => server.request("GET", "/runners", undefined, auth), (res) => expect(res.body[0].online).toBe(true))
    expect((await server.request("DELETE", `/runners/${id}`, undefined, auth)).status).toBe(204)
    expect(await r.exited).toBe(1)
    expect(r.stderr()).toContain("this runner was revoked")
    // Two processes with one token: the newer holds the stream, the older is told and stops.
    const again = (await server.request("POST", "/runners", { name: "vm-4" }, auth)).body
    const older = runnerProcess(server.url, again.token, ["--repos", repo, "--worktrees", join(tempDir(), "w")])
    await until(() => server.request("GET", "/runners", undefined, auth), (res) =>
      expect(res.body.find((x: any) => x.id === again.id)?.online).toBe(true))
    const newer = runnerProcess(server.url, again.token, ["--repos", repo, "--worktrees", join(tempDir(), "w")])
    expect(await older.exited).toBe(1)
    expect(older.stderr()).toContain("another process with this runner's token took its job stream over")
    expect(newer.child.exitCode).toBeNull()
    const bad = runnerProcess(server.url, "rrt_run_nope.secret", ["--repos", repo])
    expect(await bad.exited).toBe(1)
    expect(bad.stderr()).toMatch(/403|forbidden|not grant/i)
  })
})
