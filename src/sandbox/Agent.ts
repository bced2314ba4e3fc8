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
   * SIGTERM to the whole process group, SIGKILL to the group after `graceMs`
   * (or at once if the leader already exited, for what it left behind).
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
            let timer: ReturnType<typeof setTimeout> | undefined
            const exit = await Promise.race([
              exited,
              new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), graceMs)))
            ])
            clearTimeout(timer)
            // Whatever is left of the group (the leader's children, or a leader ignoring SIGTERM) goes now.
            killGroup(pid, "SIGKILL")
            return exit ?? (await exited)
          })()
      })
    })
  })
