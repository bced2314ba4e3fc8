/**
 * The agent process: spawned in its own process group with stdio piped, so
 * that stopping it stops everything it started. Its stderr goes on to ours
 * (it is the user's agent: its messages are theirs to see) and the last few
 * KiB are kept for the `error` event if it dies: the agent's lines as they
 * were written, without what `npx` says about itself (see `stderrLines`).
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
  /** The last lines of its stderr, cleaned by `stderrLines`. */
  readonly stderrTail: () => string
  /**
   * SIGTERM to the whole process group, SIGKILL to what is left of it once
   * `graceMs` passed (sooner when every process of the group has exited).
   */
  readonly stop: (graceMs: number) => Promise<AgentExit>
}

const tailBytes = 4096

/**
 * npm's own lines when the agent runs through `npx` (`npm notice New major version of npm
 * available!`, `npm warn exec The following package was not found and will be installed`):
 * they are not the agent's, and they would fill the tail that should say why it died.
 * npm's `npm error` / `npm ERR!` lines stay: when npm itself fails, they are the cause.
 */
const npmNoise = /^npm (notice|warn|WARN)(\s|$)/

/**
 * The agent's stderr as people should read it: its line breaks kept, colour codes and
 * terminal redraws (a line rewritten after `\r`) resolved, npm's notices dropped.
 * `truncated`: the text starts mid-line (a tail), so its first, partial line is dropped.
 */
export const stderrLines = (text: string, truncated = false): string => {
  // eslint-disable-next-line no-control-regex
  const plain = text.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r\n/g, "\n")
  const lines = plain.split("\n")
  if (truncated) lines.shift()
  return lines
    .map((line) => line.slice(line.lastIndexOf("\r") + 1).trimEnd())
    .filter((line) => !npmNoise.test(line))
    .join("\n")
    .replace(/^\n+|\n+$/g, "")
}

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
    let truncated = false
    child.stderr!.setEncoding("utf8")
    child.stderr!.on("data", (d: string) => {
      if (options.echoStderr !== false) process.stderr.write(d)
      tail += d
      if (tail.length > tailBytes) {
        tail = tail.slice(-tailBytes)
        truncated = true
      }
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
        stderrTail: () => stderrLines(tail, truncated),
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
