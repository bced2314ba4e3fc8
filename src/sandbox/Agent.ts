/**
 * The agent process: spawned in its own process group with stdio piped, so
 * that stopping it stops everything it started. Its stderr goes on to ours
 * (it is the user's agent: its messages are theirs to see) and the last few
 * KiB are kept for the `error` event if it dies.
 */
import { type ChildProcess, spawn } from "node:child_process"

export interface AgentExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface AgentProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Resolves once the process exited (never rejects). */
  readonly exited: Promise<AgentExit>
  /** The last bytes of its stderr. */
  readonly stderrTail: () => string
  /**
   * SIGTERM to the whole process group, SIGKILL to what is left of it once
   * `graceMs` passed (sooner when every process of the group has exited).
   */
  readonly stop: (graceMs: number) => Promise<AgentExit>
}

const tailBytes = 4096

export class AgentSpawnError extends Error {
  override readonly name = "AgentSpawnError"
}

/** Signals the group; a group that is already gone is fine. */
export const killGroup = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(-pid, signal)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e
  }
}

/** Whether any process of the group is left (signal 0 only checks). */
const groupAlive = (pid: number): boolean => {
  try {
    process.kill(-pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

export const spawnAgent = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: NodeJS.ProcessEnv; readonly echoStderr?: boolean }
): Promise<AgentProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      detached: true
    })
    let tail = ""
    child.stderr!.on("data", (d: Buffer) => {
      if (options.echoStderr !== false) process.stderr.write(d)
      tail = (tail + d.toString("utf8")).slice(-tailBytes)
    })
    const exited = new Promise<AgentExit>((r) => child.once("exit", (code, signal) => r({ code, signal })))
    child.once("error", (e) => reject(new AgentSpawnError(`cannot start the agent "${command}": ${e.message}`)))
    child.once("spawn", () => {
      const pid = child.pid!
      let stopping: Promise<AgentExit> | undefined
      resolve({
        child,
        pid,
        exited,
        stderrTail: () => tail,
        stop: (graceMs) =>
          stopping ??= (async () => {
            killGroup(pid, "SIGTERM")
            // The whole group gets the grace, not only the leader: what the agent started (a
            // language server, a build) may still be cleaning up after the agent itself exited.
            const deadline = Date.now() + graceMs
            while (groupAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
            // Whatever is left of the group (the leader's children, or a leader ignoring SIGTERM) goes now.
            killGroup(pid, "SIGKILL")
            return await exited
          })()
      })
    })
  })
