/**
 * A runner's start after a crash: recorded agents still running are stopped (by pid and start
 * time, never a recycled pid), worktrees of deleted sessions removed unless that loses work,
 * sessions that still exist reported without an agent. Real repositories and real processes.
 */
import { spawn } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { processGroup, processStartTime } from "../src/runner/Processes.js"
import { reconcile } from "../src/runner/Reconcile.js"
import { createWorktree, readMarker, recordProcesses } from "../src/runner/Worktrees.js"
import { alive, cleanup, commitAll, git, makeRepo, spawnIdle, tempDir } from "./runner-helpers.js"

afterEach(cleanup)

/** An idle agent started in the worktree, recorded in its marker as the runner would. */
const startAgent = async (path: string, options: { grandchild?: boolean; ignoreTerm?: boolean } = {}) => {
  const p = await spawnIdle({ ...options, cwd: path })
  const startTime = (await processStartTime(p.pid))!
  await recordProcesses(path, [{ pid: p.pid, startTime }])
  return { ...p, startTime }
}

describe("reconcile", () => {
  it("stops recorded agents, removes the worktrees of deleted sessions, keeps work, reports live sessions", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const mk = (sessionId: string) => createWorktree({ repo, sessionId, root })
    const [live, dirty, committed, clean] = await Promise.all(["live", "dirty", "committed", "clean"].map(mk))

    const liveAgent = await startAgent(live!.path, { grandchild: true })
    const dirtyAgent = await startAgent(dirty!.path, { ignoreTerm: true })
    writeFileSync(join(dirty!.path, "unsaved.txt"), "work in progress\n")
    writeFileSync(join(committed!.path, "done.txt"), "done\n")
    commitAll(committed!.path, "agent work")

    const existing = new Set(["live"])
    const report = await reconcile({ root, sessionExists: async (id) => existing.has(id), graceMs: 300 })

    expect(report.stopped.map((s) => [s.sessionId, s.pid, s.how, s.outcome]).sort()).toEqual(
      [["dirty", dirtyAgent.pid, "leader", "killed"], ["live", liveAgent.pid, "leader", "terminated"]].sort()
    )
    for (const pid of [liveAgent.pid, liveAgent.childPid!, dirtyAgent.pid]) expect(alive(pid)).toBe(false)

    expect(report.withoutAgent.map((w) => [w.sessionId, w.path, w.present, w.processes])).toEqual([["live", live!.path, true, []]])
    expect(existsSync(live!.path)).toBe(true)
    expect((await readMarker(live!.path))!.processes).toEqual([])

    expect(report.kept).toEqual([
      { sessionId: "dirty", path: dirty!.path, reason: "uncommitted changes", detail: "1 changed: unsaved.txt" }
    ])
    expect(existsSync(join(dirty!.path, "unsaved.txt"))).toBe(true)

    expect(report.removed.map((r) => [r.sessionId, r.branchKept, r.commits]).sort()).toEqual([
      ["clean", false, 0],
      ["committed", true, 1]
    ])
    expect(existsSync(committed!.path)).toBe(false)
    expect(existsSync(clean!.path)).toBe(false)
    expect(git(repo, "branch", "--format=%(refname:short)").split("\n").sort()).toEqual(["main", "rein/committed", "rein/dirty", "rein/live"])
    expect(report.errors).toEqual([])
    expect(report.foreign).toEqual([])

    // Run again: nothing left to stop or remove; the dirty one is still kept, the live one still reported.
    const again = await reconcile({ root, sessionExists: async (id) => existing.has(id), graceMs: 300 })
    expect(again.stopped).toEqual([])
    expect(again.removed).toEqual([])
    expect(again.kept.map((k) => k.sessionId)).toEqual(["dirty"])
    expect(again.withoutAgent.map((w) => w.sessionId)).toEqual(["live"])
  })

  it("never stops a recycled pid: same pid, another start time", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    const stranger = await spawnIdle()
    const strangerStart = (await processStartTime(stranger.pid))!
    // The marker says an agent with this pid ran, but it started at another time.
    await recordProcesses(wt.path, [{ pid: stranger.pid, startTime: strangerStart - 7 }])
    const report = await reconcile({ root, sessionExists: async () => true, graceMs: 100 })
    expect(report.stopped).toEqual([])
    expect(alive(stranger.pid)).toBe(true)
    expect(report.withoutAgent.map((w) => w.sessionId)).toEqual(["s1"])
  })

  it("a recorded process that leads no group of its own is stopped alone", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    // Not detached: in this test process's group, which must survive.
    const child = spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { stdio: "ignore" })
    try {
      await new Promise((r) => child.once("spawn", r))
      expect(await processGroup(child.pid!)).not.toBe(child.pid)
      await recordProcesses(wt.path, [{ pid: child.pid!, startTime: (await processStartTime(child.pid!))! }])
      const report = await reconcile({ root, sessionExists: async () => true, graceMs: 1000 })
      expect(report.stopped).toMatchObject([{ sessionId: "s1", pid: child.pid, how: "leader", outcome: "terminated" }])
      expect(alive(child.pid!)).toBe(false)
      expect(alive(process.pid)).toBe(true)
    } finally {
      child.kill("SIGKILL")
    }
  })

  it("stops what an agent that died left in its process group", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    const agent = await startAgent(wt.path, { grandchild: true })
    process.kill(agent.pid, "SIGKILL") // the leader only; its child stays in the group
    await expect.poll(() => processStartTime(agent.pid)).toBeUndefined()
    expect(alive(agent.childPid!)).toBe(true)
    const report = await reconcile({ root, sessionExists: async () => false, graceMs: 1000 })
    expect(report.stopped).toEqual([{ sessionId: "s1", pid: agent.pid, startTime: agent.startTime, how: "group", outcome: "terminated" }])
    expect(alive(agent.childPid!)).toBe(false)
    expect(report.removed.map((r) => r.sessionId)).toEqual(["s1"])
  })

  it("leaves alone another runner's worktrees, the sessions it runs now, and any it cannot check", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const theirs = await createWorktree({ repo, sessionId: "theirs", root, owner: "runner-b" })
    const running = await createWorktree({ repo, sessionId: "running", root, owner: "runner-a" })
    const unknown = await createWorktree({ repo, sessionId: "unknown", root, owner: "runner-a" })
    const theirAgent = await startAgent(theirs.path)
    const runningAgent = await startAgent(running.path)
    const report = await reconcile({
      root,
      owner: "runner-a",
      active: new Set(["running"]),
      sessionExists: async (id) => {
        if (id === "unknown") throw new Error("hub unreachable")
        return false
      },
      graceMs: 100
    })
    expect(report.stopped).toEqual([])
    expect(alive(theirAgent.pid)).toBe(true)
    expect(alive(runningAgent.pid)).toBe(true)
    expect(report.foreign.map((w) => w.sessionId)).toEqual(["theirs"])
    expect(report.removed).toEqual([])
    expect(report.errors).toEqual([
      { sessionId: "unknown", path: unknown.path, message: "cannot tell whether the session exists: hub unreachable" }
    ])
    for (const w of [theirs, running, unknown]) expect(existsSync(w.path)).toBe(true)
  })

  it("an interrupted creation of a deleted session is cleaned up; an empty root is nothing to do", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    const marker = (await readMarker(wt.path))!
    writeFileSync(join(root, "app", ".rein", "s1.json"), JSON.stringify({ ...marker, state: "creating" }))
    const report = await reconcile({ root, sessionExists: async () => false })
    expect(report.removed.map((r) => r.sessionId)).toEqual(["s1"])
    expect(existsSync(wt.path)).toBe(false)
    expect(await reconcile({ root: join(root, "none"), sessionExists: async () => false })).toEqual({
      stopped: [],
      removed: [],
      kept: [],
      withoutAgent: [],
      foreign: [],
      errors: []
    })
  })
})
