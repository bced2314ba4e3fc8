/**
 * The simulated demo agent as a real ACP agent (src/demo/AcpAgent.ts, run as its own process
 * over stdio) behind the real bridge (src/sandbox/Bridge.ts, what `rein-sandbox` runs), against
 * a real Rein server on a socket, driven over HTTP as a dashboard would: a prompt gives
 * reasoning, a plan, a tool call that really lists the working directory, streamed text and a
 * permission before a pretend write; the answer completes or fails the write; "always allow"
 * switches modes; an abort ends the turn cancelled at once, also while a permission waits.
 */
import { buildSync } from "esbuild"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { findings, notePath, reasoning, rejectedText, summary } from "../src/demo/script.js"
import { Bridge } from "../src/sandbox/Bridge.js"
import { type SseClient, sse, start, tempDir, type TestServer, until } from "./helpers.js"

const root = fileURLToPath(new URL("..", import.meta.url))
/** The entry, bundled alone (what `npm run build` makes of it is dist/demo/acp-bin.js). */
const agentJs = join(root, "dist-test", "demo", "acp-bin.js")

beforeAll(() => {
  buildSync({
    entryPoints: [join(root, "src/demo/acp-bin.ts")],
    outfile: agentJs,
    bundle: true,
    packages: "external",
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "silent"
  })
  expect(existsSync(agentJs)).toBe(true)
}, 60_000)

let server: TestServer
beforeAll(async () => {
  server = await start({ bootstrapTimeout: 600_000 })
})
afterAll(async () => {
  await server?.close()
})

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const get = async (path: string) => (await server.request("GET", path)).body
const arts = async (id: string): Promise<Array<any>> => get(`/sessions/${id}/artifacts`)
const kinds = (all: Array<any>, kind: string) => all.filter((a) => a.kind === kind)
const texts = (all: Array<any>) => kinds(all, "text").map((a) => a.text as string)

let n = 0
/**
 * A session whose sandbox is the bridge running the demo agent (`--pace pace`) in a project
 * directory holding a folder and two files.
 */
const demoSession = async (pace: number) => {
  const id = `demo-acp-${++n}-${process.pid}`
  const { dir, cleanup } = tempDir()
  const cwd = join(dir, "project")
  mkdirSync(join(cwd, "src"), { recursive: true })
  writeFileSync(join(cwd, "README.md"), "# A project\n")
  writeFileSync(join(cwd, "package.json"), "{}\n")
  const lines: Array<string> = []
  const bridge = new Bridge({
    url: server.url,
    sessionId: id,
    create: {},
    cwd,
    command: process.execPath,
    args: [agentJs, "--pace", String(pace)],
    graceMs: 2_000,
    startTimeoutMs: 20_000,
    log: (line) => lines.push(line)
  })
  const ran = bridge.run()
  cleanups.push(async () => {
    bridge.stop()
    await ran
    cleanup()
  })
  await until(async () => lines.join("\n"), (log) => expect(log).toMatch(/ACP session \S+ in /))
  const command = async (body: unknown) => {
    const res = await server.request("POST", `/sessions/${id}/commands`, body)
    expect(res.status, res.text).toBe(202)
  }
  const stream = async (): Promise<SseClient> => {
    const c = await sse(`${server.url}/sessions/${id}/stream`)
    cleanups.push(() => c.close())
    await c.waitFor((e) => e.event === "snapshot_complete")
    return c
  }
  return {
    id,
    cwd,
    lines,
    command,
    stream,
    prompt: (text: string) => command({ type: "prompt", text }),
    session: () => get(`/sessions/${id}`),
    arts: () => arts(id)
  }
}

/** The session record once its turn is over (idle, with `lastStopReason`). */
const turnOver = (s: { session: () => Promise<any> }, stopReason: string, timeoutMs = 20_000) =>
  until(s.session, (r) => expect(r).toMatchObject({ status: "idle", lastStopReason: stopReason }), timeoutMs)

describe("the demo agent over ACP, behind the bridge", () => {
  it("a prompt: reasoning, a plan, a real listing, streamed text, a permission; allowed, the pretend write completes", async () => {
    const s = await demoSession(0.2)
    const agent = await until(s.arts, (all) => expect(kinds(all, "agent")).toHaveLength(1))
    expect(kinds(agent, "agent")[0]).toMatchObject({
      name: "Demo (simulated agent)",
      currentModeId: "ask",
      modes: [{ id: "ask", name: "Ask" }, { id: "auto", name: "Auto" }]
    })
    const live = await s.stream()
    const prompt = "Show me what you can do in this project."
    await s.prompt(prompt)

    const asking = await until(s.arts, (all) => expect(kinds(all, "permission")).toHaveLength(1))
    expect(kinds(asking, "reasoning").map((a) => a.text)).toEqual([reasoning(prompt)])

    const [list, write] = kinds(asking, "tool_call")
    expect(list).toMatchObject({ name: "list_directory", toolKind: "read", status: "done", input: JSON.stringify({ path: s.cwd }) })
    // It really listed the directory: a folder first, then the files.
    expect(list.output.split("\n")[0]).toBe("src/")
    expect(new Set(list.output.split("\n"))).toEqual(new Set(["src/", "README.md", "package.json"]))

    const path = notePath(1)
    expect(texts(asking)).toEqual([findings(prompt, s.cwd, { text: list.output, dirs: 1, files: 2, names: list.output.split("\n") }, path)])
    expect(texts(asking)[0]).toContain(`I listed \`${s.cwd}\`: **1** folders and **2** files`)
    // Streamed: the text artifact grew by many appends, not one.
    const textSeq = kinds(asking, "text")[0].seq
    const appends = live.events.filter((e) => e.event === "artifact_updated" && e.data.seq === textSeq && e.data.field === "text")
    expect(appends.length).toBeGreaterThanOrEqual(3)

    expect(kinds(asking, "plan").at(-1).entries.map((e: any) => e.status)).toEqual(["completed", "completed", "completed", "in_progress", "pending"])
    expect(write).toMatchObject({ name: "write_file", toolKind: "edit", status: "pending", title: `Write ${path}? (pretend: nothing is written to disk)` })
    const [permission] = kinds(asking, "permission")
    expect(permission).toMatchObject({ toolCallId: write.toolCallId, title: write.title, decision: null })
    expect(permission.options).toEqual([
      { optionId: "allow", name: "Allow", kind: "allow_once" },
      { optionId: "always", name: "Always allow", kind: "allow_always" },
      { optionId: "reject", name: "Reject", kind: "reject_once" }
    ])
    // The request shows the change it guards: the note as a new file.
    expect(permission.diff).toMatch(new RegExp(`^--- /dev/null\\n\\+\\+\\+ b/${path.replace(/[./]/g, "\\$&")}\\n`))
    expect(permission.diff).toContain("+# Demo note")
    expect(kinds(asking, "file_change")).toEqual([])
    expect((await s.session()).pendingPermissions).toBe(1)

    await s.command({ type: "permission_reply", requestId: permission.requestId, decision: "allow_once" })
    const record = await turnOver(s, "end_turn")
    expect(record).toMatchObject({ summary: summary(prompt), pendingPermissions: 0 })

    const done = await s.arts()
    expect(kinds(done, "permission")[0]).toMatchObject({ decision: "allow_once", optionId: "allow" })
    expect(kinds(done, "tool_call")[1]).toMatchObject({ toolCallId: write.toolCallId, status: "done" })
    expect(kinds(done, "tool_call")[1].output).toMatch(/^Pretend write of notes\/demo-1\.md \(\d+ lines\)\. Nothing was written to disk/)
    const [change] = kinds(done, "file_change")
    expect(change).toMatchObject({ path, action: "create" })
    expect(change.diff).toContain("+# Demo note")
    expect(texts(done)[1]).toMatch(/^Done: the diff above is the note I \*would\* have written\. /)
    expect(kinds(done, "plan").at(-1).entries.map((e: any) => e.status)).toEqual(Array(5).fill("completed"))
    const [usage] = kinds(done, "usage")
    expect(usage.context.size).toBe(200_000)
    expect(usage.context.used).toBeGreaterThan(1_200)
    // Pretend: nothing reached the disk.
    expect(existsSync(join(s.cwd, "notes"))).toBe(false)
  })

  it("rejected, the write fails; always allow switches to auto, which does not ask; set_mode ask asks again; an error prompt fails its turn", async () => {
    const s = await demoSession(0)
    const first = "first prompt"
    await s.prompt(first)
    const asking = await until(s.arts, (all) => expect(kinds(all, "permission")).toHaveLength(1))
    await s.command({ type: "permission_reply", requestId: kinds(asking, "permission")[0].requestId, decision: "reject" })
    await turnOver(s, "end_turn")
    let all = await s.arts()
    expect(kinds(all, "tool_call")[1]).toMatchObject({ status: "error", output: "Rejected by the user: nothing written." })
    expect(kinds(all, "file_change")).toEqual([])
    expect(texts(all).at(-1)).toBe(rejectedText)
    expect(kinds(all, "plan").at(-1).entries[3].content).toBe("Write a note (pretend): rejected")

    await s.prompt("second prompt")
    all = await until(s.arts, (all) => expect(kinds(all, "permission").filter((p) => p.decision === null)).toHaveLength(1))
    const second = kinds(all, "permission").find((p) => p.decision === null)
    await s.command({ type: "permission_reply", requestId: second.requestId, optionId: "always" })
    await until(s.arts, (all) => expect(kinds(all, "file_change")).toHaveLength(1))
    await turnOver(s, "end_turn")
    all = await s.arts()
    expect(kinds(all, "agent")[0].currentModeId).toBe("auto")
    expect(texts(all).at(-1)).toContain("(and I will not ask again in this session)")
    // The title came with the first prompt only.
    expect((await s.session()).summary).toBe(summary(first))

    // Auto: no question; and a prompt that asks for an error gets one, ending its turn with it.
    await s.prompt("show me an error")
    await turnOver(s, "error")
    all = await s.arts()
    expect(kinds(all, "permission")).toHaveLength(2)
    expect(kinds(all, "file_change").map((c) => c.path)).toEqual([notePath(2), notePath(3)])
    expect(kinds(all, "error").at(-1).message).toContain("Simulated error: the prompt asked for one")

    await s.command({ type: "set_mode", modeId: "ask" })
    await until(s.arts, (all) => expect(kinds(all, "agent")[0].currentModeId).toBe("ask"))
    await s.prompt("fourth prompt")
    all = await until(s.arts, (all) => expect(kinds(all, "permission")).toHaveLength(3))
    // Abort while the question waits: answered cancelled, the turn ends cancelled at once.
    const asked = Date.now()
    await s.command({ type: "abort" })
    await turnOver(s, "cancelled", 5_000)
    expect(Date.now() - asked).toBeLessThan(3_000)
    all = await s.arts()
    expect(kinds(all, "permission")[2].decision).toBe("cancelled")
    expect(kinds(all, "tool_call").at(-1).status).toBe("cancelled")
    expect(kinds(all, "turn_stopped")).toHaveLength(1)
    expect(kinds(all, "file_change")).toHaveLength(2)
    expect(existsSync(join(s.cwd, "notes"))).toBe(false)
  })

  it("an abort mid-turn, while the text streams, ends the turn cancelled at once; the next prompt runs", async () => {
    const s = await demoSession(1)
    const prompt = "Tell me about this project."
    await s.prompt(prompt)
    const streaming = await until(s.arts, (all) => expect(texts(all).join("")).not.toBe(""))
    const full = findings(prompt, s.cwd, { text: "", dirs: 1, files: 2, names: ["src/", "package.json", "README.md"] }, notePath(1))
    expect(texts(streaming)[0].length).toBeLessThan(full.length)
    const aborted = Date.now()
    await s.command({ type: "abort" })
    await turnOver(s, "cancelled", 5_000)
    expect(Date.now() - aborted).toBeLessThan(2_000)
    // Nothing more comes once the turn is over: the agent stopped, not just the bridge.
    const after = await s.arts()
    await new Promise((r) => setTimeout(r, 600))
    const later = await s.arts()
    expect(later.map((a) => [a.seq, a.text ?? null])).toEqual(after.map((a) => [a.seq, a.text ?? null]))
    expect(texts(later)[0].length).toBeLessThan(full.length)
    expect(kinds(later, "permission")).toEqual([])
    expect(kinds(later, "turn_stopped")).toHaveLength(1)

    await s.command({ type: "set_mode", modeId: "auto" })
    await s.prompt("again")
    await turnOver(s, "end_turn", 30_000)
    const again = await s.arts()
    expect(kinds(again, "file_change").map((c) => c.path)).toEqual([notePath(2)])
  }, 60_000)
})
