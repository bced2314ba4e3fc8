/**
 * The `rein-server` CLI as a real child process: `node dist/bin.js`, built
 * fresh from src in beforeAll.
 */
import { type ChildProcess, execSync, spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { createServer as createNetServer } from "node:net"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { eventually, request, type SseClient, sse, tempDir } from "./helpers.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const bin = join(root, "dist", "bin.js")
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }

beforeAll(() => {
  execSync("npx tsc -p tsconfig.build.json", { cwd: root, stdio: "pipe", timeout: 120_000 })
  expect(existsSync(bin)).toBe(true)
}, 180_000)

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "")

interface Cli {
  readonly child: ChildProcess
  readonly output: () => string
  readonly stdout: () => string
  readonly stderr: () => string
  /** Resolves when the process exited, with its code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves with the base URL once the "listening on" line was printed. */
  readonly listening: (timeoutMs?: number) => Promise<string>
}

const children: Array<ChildProcess> = []
const clients: Array<SseClient> = []
const cleanups: Array<() => void> = []

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r))
      child.kill("SIGKILL")
      await gone
    }
  }
  for (const c of cleanups.splice(0)) c()
})

/** The environment without any REIN_* setting (or DATABASE_URL) of the machine running the tests. */
const cleanEnv = (extra: Record<string, string> = {}) => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("REIN_") && k !== "DATABASE_URL" && v !== undefined) env[k] = v
  }
  return { ...env, NO_COLOR: "1", ...extra }
}

const run = (args: ReadonlyArray<string>, options: { cwd?: string; env?: Record<string, string> } = {}): Cli => {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: options.cwd ?? root,
    env: cleanEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  let stdout = ""
  let stderr = ""
  const waiters = new Set<() => void>()
  child.stdout!.on("data", (d) => {
    stdout += d
    waiters.forEach((w) => w())
  })
  child.stderr!.on("data", (d) => {
    stderr += d
    waiters.forEach((w) => w())
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      waiters.forEach((w) => w())
      resolve({ code, signal })
    })
  )
  const listening = (timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = /listening on (http:\/\/[^\s]+:(\d+))/.exec(stripAnsi(stdout))
        if (m !== null) {
          done()
          resolve(m[1]!)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done()
          reject(new Error(`exited before listening; stdout: ${stdout} stderr: ${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`not listening after ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  return {
    child,
    output: () => stripAnsi(stdout + stderr),
    stdout: () => stripAnsi(stdout),
    stderr: () => stripAnsi(stderr),
    exited,
    listening
  }
}

/** Resolves with `p`, or rejects after `ms`. */
const within = <A>(p: Promise<A>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))])

/** A port that was free a moment ago. */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createNetServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

const tmp = () => {
  const t = tempDir()
  cleanups.push(t.cleanup)
  return t.dir
}

describe("rein-server CLI", () => {
  it("--help prints usage with every flag and exits 0", async () => {
    const cli = run(["--help"])
    const { code } = await within(cli.exited, 20_000, "--help to exit")
    expect(code).toBe(0)
    const out = cli.output()
    expect(out).toMatch(/rein-server/)
    for (const flag of ["--port", "--host", "--db", "--pg", "--bootstrap-timeout", "--lease-ttl"]) expect(out).toContain(flag)
    expect(out).toContain("4800")
    expect(out).toContain("rein.db")
    // It does not start a server.
    expect(out).not.toMatch(/listening on/)
  })

  it("--version prints the package version and exits 0", async () => {
    const cli = run(["--version"])
    const { code } = await within(cli.exited, 20_000, "--version to exit")
    expect(code).toBe(0)
    expect(version).toBe("0.1.0")
    expect(cli.stdout().trim()).toBe("0.1.0")
  })

  it("--port 0 --db <file> prints its URL, serves the API, and keeps sessions across a restart", async () => {
    const db = join(tmp(), "sessions.db")
    const cli = run(["--port", "0", "--db", db])
    const url = await cli.listening()
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const port = Number(url.split(":").pop())
    expect(port).toBeGreaterThan(0)
    expect(cli.stdout()).toContain(`listening on http://127.0.0.1:${port}`)

    const list = await request(url, "GET", "/sessions")
    expect(list.status).toBe(200)
    expect(list.body).toEqual([])
    const created = await request(url, "POST", "/sessions/cli1", { project: "p" })
    expect(created.status).toBe(201)
    expect(existsSync(db)).toBe(true)

    cli.child.kill("SIGTERM")
    expect((await within(cli.exited, 10_000, "exit after SIGTERM")).code).toBe(0)

    const again = run(["--port", "0", "--db", db])
    const url2 = await again.listening()
    const got = await request(url2, "GET", "/sessions/cli1")
    expect(got.status).toBe(200)
    expect(got.body).toEqual(created.body)
  })

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} exits 0 promptly, even with SSE streams open`, async () => {
      const cli = run(["--port", "0", "--db", ":memory:"])
      const url = await cli.listening()
      expect((await request(url, "POST", "/sessions/s1")).status).toBe(201)
      const watch = await sse(`${url}/sessions/stream`)
      clients.push(watch)
      await watch.waitFor((e) => e.event === "snapshot_complete")
      const sandbox = await sse(`${url}/sessions/s1/commands`)
      clients.push(sandbox)
      expect(sandbox.status).toBe(200)

      cli.child.kill(signal)
      const { code, signal: killedBy } = await within(cli.exited, 10_000, `exit after ${signal}`)
      expect(killedBy).toBeNull()
      expect(code).toBe(0)
      await within(Promise.all([watch.ended, sandbox.ended]), 10_000, "streams to end")
    })
  }

  it("honours REIN_PORT when --port is absent", async () => {
    const port = await freePort()
    const cli = run(["--db", ":memory:"], { env: { REIN_PORT: String(port) } })
    const url = await cli.listening()
    expect(url).toBe(`http://127.0.0.1:${port}`)
    expect((await request(url, "GET", "/sessions")).status).toBe(200)
  })

  it("--port wins over REIN_PORT", async () => {
    const taken = await freePort()
    const cli = run(["--port", "0", "--db", ":memory:"], { env: { REIN_PORT: String(taken) } })
    const url = await cli.listening()
    expect(url).not.toBe(`http://127.0.0.1:${taken}`)
    expect((await request(url, "GET", "/sessions")).status).toBe(200)
  })

  it("--bootstrap-timeout and --host are applied", async () => {
    const cli = run(["--port", "0", "--db", ":memory:", "--host", "127.0.0.1", "--bootstrap-timeout", "300"])
    const url = await cli.listening()
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:/)
    expect((await request(url, "POST", "/sessions/short")).status).toBe(201)
    await eventually(async () => (await request(url, "GET", "/sessions/short")).status === 404, 10_000, "expiry")
  })

  it("an invalid flag value exits non-zero with a message", async () => {
    const cli = run(["--port", "abc", "--db", ":memory:"])
    const { code } = await within(cli.exited, 20_000, "exit on --port abc")
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    expect(cli.output()).toMatch(/abc/)
    expect(cli.output()).not.toMatch(/listening on/)
  })

  it("an out-of-range port exits non-zero naming the port", async () => {
    const cli = run(["--port", "70000", "--db", ":memory:"])
    const { code } = await within(cli.exited, 20_000, "exit on --port 70000")
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    expect(cli.output()).toMatch(/port/i)
    expect(cli.output()).not.toMatch(/listening on/)
  })

  it("a lease shorter than 100 ms exits non-zero naming --lease-ttl", async () => {
    const cli = run(["--port", "0", "--db", ":memory:", "--lease-ttl", "5"])
    const { code } = await within(cli.exited, 20_000, "exit on --lease-ttl 5")
    expect(code).not.toBe(0)
    expect(code).not.toBeNull()
    expect(cli.output()).toMatch(/lease-ttl/)
    expect(cli.output()).not.toMatch(/listening on/)
  })

  it("a port in use: says so in words (address already in use), exit 1", async () => {
    const occupied = createNetServer()
    await new Promise<void>((resolve) => occupied.listen(0, "127.0.0.1", resolve))
    cleanups.push(() => void occupied.close())
    const port = (occupied.address() as { port: number }).port
    const cli = run(["--port", String(port), "--db", ":memory:"])
    const { code } = await within(cli.exited, 20_000, "exit on a port in use")
    expect(code).toBe(1)
    expect(cli.stderr()).toMatch(new RegExp(`^Could not start the server on 127\\.0\\.0\\.1:${port}: address already in use\n`))
    expect(cli.output()).not.toMatch(/An error has occurred|ServeError|listening on/)
  })

  it("the default database is ./rein.db in the working directory", async () => {
    const dir = tmp()
    const cli = run(["--port", "0"], { cwd: dir })
    const url = await cli.listening()
    expect(cli.stdout()).toMatch(/rein\.db/)
    expect((await request(url, "POST", "/sessions/d1")).status).toBe(201)
    expect(existsSync(join(dir, "rein.db"))).toBe(true)
    cli.child.kill("SIGTERM")
    expect((await within(cli.exited, 10_000, "exit after SIGTERM")).code).toBe(0)
  })
})
