/**
 * For the runner tests: real git repositories in temporary directories and real child processes
 * in their own process groups, all removed / killed by `cleanup()`.
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const dirs: Array<string> = []
const groups: Array<number> = []

/** A fresh temporary directory, removed by `cleanup()`. */
export const tempDir = (prefix = "rein-runner-"): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

/** git without the caller's GIT_* variables (a hook's GIT_DIR must not leak in). */
const gitEnv = () => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("GIT_")) env[k] = v
  return env
}

export const git = (cwd: string, ...args: Array<string>): string =>
  execFileSync("git", args, { cwd, env: gitEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim()

/** A repository named `name` with two commits (README.md, src/a.txt) on `main`. */
export const makeRepo = (name = "app"): string => {
  const repo = join(tempDir("rein-repo-"), name)
  execFileSync("mkdir", ["-p", join(repo, "src")])
  git(repo, "init", "-q", "-b", "main")
  git(repo, "config", "user.name", "Rein Test")
  git(repo, "config", "user.email", "test@rein.invalid")
  git(repo, "config", "commit.gpgsign", "false")
  writeFileSync(join(repo, "README.md"), "# app\n")
  git(repo, "add", ".")
  git(repo, "commit", "-q", "-m", "first")
  writeFileSync(join(repo, "src", "a.txt"), "one\ntwo\nthree\n")
  writeFileSync(join(repo, ".gitignore"), "node_modules/\n")
  git(repo, "add", ".")
  git(repo, "commit", "-q", "-m", "second")
  return repo
}

/** Commits everything in `cwd` (a worktree) as the test user. */
export const commitAll = (cwd: string, message: string) => {
  git(cwd, "add", "-A")
  git(cwd, "-c", "user.name=Rein Test", "-c", "user.email=test@rein.invalid", "commit", "-q", "-m", message)
}

export interface Spawned {
  readonly pid: number
  /** The pid of the process it started in its group (when asked for one). */
  readonly childPid?: number
}

/**
 * A node process leading its own process group, idle until killed; with `grandchild` it starts
 * another idle node process in its group; with `ignoreTerm` both ignore SIGTERM. Resolves once
 * everything runs.
 */
export const spawnIdle = (options: { grandchild?: boolean; ignoreTerm?: boolean; cwd?: string } = {}): Promise<Spawned> => {
  const idle = `${options.ignoreTerm ? "process.on('SIGTERM',()=>{});" : ""}setInterval(()=>{},1000);`
  const script = options.grandchild
    ? `const c=require('child_process').spawn(process.execPath,['-e',${JSON.stringify(idle)}],{stdio:'ignore'});` +
      `c.on('spawn',()=>process.stdout.write(String(c.pid)+'\\n'));${idle}`
    : `process.stdout.write('ready\\n');${idle}`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { detached: true, stdio: ["ignore", "pipe", "inherit"], cwd: options.cwd })
    child.once("error", reject)
    child.once("spawn", () => groups.push(child.pid!))
    let out = ""
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      if (!out.endsWith("\n")) return
      child.stdout!.removeAllListeners("data")
      child.stdout!.resume()
      resolve({ pid: child.pid!, ...(options.grandchild ? { childPid: Number(out.trim()) } : {}) })
    })
    child.unref()
  })
}

/** Whether a process with this pid exists and is not a zombie. */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = execFileSync("cat", [`/proc/${pid}/stat`], { encoding: "utf8" })
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] !== "Z"
  } catch {
    return false
  }
}

/** Kills every group spawned and removes every temporary directory. */
export const cleanup = () => {
  for (const pgid of groups.splice(0)) {
    try {
      process.kill(-pgid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}
