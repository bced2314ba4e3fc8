/**
 * What a runner does at its start, before it takes a job (also after `kill -9`, when no cleanup
 * of its own ran): from the markers under its worktrees root,
 *
 * - every process recorded there that is still running is stopped: matched by pid AND start
 *   time, never by name (a recycled pid is someone else's process);
 * - a worktree whose session no longer exists is removed, unless removing it would lose work
 *   (uncommitted changes, detached commits): that one is kept and reported;
 * - a worktree whose session still exists stays; the session is reported as having no agent
 *   now, so the server can show it `disconnected` and start it again.
 *
 * Safe to run again at any time for the sessions a runner is not running (`active`).
 */
import {
  groupExists,
  groupMembers,
  isSameProcess,
  type KillOutcome,
  killGroup,
  killProcess,
  processGroup,
  processStartTime,
  type ProcessId
} from "./Processes.js"
import { type KeptReason, listWorktrees, recordProcesses, removeWorktree, type WorktreeStatus } from "./Worktrees.js"

export interface ReconcileOptions {
  /** The worktrees directory. */
  readonly root: string
  /** Whether the hub still has this session. Throwing leaves that worktree alone (reported in `errors`). */
  readonly sessionExists: (sessionId: string) => Promise<boolean>
  /** This runner's id: only markers it made (same owner) are touched; the rest are `foreign`. */
  readonly owner?: string
  /** Sessions this runner is running right now: their processes and worktrees are left alone. */
  readonly active?: ReadonlySet<string>
  /** How long a stopped agent's group gets after SIGTERM before SIGKILL. Default 5000 ms. */
  readonly graceMs?: number
}

export interface StoppedProcess extends ProcessId {
  readonly sessionId: string
  /**
   * `leader`: the recorded process itself was running. `group`: it had exited, but processes
   * it started were left in its group (the pid is still reserved as their group id, so the
   * group is the one it led; each of them started after it).
   */
  readonly how: "leader" | "group"
  readonly outcome: KillOutcome
}

export interface ReconcileReport {
  readonly stopped: ReadonlyArray<StoppedProcess>
  /** Worktrees removed (their session is gone); `branchKept` when it has commits. */
  readonly removed: ReadonlyArray<{
    readonly sessionId: string
    readonly path: string
    readonly branch?: string
    readonly branchKept: boolean
    readonly commits?: number
  }>
  /** Worktrees of gone sessions that were not removed, and why. */
  readonly kept: ReadonlyArray<{ readonly sessionId: string; readonly path: string; readonly reason: KeptReason; readonly detail: string }>
  /** Sessions that still exist and now have no agent: their worktrees (`present` false: it must be made again). */
  readonly withoutAgent: ReadonlyArray<WorktreeStatus>
  /** Markers of another runner (another `owner`), not touched. */
  readonly foreign: ReadonlyArray<WorktreeStatus>
  /** What could not be done (a session check that failed, a git error), per worktree. */
  readonly errors: ReadonlyArray<{ readonly sessionId: string; readonly path: string; readonly message: string }>
}

const message = (e: unknown) => e instanceof Error ? e.message : String(e)

/** Stops what is left of a recorded process, if anything; undefined when nothing of it runs. */
const stopRecorded = async (p: ProcessId, graceMs: number): Promise<Pick<StoppedProcess, "how" | "outcome"> | undefined> => {
  if (await isSameProcess(p.pid, p.startTime)) {
    // An agent leads its own group; a process recorded that does not is stopped alone.
    const leads = (await processGroup(p.pid)) === p.pid
    return { how: "leader", outcome: leads ? await killGroup(p.pid, graceMs) : await killProcess(p.pid, graceMs) }
  }
  // The leader is gone. While any process still has it as its group id, the kernel does not
  // give the pid to a new process, so a group with that id and no leader is what it left.
  if ((await processStartTime(p.pid)) !== undefined || !groupExists(p.pid)) return undefined
  const members = await groupMembers(p.pid)
  if (members.length === 0 || members.some((m) => m.startTime < p.startTime)) return undefined
  return { how: "group", outcome: await killGroup(p.pid, graceMs) }
}

export const reconcile = async (options: ReconcileOptions): Promise<ReconcileReport> => {
  const graceMs = options.graceMs ?? 5000
  const stopped: Array<StoppedProcess> = []
  const removed: Array<ReconcileReport["removed"][number]> = []
  const kept: Array<ReconcileReport["kept"][number]> = []
  const withoutAgent: Array<WorktreeStatus> = []
  const foreign: Array<WorktreeStatus> = []
  const errors: Array<ReconcileReport["errors"][number]> = []

  const mine = (await listWorktrees(options.root)).filter((w) => {
    if ((w.owner ?? "") === (options.owner ?? "")) return !options.active?.has(w.sessionId)
    foreign.push(w)
    return false
  })

  // 1. Stop every recorded process still running (all at once: each may take the grace period).
  await Promise.all(
    mine.map(async (w) => {
      try {
        for (const p of w.processes) {
          const done = await stopRecorded(p, graceMs)
          if (done !== undefined) stopped.push({ sessionId: w.sessionId, pid: p.pid, startTime: p.startTime, ...done })
        }
        if (w.processes.length > 0) await recordProcesses(w.path, [])
      } catch (e) {
        errors.push({ sessionId: w.sessionId, path: w.path, message: `stopping its processes: ${message(e)}` })
      }
    })
  )

  // 2. Worktrees of sessions that are gone are removed; the others stay, without an agent.
  for (const w of mine) {
    let exists: boolean
    try {
      exists = await options.sessionExists(w.sessionId)
    } catch (e) {
      errors.push({ sessionId: w.sessionId, path: w.path, message: `cannot tell whether the session exists: ${message(e)}` })
      continue
    }
    if (exists) {
      withoutAgent.push({ ...w, processes: [] })
      continue
    }
    try {
      const r = await removeWorktree({ path: w.path })
      if (r.removed) {
        removed.push({
          sessionId: w.sessionId,
          path: r.path,
          ...(r.branch !== undefined ? { branch: r.branch } : {}),
          branchKept: r.branchKept,
          ...(r.commits !== undefined ? { commits: r.commits } : {})
        })
      } else {
        kept.push({ sessionId: w.sessionId, path: r.path, reason: r.kept, detail: r.detail })
      }
    } catch (e) {
      errors.push({ sessionId: w.sessionId, path: w.path, message: `removing its worktree: ${message(e)}` })
    }
  }
  return { stopped, removed, kept, withoutAgent, foreign, errors }
}
