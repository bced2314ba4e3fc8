/**
 * The CLI as a real child process, for tests that need a separate server
 * process (kill -9, RSS, signals).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
export const binPath = join(root, "dist", "bin.js")

/** Builds dist/ once per test file, so the child runs the current sources. */
export const ensureBuilt = () => {
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" })
  if (!existsSync(binPath)) throw new Error("build produced no dist/bin.js")
}

export interface ServerProcess {
  readonly url: string
  readonly port: number
  readonly child: ChildProcess
  readonly output: () => string
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>
  readonly rssBytes: () => number
}

export const spawnServer = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<ServerProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, "--port", "0", ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    const exited = new Promise<number | string>((r) => child.on("exit", (code, signal) => r(code ?? signal ?? -1)))
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000)
    const onData = (d: Buffer) => {
      out += d.toString()
      const m = /listening on http:\/\/([^:\s]+):(\d+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        const port = Number(m[2])
        resolve({
          url: `http://127.0.0.1:${port}`,
          port,
          child,
          output: () => out,
          exited,
          rssBytes: () => {
            const status = readFileSync(`/proc/${child.pid}/status`, "utf8")
            return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024
          }
        })
      }
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()))
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code}) before listening: ${out}`))
    })
  })
