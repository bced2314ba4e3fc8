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

/** The process group `pid` is in (field 5 of /proc/<pid>/stat), or undefined when it is gone. */
export const processGroup = async (pid: number): Promise<number | undefined> => (await readStat(pid))?.pgrp

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

/** Signals a process (`target` > 0) or a group (`target` < 0); one that is already gone is fine. */
const signal = (target: number, sig: NodeJS.Signals | 0): boolean => {
  try {
    process.kill(target, sig)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false
    if ((e as NodeJS.ErrnoException).code === "EPERM") return sig === 0
    throw e
  }
}

/** Whether some process of group `pgid` exists (zombies included: they still hold the group). */
export const groupExists = (pgid: number): boolean => signal(-pgid, 0)

/** Whether a group has live members; zombies awaiting a reap do not count. */
const groupAlive = async (pgid: number): Promise<boolean> =>
  groupExists(pgid) && (process.platform !== "linux" || (await groupMembers(pgid)).length > 0)

/** Whether a process is there and not a zombie. */
const processAlive = async (pid: number): Promise<boolean> =>
  signal(pid, 0) && (process.platform !== "linux" || ((await readStat(pid))?.state ?? "Z") !== "Z")

export type KillOutcome =
  /** Nothing was there to signal. */
  | "gone"
  /** Everything exited within the grace period after SIGTERM. */
  | "terminated"
  /** Something was left after the grace period and got SIGKILL. */
  | "killed"

/** SIGTERM, up to `graceMs` for everything to exit, then SIGKILL to what is left. */
const stop = async (target: number, alive: () => Promise<boolean>, graceMs: number): Promise<KillOutcome> => {
  if (!signal(target, "SIGTERM")) return "gone"
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline) {
    if (!(await alive())) return "terminated"
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())))
  }
  if (!(await alive())) return "terminated"
  signal(target, "SIGKILL")
  const killDeadline = Date.now() + 2000
  while ((await alive()) && Date.now() < killDeadline) await sleep(10)
  return "killed"
}

const checkTarget = (what: string, n: number) => {
  if (!Number.isSafeInteger(n) || n <= 1) throw new Error(`${what}: ${n} is not a process to stop`)
}

/**
 * Stops the process group `pgid` (an agent, which leads its group, and everything it started):
 * SIGTERM to the group, then, once `graceMs` passed with some process of it left, SIGKILL to
 * the group. Resolves when the group is gone (after SIGKILL, at most 2 s later).
 */
export const killGroup = async (pgid: number, graceMs: number): Promise<KillOutcome> => {
  checkTarget("killGroup", pgid)
  return await stop(-pgid, () => groupAlive(pgid), graceMs)
}

/** The same for one process that does not lead a group of its own. */
export const killProcess = async (pid: number, graceMs: number): Promise<KillOutcome> => {
  checkTarget("killProcess", pid)
  return await stop(pid, () => processAlive(pid), graceMs)
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
