/**
 * `rein-sandbox` end to end against stand-ins of real agents (test/fixtures/acp-standins.ts):
 * Claude's adapter, Codex, Gemini CLI and Qwen Code, each replaying its own message sequence
 * with its own option ids. A real server, the real `rein-sandbox` process, real stdio; asserted
 * on the artifacts a person reads: one text per reply (also with the command list arriving in
 * the middle of it), one file_change per edit, the tool's name, the agent's options.
 */
import { applyPatch } from "diff"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { request, start, tempDir, type TestServer } from "./helpers.js"
import { buildAgent, buildSandboxBin } from "./sandboxBuild.js"

let bin: string
let standins: string
let server: TestServer

beforeAll(async () => {
  bin = buildSandboxBin()
  standins = buildAgent("acp-standins")
  expect(existsSync(bin)).toBe(true)
  server = await start()
}, 120_000)
afterAll(async () => {
  await server.close()
})

const children: Array<{ child: ChildProcess; exited: Promise<unknown> }> = []
const cleanups: Array<() => void> = []
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) {
      c.child.kill("SIGKILL")
      await c.exited
    }
  }
  for (const c of cleanups.splice(0)) c()
})

const cleanEnv = () => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("REIN_") && v !== undefined) env[k] = v
  return env
}

let n = 0
/** A session whose sandbox runs the stand-in of `who`, ready for prompts. */
const session = async (who: string, env: Record<string, string> = {}) => {
  const id = `${who}-${++n}-${process.pid}`
  const { dir, cleanup } = tempDir()
  cleanups.push(cleanup)
  const cwd = join(dir, "project")
  mkdirSync(cwd)
  const child = spawn(process.execPath, [bin, "--url", server.url, "--session", id, "--create", "--cwd", cwd, "--", process.execPath, standins, "--as", who], {
    env: { ...cleanEnv(), ...env },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr!.on("data", (d) => (stderr += d))
  children.push({ child, exited: new Promise((r) => child.once("exit", r)) })
  const deadline = Date.now() + 20_000
  while (!stderr.includes("ACP session ")) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`rein-sandbox did not start: ${stderr}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  const command = async (body: unknown) => {
    const res = await request(server.url, "POST", `/sessions/${id}/commands`, body)
    expect(res.status, res.text).toBe(202)
  }
  return { id, cwd, stderr: () => stderr, command, prompt: (text: string) => command({ type: "prompt", text }) }
}

const until = async (id: string, check: (arts: Array<any>) => void, timeoutMs = 20_000): Promise<Array<any>> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const arts = (await request(server.url, "GET", `/sessions/${id}/artifacts`)).body
    try {
      check(arts)
      return arts
    } catch (e) {
      if (Date.now() > deadline) throw e
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

const kinds = (arts: Array<any>, kind: string) => arts.filter((a) => a.kind === kind)
const texts = (arts: Array<any>) => kinds(arts, "text").map((a) => a.text)

/** Prompts `edit <file>`, waits for the permission, answers it with `optionId`, waits for the turn's end. */
const edit = async (s: Awaited<ReturnType<typeof session>>, file: string, optionId: string) => {
  await s.prompt(`edit ${file}`)
  const pending = await until(s.id, (arts) => expect(kinds(arts, "permission")).toHaveLength(1))
  const permission = kinds(pending, "permission")[0]
  await s.command({ type: "permission_reply", requestId: permission.requestId, optionId })
  const deadline = Date.now() + 20_000
  for (;;) {
    const record = (await request(server.url, "GET", `/sessions/${s.id}`)).body
    if (record.status === "idle") break
    if (Date.now() > deadline) throw new Error(`session ${s.id} is ${record.status}: ${s.stderr()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { permission, arts: (await request(server.url, "GET", `/sessions/${s.id}/artifacts`)).body as Array<any> }
}

/** The agent artifact got its commands while the first text was being written. */
const expectCommandsMidReply = (arts: Array<any>, names: Array<string>) => {
  const [agent] = kinds(arts, "agent")
  const [reply] = kinds(arts, "text")
  expect(agent.commands.map((c: any) => c.name)).toEqual(names)
  expect(agent.updatedAt).toBeGreaterThanOrEqual(reply.createdAt)
  expect(agent.updatedAt).toBeLessThanOrEqual(reply.updatedAt)
}

describe("rein-sandbox with stand-ins of real agents", () => {
  it("Claude's adapter: the tool named from _meta.claudeCode, its three options, the file it writes itself one file_change", async () => {
    const s = await session("claude")
    const { permission, arts } = await edit(s, "a.txt", "allow")
    // Claude lists "Always Allow" first; the server sorts by kind, allow once first.
    expect(permission.options.map((o: any) => o.optionId)).toEqual(["allow", "allow_always", "reject"])
    expect(permission.title).toBe(`Write ${join(s.cwd, "a.txt")}`)
    expect(permission.diff).toMatch(/^--- \/dev\/null\n\+\+\+ b\/a\.txt\n/)
    expect(kinds(arts, "permission")[0]).toMatchObject({ decision: "allow_once", optionId: "allow" })
    const [call] = kinds(arts, "tool_call")
    expect(call).toMatchObject({ name: "Write", title: `Write ${join(s.cwd, "a.txt")}`, toolKind: "edit", status: "done" })
    expect(kinds(arts, "file_change").map((c) => [c.path, c.action])).toEqual([["a.txt", "create"]])
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("created by claude\n")
    expect(texts(arts)).toEqual(["I'll create the file.", "Created a.txt."])
    // Its usage_update with `used: null`: the cost counted, the rest kept.
    expect(kinds(arts, "usage")[0]).toMatchObject({ costUsd: 0.0123 })
    expect(kinds(arts, "agent")[0]).toMatchObject({ name: "Claude Agent", version: "0.23.1", currentModeId: "default" })
    expect(kinds(arts, "agent")[0].modes).toHaveLength(5)
  })

  it("Codex: authenticated with its key; the command list mid-reply leaves one text; permission before any tool_call, options approved / abort", async () => {
    const s = await session("codex", { OPENAI_API_KEY: "sk-standin" })
    expect(s.stderr()).toContain("authenticated with openai-api-key")
    const { permission, arts } = await edit(s, "a.txt", "approved")
    expect(permission.options.map((o: any) => [o.optionId, o.kind])).toEqual([["approved", "allow_once"], ["abort", "reject_once"]])
    expect(permission.title).toBe("Edit a.txt")
    expect(kinds(arts, "permission")[0]).toMatchObject({ decision: "allow_once", optionId: "approved" })
    // The command list arrived between "Hello from the " and "fake model!": one reply, one text.
    expectCommandsMidReply(arts, ["review", "init"])
    expect(texts(arts)).toEqual(["Hello from the fake model!", "Created a.txt."])
    const calls = kinds(arts, "tool_call")
    expect(calls).toHaveLength(1)
    expect(calls[0]).toMatchObject({ name: "edit", title: "Edit a.txt", toolKind: "edit", status: "done" })
    expect(kinds(arts, "file_change").map((c) => [c.path, c.action])).toEqual([["a.txt", "create"]])
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("created by codex\n")
  })

  it("Gemini CLI: no tool_call before its permission, options proceed_*/cancel; it writes through fs/* and reports the diff too: one file_change", async () => {
    const s = await session("gemini", { GEMINI_API_KEY: "standin-key" })
    expect(s.stderr()).toContain("authenticated with gemini-api-key")
    writeFileSync(join(s.cwd, "a.txt"), "one\ntwo\nthree\n")
    const { permission, arts } = await edit(s, "a.txt", "proceed_once")
    expect(permission.options.map((o: any) => o.optionId)).toEqual(["proceed_once", "proceed_always", "cancel"])
    expect(permission.title).toBe("a.txt: two => 2")
    expect(applyPatch("one\ntwo\nthree\n", permission.diff)).toBe("one\n2\nthree\n")
    expect(kinds(arts, "permission")[0]).toMatchObject({ decision: "allow_once", optionId: "proceed_once" })
    const calls = kinds(arts, "tool_call")
    expect(calls).toHaveLength(1)
    expect(calls[0]).toMatchObject({ name: "edit", toolKind: "edit", status: "done" })
    const changes = kinds(arts, "file_change")
    expect(changes.map((c) => [c.path, c.action])).toEqual([["a.txt", "modify"]])
    expect(applyPatch("one\ntwo\nthree\n", changes[0].diff)).toBe("one\n2\nthree\n")
    expect(readFileSync(join(s.cwd, "a.txt"), "utf8")).toBe("one\n2\nthree\n")
    expect(texts(arts)).toEqual(["I'll edit a.txt.", "Done."])
  })

  it("Qwen Code: tool named from _meta.toolName, oldText \"\" a create, fs write and diff one file_change, its extension request answered method-not-found", async () => {
    const s = await session("qwen")
    expect(s.stderr()).not.toContain("authenticated with")
    const { permission, arts } = await edit(s, "new.txt", "proceed_always")
    expect(permission.options.map((o: any) => o.optionId)).toEqual(["proceed_once", "proceed_always", "cancel"])
    expect(permission.diff).toMatch(/^--- \/dev\/null\n\+\+\+ b\/new\.txt\n/)
    expect(kinds(arts, "permission")[0]).toMatchObject({ decision: "allow_always", optionId: "proceed_always" })
    const calls = kinds(arts, "tool_call")
    expect(calls).toHaveLength(1)
    expect(calls[0]).toMatchObject({ name: "write_file", title: "Writing to new.txt", toolKind: "edit", status: "done" })
    expect(kinds(arts, "file_change").map((c) => [c.path, c.action])).toEqual([["new.txt", "create"]])
    expect(readFileSync(join(s.cwd, "new.txt"), "utf8")).toBe("created by qwen\n")
    expectCommandsMidReply(arts, ["init"])
    expect(texts(arts)).toEqual(["Hello from the fake model!", "Done. (craft/drainMidTurnQueue: -32601)"])
  })
})
