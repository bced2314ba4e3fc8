/**
 * Processes by pid AND start time, and stopping a process group: real children in their own
 * groups.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { afterEach, describe, expect, it } from "vitest"
import { groupMembers, isSameProcess, killGroup, processStartTime } from "../src/runner/Processes.js"
import { alive, cleanup, spawnIdle } from "./runner-helpers.js"

afterEach(cleanup)

describe("processStartTime / isSameProcess", () => {
  it("reads a running process's start time, the same each time, and nothing for a pid that is gone", async () => {
    const p = await spawnIdle()
    const start = await processStartTime(p.pid)
    expect(start).toBeTypeOf("number")
    expect(await processStartTime(p.pid)).toBe(start)
    // Started after this test process did.
    expect(start!).toBeGreaterThanOrEqual((await processStartTime(process.pid))!)
    expect(await isSameProcess(p.pid, start!)).toBe(true)
    // Same pid, other start time: a recycled pid, not the process recorded.
    expect(await isSameProcess(p.pid, start! - 1)).toBe(false)
    expect(await isSameProcess(process.pid, start!)).toBe(false)

    expect(await killGroup(p.pid, 2000)).toBe("terminated")
    // At once not the same process (a zombie has exited), and gone once its parent (us) reaped it.
    expect(await isSameProcess(p.pid, start!)).toBe(false)
    await expect.poll(() => processStartTime(p.pid)).toBeUndefined()
    expect(await processStartTime(-1)).toBeUndefined()
    expect(await processStartTime(0)).toBeUndefined()
  })

  it("counts fields from the last ')': a process name with spaces and parentheses does not shift them", async () => {
    const child = spawn(process.execPath, ["-e", `process.stdin.once("data",()=>{process.title="a) b (c";process.stdout.write("ok\\n")});setInterval(()=>{},1000)`], {
      detached: true,
      stdio: ["pipe", "pipe", "inherit"]
    })
    try {
      await new Promise((r) => child.once("spawn", r))
      const before = await processStartTime(child.pid!)
      child.stdin!.write("go\n")
      await new Promise((r) => child.stdout!.once("data", r))
      const comm = readFileSync(`/proc/${child.pid}/stat`, "utf8")
      expect(comm).toContain("(a) b (c)")
      expect(before).toBeTypeOf("number")
      expect(await processStartTime(child.pid!)).toBe(before)
      expect(await isSameProcess(child.pid!, before!)).toBe(true)
    } finally {
      await killGroup(child.pid!, 1000)
    }
  })
})

describe("killGroup", () => {
  it("SIGTERM stops the leader and what it started, within the grace period", async () => {
    const p = await spawnIdle({ grandchild: true })
    expect(alive(p.childPid!)).toBe(true)
    expect((await groupMembers(p.pid)).map((m) => m.pid).sort()).toEqual([p.pid, p.childPid].sort())
    const t0 = Date.now()
    expect(await killGroup(p.pid, 5000)).toBe("terminated")
    expect(Date.now() - t0).toBeLessThan(4000)
    expect(alive(p.pid)).toBe(false)
    expect(alive(p.childPid!)).toBe(false)
    expect(await groupMembers(p.pid)).toEqual([])
  })

  it("SIGKILL once the grace period passed, for a group that ignores SIGTERM", async () => {
    const p = await spawnIdle({ grandchild: true, ignoreTerm: true })
    const t0 = Date.now()
    expect(await killGroup(p.pid, 300)).toBe("killed")
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
    expect(alive(p.pid)).toBe(false)
    expect(alive(p.childPid!)).toBe(false)
  })

  it("a group that is gone is \"gone\"; pids that are no group are refused", async () => {
    const p = await spawnIdle()
    await killGroup(p.pid, 1000)
    expect(await killGroup(p.pid, 1000)).toBe("gone")
    await expect(killGroup(0, 100)).rejects.toThrow(/not a process to stop/)
    await expect(killGroup(1, 100)).rejects.toThrow(/not a process to stop/)
  })
})
