/**
 * The ACP client's terminals (`terminal/create|output|wait_for_exit|kill|release`):
 * a command run in the working directory (or a directory inside it), in its
 * own process group, its output kept up to the agent's byte limit (the
 * oldest bytes go first, at a character boundary). Closing the set kills
 * every command still running.
 *
 * A command has exited when its process exits, not when its output closes: a
 * command that leaves a background process behind (`server &`) hands it its
 * output pipes, and waiting for them would hang the agent's turn. What the
 * command wrote before exiting is still read: the exit waits for the pipes to
 * close for at most `drainMs`. Kill and release signal the whole process
 * group, so what it left behind goes too.
 */
import { RequestError } from "@agentclientprotocol/sdk"
import { type ChildProcess, spawn } from "node:child_process"
import type { Fs } from "./Fs.js"
import { killGroup } from "./Agent.js"

export interface ExitStatus {
  readonly exitCode: number | null
  readonly signal: string | null
}

interface Terminal {
  readonly child: ChildProcess
  output: Buffer
  truncated: boolean
  readonly limit: number
  exit: ExitStatus | undefined
  readonly exited: Promise<ExitStatus>
}

const defaultLimit = 1024 * 1024

/** How long an exited command's output may take to close (a background process may hold it open for good). */
const drainMs = 200

/** Drops whole leading UTF-8 characters until the buffer fits. */
const keepTail = (buf: Buffer, limit: number): Buffer => {
  if (buf.length <= limit) return buf
  let start = buf.length - limit
  while (start < buf.length && (buf[start]! & 0xc0) === 0x80) start++
  return buf.subarray(start)
}

export class Terminals {
  private readonly fs: Fs
  private readonly terminals = new Map<string, Terminal>()
  /** Released terminals' last output: tool calls that show one keep showing it (the newest few are kept). */
  private readonly released = new Map<string, string>()
  private next = 1

  private readonly env: NodeJS.ProcessEnv

  /** `env`: what every command starts with (the agent's environment). */
  constructor(fs: Fs, env: NodeJS.ProcessEnv) {
    this.fs = fs
    this.env = env
  }

  async create(params: {
    command: string
    args?: ReadonlyArray<string>
    env?: ReadonlyArray<{ name: string; value: string }>
    cwd?: string | null
    outputByteLimit?: number | null
  }): Promise<{ terminalId: string }> {
    if (typeof params.command !== "string" || params.command === "") {
      throw RequestError.invalidParams({ command: params.command }, "command must be a non-empty string")
    }
    const cwd = params.cwd === undefined || params.cwd === null ? this.fs.cwd : await this.fs.check(params.cwd)
    const env = { ...this.env }
    for (const v of params.env ?? []) env[v.name] = v.value
    const limit = params.outputByteLimit ?? defaultLimit
    const child = spawn(params.command, [...(params.args ?? [])], { cwd, env, stdio: ["ignore", "pipe", "pipe"], detached: true })
    const started = await new Promise<Error | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined))
      child.once("error", (e) => resolve(e))
    })
    if (started !== undefined) throw RequestError.internalError({ command: params.command }, `cannot run ${params.command}: ${started.message}`)
    const id = `term-${this.next++}`
    const terminal: Terminal = {
      child,
      output: Buffer.alloc(0),
      truncated: false,
      limit,
      exit: undefined,
      exited: new Promise((resolve) =>
        child.once("exit", (code, signal) => {
          const closed = new Promise<void>((r) => child.once("close", () => r()))
          let timer: ReturnType<typeof setTimeout> | undefined
          void Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]).then(() => {
            clearTimeout(timer)
            terminal.exit = { exitCode: code, signal }
            resolve(terminal.exit)
          })
        })
      )
    }
    const onData = (d: Buffer) => {
      const all = Buffer.concat([terminal.output, d])
      terminal.output = keepTail(all, terminal.limit)
      if (terminal.output.length < all.length) terminal.truncated = true
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    this.terminals.set(id, terminal)
    return { terminalId: id }
  }

  private get(id: string): Terminal {
    const t = this.terminals.get(id)
    if (t === undefined) throw RequestError.invalidParams({ terminalId: id }, `unknown terminal ${id}`)
    return t
  }

  /** The output so far, for a tool call that shows this terminal (also after release). */
  outputOf(id: string): string | undefined {
    return this.terminals.get(id)?.output.toString("utf8") ?? this.released.get(id)
  }

  output(id: string): { output: string; truncated: boolean; exitStatus?: ExitStatus } {
    const t = this.get(id)
    return { output: t.output.toString("utf8"), truncated: t.truncated, ...(t.exit !== undefined ? { exitStatus: t.exit } : {}) }
  }

  waitForExit(id: string): Promise<ExitStatus> {
    return this.get(id).exited
  }

  /** The command and whatever it left running in its group. */
  kill(id: string): void {
    killGroup(this.get(id).child.pid!, "SIGKILL")
  }

  release(id: string): void {
    const t = this.get(id)
    this.kill(id)
    this.terminals.delete(id)
    this.released.set(id, t.output.toString("utf8"))
    if (this.released.size > 64) this.released.delete(this.released.keys().next().value!)
  }

  /** Kills every command still running. */
  closeAll(): void {
    for (const t of this.terminals.values()) killGroup(t.child.pid!, "SIGKILL")
    this.terminals.clear()
  }
}
