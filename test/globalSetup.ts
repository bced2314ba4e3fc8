/**
 * Vitest global setup: a throwaway PostgreSQL for the tests that need one, so
 * that `npm test` runs what CI runs.
 *
 * - `DATABASE_URL` given (non-empty): used as is, nothing is started.
 * - Otherwise, when PostgreSQL's server binaries are on the machine
 *   (`/usr/lib/postgresql/<version>/bin`, `pg_config --bindir`, or `initdb`
 *   on PATH): a fresh cluster in a temp dir, on a free loopback port, trust
 *   auth, with a `rein_test` database; run by an unprivileged user (`postgres`,
 *   created if missing) when the tests run as root, since PostgreSQL refuses
 *   to run as root. `DATABASE_URL` is set before the test workers fork, so
 *   they and the server processes they spawn inherit it. Stopped and removed
 *   on teardown, and on Ctrl-C / SIGTERM / exit.
 * - Otherwise the PostgreSQL tests skip themselves, and `SkipReport` (the
 *   reporter next to this file) says so loudly at the end.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, rmSync, chownSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** Set in the main process for the reporter: `given`, `started` or `missing`. */
export const pgStatusVariable = "REIN_TEST_POSTGRES"

const versionOf = (dir: string) => dir.split("/").at(-2)!.split(".").map(Number)

/** The directory holding `initdb`, `pg_ctl` and `postgres`, or undefined. */
const findBinDir = (): string | undefined => {
  const complete = (dir: string) => ["initdb", "pg_ctl", "postgres"].every((b) => existsSync(join(dir, b)))
  const base = "/usr/lib/postgresql"
  if (existsSync(base)) {
    const dirs = readdirSync(base)
      .map((v) => join(base, v, "bin"))
      .filter(complete)
      .sort((a, b) => {
        const [x, y] = [versionOf(a), versionOf(b)]
        for (let i = 0; i < Math.max(x.length, y.length); i++) {
          if ((x[i] ?? 0) !== (y[i] ?? 0)) return (y[i] ?? 0) - (x[i] ?? 0)
        }
        return 0
      })
    if (dirs[0] !== undefined) return dirs[0]
  }
  const pgConfig = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" })
  if (pgConfig.status === 0 && complete(pgConfig.stdout.trim())) return pgConfig.stdout.trim()
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir !== "" && complete(dir)) return dir
  }
  return undefined
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const address = s.address()
      s.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

interface Cluster {
  readonly url: string
  readonly stop: () => void
}

const startCluster = async (bin: string): Promise<Cluster> => {
  const dir = mkdtempSync(join(tmpdir(), "rein-test-pg-"))
  const root = process.getuid?.() === 0
  const user = root ? "postgres" : (process.env.USER ?? execFileSync("id", ["-un"], { encoding: "utf8" }).trim())
  if (root) {
    if (spawnSync("id", ["-u", user]).status !== 0) {
      execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
    }
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim())
    chownSync(dir, uid, gid)
  }
  /** Runs a PostgreSQL program as the cluster's user, in the cluster's dir (runuser must be able to enter cwd). */
  const as = (program: string, args: ReadonlyArray<string>) => {
    const [cmd, argv] = root ? ["runuser", ["-u", user, "--", join(bin, program), ...args]] : [join(bin, program), args]
    const r = spawnSync(cmd, argv, { cwd: dir, encoding: "utf8", timeout: 120_000 })
    if (r.status !== 0) {
      throw new Error(`${program} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}${r.error ?? ""}`)
    }
  }
  const data = join(dir, "data")
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try {
      as("pg_ctl", ["-D", data, "-m", "immediate", "-s", "stop"])
    } catch {
      // not running (failed start, or already stopped by the same Ctrl-C): removing is what is left
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    as("initdb", ["-D", data, "-U", user, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
    // A port is free when asked and may be taken a moment later: try a few.
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      try {
        as("pg_ctl", [
          "-D", data, "-l", join(dir, "postgres.log"), "-w", "-t", "60", "-s",
          "-o", `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c max_connections=200`,
          "start"
        ])
        break
      } catch (e) {
        if (attempt === 3) throw e
      }
    }
    as("createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", user, "rein_test"])
    return { url: `postgres://${user}@127.0.0.1:${port}/rein_test`, stop }
  } catch (e) {
    stop()
    throw e
  }
}

export default async function setup() {
  // The test bundles (test/sandboxBuild.ts) are per process: last run's go before this one's.
  rmSync(join(dirname(fileURLToPath(import.meta.url)), "..", "dist-test"), { recursive: true, force: true })
  const given = process.env.DATABASE_URL
  if (given !== undefined && given !== "") {
    process.env[pgStatusVariable] = "given"
    return
  }
  const bin = findBinDir()
  if (bin === undefined) {
    process.env[pgStatusVariable] = "missing"
    delete process.env.DATABASE_URL
    return
  }
  const cluster = await startCluster(bin)
  process.env.DATABASE_URL = cluster.url
  process.env[pgStatusVariable] = "started"

  // Ctrl-C, a kill, or an exit without teardown: stop it anyway. First in line
  // (vitest's own handlers call process.exit, after which no other listener
  // runs); a signal is passed on when nobody else handles it, so it still ends.
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const
  const onSignal = (signal: NodeJS.Signals) => {
    cluster.stop()
    for (const s of signals) process.off(s, onSignal)
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  }
  for (const s of signals) process.prependListener(s, onSignal)
  process.prependListener("exit", cluster.stop)

  return () => {
    for (const s of signals) process.off(s, onSignal)
    process.off("exit", cluster.stop)
    cluster.stop()
    delete process.env.DATABASE_URL
  }
}
