/**
 * Processes a runner started, found again after the runner restarted. A pid alone is not an
 * identity (pids are recycled), so a process is named by its pid AND its start time, read from
 * `/proc/<pid>/stat` (Linux). Nothing here ever finds a process by its name.
 *
 * An agent runs as the leader of its own process group (spawned `detached`: `setsid`, so its
 * pgid and sid are its pid); stopping it signals the whole group, so what it started stops too.
 */
import { readdir, readFile } from "node:fs/promises"

/** A process as recorded in a worktree's marker: pid and start time (clock ticks since boot). */
export interface ProcessId {
  readonly pid: number
  readonly startTime: number
}

interface Stat {
  readonly state: string
  readonly pgrp: number
  readonly startTime: number
}

/**
 * Fields of /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself
 * contain spaces and parentheses, so the fields are counted from the last `)`.
 */
const readStat = async (pid: number): Promise<Stat | undefined> => {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined
  let text: string
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined // gone (ENOENT / ESRCH), or no /proc on this system
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  const startTime = Number(fields[22 - 3])
  const pgrp = Number(fields[5 - 3])
  if (!Number.isSafeInteger(startTime) || !Number.isSafeInteger(pgrp)) return undefined
  return { state: fields[0] ?? "?", pgrp, startTime }
}

/**
 * The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or
 * undefined when no such process exists (or this is not Linux). A zombie still has one.
 */
export const processStartTime = async (pid: number): Promise<number | undefined> => (await readStat(pid))?.startTime

/**
 * Whether `pid` is still the very process recorded with `startTime`: same pid, same start time,
 * and not a zombie (a zombie has exited; only its parent's wait is missing).
 */
export const isSameProcess = async (pid: number, startTime: number): Promise<boolean> => {
  const stat = await readStat(pid)
  return stat !== undefined && stat.startTime === startTime && stat.state !== "Z"
}

/**
 * The live (not zombie) processes of process group `pgid`, with their start times, from a scan
 * of /proc. Empty when the group is gone.
 */
export const groupMembers = async (pgid: number): Promise<Array<ProcessId>> => {
  let names: Array<string>
  try {
    names = await readdir("/proc")
  } catch {
    return []
  }
  const members: Array<ProcessId> = []
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    const stat = await readStat(pid)
    if (stat !== undefined && stat.pgrp === pgid && stat.state !== "Z") members.push({ pid, startTime: stat.startTime })
  }
  return members
}

/** Signals the group `pgid`; a group that is already gone is fine. */
const signalGroup = (pgid: number, signal: NodeJS.Signals | 0): boolean => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false
    if ((e as NodeJS.ErrnoException).code === "EPERM") return signal === 0
    throw e
  }
}

/** Whether some process of group `pgid` exists (zombies included: they still hold the group). */
export const groupExists = (pgid: number): boolean => signalGroup(pgid, 0)

/** Whether a group has live members; zombies awaiting a reap do not count. */
const groupAlive = async (pgid: number): Promise<boolean> =>
  groupExists(pgid) && (process.platform !== "linux" || (await groupMembers(pgid)).length > 0)

export type KillOutcome =
  /** Nothing of the group was there to signal. */
  | "gone"
  /** Every process of the group exited within the grace period after SIGTERM. */
  | "terminated"
  /** Something was left after the grace period and got SIGKILL. */
  | "killed"

/**
 * Stops the process group `pgid` (an agent and everything it started): SIGTERM to the group,
 * then, once `graceMs` passed with some process of it left, SIGKILL to the group. Resolves when
 * the group is gone (or, after SIGKILL, after at most 2 s more).
 */
export const killGroup = async (pgid: number, graceMs: number): Promise<KillOutcome> => {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) throw new Error(`killGroup: ${pgid} is not a process group to stop`)
  if (!signalGroup(pgid, "SIGTERM")) return "gone"
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline) {
    if (!(await groupAlive(pgid))) return "terminated"
    await sleep(Math.min(25, Math.max(1, deadline - Date.now())))
  }
  if (!(await groupAlive(pgid))) return "terminated"
  signalGroup(pgid, "SIGKILL")
  const killDeadline = Date.now() + 2000
  while ((await groupAlive(pgid)) && Date.now() < killDeadline) await sleep(10)
  return "killed"
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
