/**
 * The bridge's client capabilities on their own: Fs confined to the working
 * directory (also through symbolic links), Terminals' output limit, and how a
 * Rein decision picks an agent's option.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { optionForDecision } from "../src/Domain/Command.js"
import { Fs } from "../src/sandbox/Fs.js"
import { Terminals } from "../src/sandbox/Terminals.js"
import { tempDir } from "./helpers.js"

const cleanups: Array<() => void> = []
afterEach(() => cleanups.splice(0).forEach((c) => c()))

const project = () => {
  const { dir, cleanup } = tempDir()
  cleanups.push(cleanup)
  const cwd = join(dir, "project")
  mkdirSync(cwd)
  writeFileSync(join(dir, "secret.txt"), "secret")
  return { dir, cwd }
}

const refusal = (p: Promise<unknown>) => p.then(() => undefined, (e: { code?: number; message: string }) => e)

describe("Fs", () => {
  it("reads and writes inside the working directory; a write is a file_change", async () => {
    const { cwd } = project()
    const fs = await Fs.make(cwd)
    writeFileSync(join(cwd, "a.txt"), "1\n2\n3\n")
    expect(await fs.read({ path: join(cwd, "a.txt") })).toEqual({ content: "1\n2\n3\n" })
    expect(await fs.read({ path: join(cwd, "a.txt"), line: 2, limit: 2 })).toEqual({ content: "2\n3\n" })
    const change = await fs.write({ path: join(cwd, "d", "b.txt"), content: "new\n" }) as any
    expect(change).toMatchObject({ type: "file_change", path: "d/b.txt", action: "create" })
    expect(readFileSync(join(cwd, "d", "b.txt"), "utf8")).toBe("new\n")
  })

  it("refuses relative paths, paths outside, .. escapes and symbolic links leading out (-32602)", async () => {
    const { dir, cwd } = project()
    symlinkSync(dir, join(cwd, "up"))
    const fs = await Fs.make(cwd)
    for (const path of ["a.txt", join(dir, "secret.txt"), join(cwd, "..", "secret.txt"), join(cwd, "up", "secret.txt"), "/etc/passwd"]) {
      const e = await refusal(fs.read({ path }))
      expect(e?.code, path).toBe(-32602)
    }
    const e = await refusal(fs.write({ path: join(cwd, "up", "planted.txt"), content: "x" }))
    expect(e?.code).toBe(-32602)
    expect(e?.message).toContain("symbolic link")
  })

  it("a dangling symbolic link pointing out is refused, and nothing is written there", async () => {
    const { dir, cwd } = project()
    symlinkSync(join(dir, "planted.txt"), join(cwd, "link"))
    symlinkSync(join(cwd, "link"), join(cwd, "link2"))
    const fs = await Fs.make(cwd)
    for (const name of ["link", "link2"]) {
      const e = await refusal(fs.write({ path: join(cwd, name), content: "x" }))
      expect(e?.code, name).toBe(-32602)
    }
    expect(existsSync(join(dir, "planted.txt"))).toBe(false)
    // A dangling link that stays inside is a file like any other.
    symlinkSync(join(cwd, "later.txt"), join(cwd, "inside"))
    await fs.write({ path: join(cwd, "inside"), content: "ok" })
    expect(readFileSync(join(cwd, "later.txt"), "utf8")).toBe("ok")
  })

  it("a missing file is resource-not-found (-32002)", async () => {
    const { cwd } = project()
    const fs = await Fs.make(cwd)
    expect((await refusal(fs.read({ path: join(cwd, "nope.txt") })))?.code).toBe(-32002)
  })
})

describe("Terminals", () => {
  it("runs in the working directory, keeps the last bytes up to the limit, reports the exit", async () => {
    const { cwd } = project()
    const terminals = new Terminals(await Fs.make(cwd), process.env)
    const { terminalId } = await terminals.create({
      command: "sh",
      args: ["-c", "pwd; printf 'héllo wörld'; exit 7"],
      outputByteLimit: 8
    })
    expect(await terminals.waitForExit(terminalId)).toEqual({ exitCode: 7, signal: null })
    const out = terminals.output(terminalId)
    expect(out.truncated).toBe(true)
    expect(Buffer.byteLength(out.output)).toBeLessThanOrEqual(8)
    expect("héllo wörld".endsWith(out.output)).toBe(true)
    terminals.release(terminalId)
    expect(terminals.outputOf(terminalId)).toBe(out.output)
    expect(() => terminals.output(terminalId)).toThrow(/unknown terminal/)
  })

  it("a command that leaves a background process exits when it exits, with its output; release stops what it left", async () => {
    const { dir, cwd } = project()
    const terminals = new Terminals(await Fs.make(cwd), process.env)
    const pidFile = join(dir, "bg.pid")
    // The background sleep inherits the output pipes and keeps them open for 100 s.
    const { terminalId } = await terminals.create({
      command: "sh",
      args: ["-c", `sleep 100 & echo $! > ${pidFile}; echo started; exit 3`]
    })
    const exit = await Promise.race([
      terminals.waitForExit(terminalId),
      new Promise((r) => setTimeout(() => r("still waiting"), 10_000))
    ])
    expect(exit).toEqual({ exitCode: 3, signal: null })
    expect(terminals.output(terminalId)).toMatchObject({ output: "started\n", exitStatus: { exitCode: 3, signal: null } })
    const bg = Number(readFileSync(pidFile, "utf8"))
    const alive = () => {
      try {
        process.kill(bg, 0)
        return true
      } catch {
        return false
      }
    }
    expect(alive()).toBe(true)
    terminals.release(terminalId)
    const deadline = Date.now() + 10_000
    while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(alive()).toBe(false)
  })

  it("a cwd outside is refused; kill ends a running command", async () => {
    const { dir, cwd } = project()
    const terminals = new Terminals(await Fs.make(cwd), process.env)
    expect((await refusal(terminals.create({ command: "true", cwd: dir })))?.code).toBe(-32602)
    const { terminalId } = await terminals.create({ command: "sleep", args: ["100"] })
    terminals.kill(terminalId)
    expect(await terminals.waitForExit(terminalId)).toEqual({ exitCode: null, signal: "SIGKILL" })
    terminals.closeAll()
  })
})

describe("optionForDecision", () => {
  const options = [
    { optionId: "a1", kind: "allow_once" },
    { optionId: "aa", kind: "allow_always" },
    { optionId: "ra", kind: "reject_always" },
    { optionId: "r1", kind: "reject_once" }
  ]
  it("picks the first option of the decision's kind; a reject prefers reject_once", () => {
    expect(optionForDecision(options, "allow_once")).toBe("a1")
    expect(optionForDecision(options, "allow_always")).toBe("aa")
    expect(optionForDecision(options, "reject")).toBe("r1")
    expect(optionForDecision([{ optionId: "x", kind: "allow_once" }], "reject")).toBeUndefined()
  })
})
