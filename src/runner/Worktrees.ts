/**
 * A git worktree per session: `<root>/<repo name>/<session id>` on a new branch
 * `rein/<session id>` from a base (default: the repository's current HEAD).
 *
 * Each worktree has a marker, `<root>/<repo name>/.rein/<session id>.json`, outside the worktree
 * (so it never shows as a change in it, and no session's directory can collide with it: session
 * ids start with a letter or digit). It names the session, repository, branch, base, and the
 * processes started there (pid + start time). It is written BEFORE `git worktree add` (state
 * `creating`) and marked `ready` after, so every directory this module ever started has one,
 * and a start interrupted by a crash or `kill -9` is recognised and cleaned up by the next.
 *
 * Removing a worktree never loses work: one with uncommitted changes (untracked files included)
 * or commits on a detached HEAD is kept and reported; the branch is kept when it has commits
 * beyond the base. Git runs with argument arrays (no shell) and without inherited `GIT_*`
 * variables (a hook's `GIT_DIR` must not redirect it).
 */
import { execFile, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { copyFile, mkdir, readdir, readFile, realpath, rename, rm, rmdir, stat, statfs, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { basename, dirname, join, resolve } from "node:path"
import { SessionIdPattern } from "../Domain/Session.js"
import type { ProcessId } from "./Processes.js"

/** What the marker of a worktree records. */
export interface Worktree {
  readonly version: 1
  readonly sessionId: string
  /** The repository's top-level directory. */
  readonly repo: string
  /** The directory under the worktrees root that holds this repository's worktrees. */
  readonly repoName: string
  /** The worktree's directory. */
  readonly path: string
  readonly branch: string
  /** The base as asked for (`HEAD` when none was). */
  readonly baseRef: string
  /** The commit `baseRef` named when the worktree was made: diffs and "has commits" count from it. */
  readonly baseCommit: string
  readonly createdAt: string
  /** `creating` until `git worktree add` succeeded. */
  readonly state: "creating" | "ready"
  /** Who made it (a runner's id): the runner that reconciles touches only its own. */
  readonly owner?: string
  /** The processes started in it (the agent; a bridge), to stop after a restart. */
  readonly processes: ReadonlyArray<ProcessId>
  /** The agent's last ACP session, which a restarted agent that can `session/load` resumes. */
  readonly acpSessionId?: string
}

/** A worktree that cannot be made, or a git command that failed; the message says why. */
export class WorktreeError extends Error {
  override readonly name = "WorktreeError"
}

// ---------------------------------------------------------------------------------------------
// git

interface GitResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** The environment git runs with: ours without `GIT_*` (set by hooks), never prompting. */
const gitEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("GIT_")) env[k] = v
  return { ...env, GIT_TERMINAL_PROMPT: "0", LC_ALL: "C", ...extra }
}

const run = (cwd: string, args: ReadonlyArray<string>, env?: Record<string, string>): Promise<GitResult> =>
  new Promise((resolvePromise, reject) => {
    execFile("git", [...args], { cwd, env: gitEnv(env), maxBuffer: 64 * 1024 * 1024, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error && typeof error.code !== "number") return reject(new WorktreeError(`cannot run git ${args[0]}: ${error.message}`))
      resolvePromise({ code: error ? (error.code as number) : 0, stdout, stderr })
    })
  })

/** Runs git and fails with its stderr when it exits non-zero. */
const git = async (cwd: string, args: ReadonlyArray<string>, env?: Record<string, string>): Promise<string> => {
  const r = await run(cwd, args, env)
  if (r.code !== 0) throw new WorktreeError(`git ${args.join(" ")} (in ${cwd}) failed: ${r.stderr.trim() || `exit ${r.code}`}`)
  return r.stdout
}

interface Registered {
  readonly path: string
  readonly head?: string
  readonly branch?: string
  readonly locked?: string
  readonly prunable?: string
}

/** `git worktree list --porcelain -z` of `repo`. */
const registeredWorktrees = async (repo: string): Promise<Array<Registered>> => {
  const out = await git(repo, ["worktree", "list", "--porcelain", "-z"])
  const list: Array<Registered> = []
  let current: Record<string, string> | undefined
  for (const line of out.split("\0")) {
    if (line === "") {
      if (current?.worktree !== undefined) {
        list.push({
          path: current.worktree,
          ...(current.HEAD !== undefined ? { head: current.HEAD } : {}),
          ...(current.branch !== undefined ? { branch: current.branch.replace(/^refs\/heads\//, "") } : {}),
          ...(current.locked !== undefined ? { locked: current.locked } : {}),
          ...(current.prunable !== undefined ? { prunable: current.prunable } : {})
        })
      }
      current = undefined
      continue
    }
    const space = line.indexOf(" ")
    const key = space === -1 ? line : line.slice(0, space)
    ;(current ??= {})[key] = space === -1 ? "" : line.slice(space + 1)
  }
  return list
}

const refExists = async (repo: string, ref: string) => (await run(repo, ["rev-parse", "--verify", "--quiet", ref])).code === 0

// ---------------------------------------------------------------------------------------------
// files

const exists = async (path: string) => {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

/** Where the marker of the worktree at `path` is. */
export const markerPath = (path: string): string => join(dirname(path), ".rein", `${basename(path)}.json`)

/** The marker of the worktree at `path`, or undefined when there is none (or it is unreadable). */
export const readMarker = async (path: string): Promise<Worktree | undefined> => {
  try {
    const marker = JSON.parse(await readFile(markerPath(path), "utf8")) as Worktree
    return marker.version === 1 && typeof marker.sessionId === "string" ? marker : undefined
  } catch {
    return undefined
  }
}

/** Written whole or not at all (a temporary file renamed over it). */
const writeMarker = async (marker: Worktree): Promise<void> => {
  const file = markerPath(marker.path)
  await mkdir(dirname(file), { recursive: true })
  const tmp = `${file}.${randomUUID()}.tmp`
  await writeFile(tmp, `${JSON.stringify(marker, null, 2)}\n`)
  await rename(tmp, file)
}

/**
 * Changes to one repository's worktrees run one after the other (within this process): git's
 * `worktree add` reads the other worktrees' admin directories and fails on one being made
 * ("failed to read .git/worktrees/<id>/commondir"). Keyed by the repository's path.
 */
const locks = new Map<string, Promise<unknown>>()
const serially = <A>(key: string, f: () => Promise<A>): Promise<A> => {
  const previous = locks.get(key) ?? Promise.resolve()
  const next = previous.then(f, f)
  const settled = next.catch(() => {})
  locks.set(key, settled)
  void settled.then(() => {
    if (locks.get(key) === settled) locks.delete(key)
  })
  return next
}

/**
 * Records the processes started in the worktree (replacing what was recorded; `[]` clears), so a
 * runner restarted after a crash can stop them (`reconcile`).
 */
export const recordProcesses = async (path: string, processes: ReadonlyArray<ProcessId>): Promise<Worktree> =>
  updateMarker(path, (marker) => ({ ...marker, processes: processes.map(({ pid, startTime }) => ({ pid, startTime })) }))

/** Records the agent's ACP session, for the next start to resume. */
export const recordAcpSession = (path: string, acpSessionId: string): Promise<Worktree> =>
  updateMarker(path, (marker) => ({ ...marker, acpSessionId }))

const updateMarker = async (path: string, change: (marker: Worktree) => Worktree): Promise<Worktree> =>
  serially((await readMarker(resolve(path)))?.repo ?? resolve(path), async () => {
    const marker = await readMarker(resolve(path))
    if (marker === undefined) throw new WorktreeError(`no worktree marker for ${path}`)
    const next = change(marker)
    await writeMarker(next)
    return next
  })

// ---------------------------------------------------------------------------------------------
// create

/** The branch of a session: `rein/<id>`, with what git refuses in a ref name (`:`, `..`) replaced. */
export const branchName = (sessionId: string): string => {
  let name = sessionId.replace(/[^A-Za-z0-9._-]/g, "_").replace(/\.\.+/g, (dots) => "_".repeat(dots.length))
  if (name.endsWith(".lock") || name.endsWith(".")) name = `${name}_`
  return `rein/${name}`
}

export interface CreateWorktreeOptions {
  /** The repository (or any directory inside it). */
  readonly repo: string
  readonly sessionId: string
  /** Branch, tag or commit to start from; default the repository's current HEAD. */
  readonly baseRef?: string
  /** The worktrees directory, e.g. `~/.rein/worktrees`. */
  readonly root: string
  /** The runner making it, recorded in the marker. */
  readonly owner?: string
}

/**
 * Creates the session's worktree, or returns it when it already exists for this session
 * (`reused: true`). What an interrupted earlier attempt left (a partial directory, a half-made
 * registration, the branch still at the base) is cleaned up first. Throws `WorktreeError` when
 * `repo` is not a git repository with a working tree and a commit, `baseRef` names no commit, or
 * the place is taken by something that is not an interrupted attempt of this session.
 */
export const createWorktree = async (options: CreateWorktreeOptions): Promise<Worktree & { readonly reused: boolean }> => {
  const { sessionId } = options
  if (!SessionIdPattern.test(sessionId)) throw new WorktreeError(`session id "${sessionId}" must match ${SessionIdPattern.source}`)
  const baseRef = options.baseRef ?? "HEAD"
  if (baseRef === "" || baseRef.startsWith("-")) throw new WorktreeError(`base ref "${baseRef}" is not a ref`)

  const asked = resolve(options.repo)
  const info = await stat(asked).catch(() => undefined)
  if (info === undefined || !info.isDirectory()) throw new WorktreeError(`repository ${asked} is not a directory`)
  const top = await run(asked, ["rev-parse", "--show-toplevel"])
  if (top.code !== 0) throw new WorktreeError(`${asked} is not a git repository (with a working tree)`)
  const repo = top.stdout.trim()
  const baseCommit = (await run(repo, ["rev-parse", "--verify", "--quiet", `${baseRef}^{commit}`])).stdout.trim()
  if (baseCommit === "") {
    throw new WorktreeError(
      baseRef === "HEAD" ? `repository ${repo} has no commit yet to start from` : `base ref "${baseRef}" names no commit in ${repo}`
    )
  }

  const repoName = basename(repo)
  await mkdir(options.root, { recursive: true })
  const path = join(await realpath(options.root), repoName, sessionId)
  return serially(repo, async () => {
    const branch = branchName(sessionId)
    const previous = await readMarker(path)
    if (previous !== undefined && previous.repo !== repo) {
      throw new WorktreeError(`${path} is already the worktree of session ${sessionId} for another repository, ${previous.repo}`)
    }
    if (previous !== undefined && (previous.owner ?? "") !== (options.owner ?? "")) {
      throw new WorktreeError(`${path} belongs to another runner (${previous.owner ?? "none"})`)
    }
    const registered = (await registeredWorktrees(repo)).find((w) => w.path === path)

    if (previous?.state === "ready") {
      const present = await exists(path)
      // Already made for this session: the same worktree again.
      if (present && registered !== undefined) return { ...previous, reused: true }
      if (present) {
        throw new WorktreeError(`${path} was the worktree of session ${sessionId} but git no longer knows it; look at it and remove it`)
      }
      // Made for this session, then its directory was deleted: made again on the session's branch.
      if (registered !== undefined) await git(repo, ["worktree", "remove", "--force", "--force", path])
      const own = await refExists(repo, `refs/heads/${previous.branch}`)
      const args = own ? [path, previous.branch] : ["-b", previous.branch, path, previous.baseCommit]
      const added = await run(repo, ["worktree", "add", "--quiet", ...args])
      if (added.code !== 0) throw new WorktreeError(`cannot create the worktree ${path} again: ${added.stderr.trim()}`)
      const again: Worktree = { ...previous, processes: [] }
      await writeMarker(again)
      return { ...again, reused: false }
    }
    // Anything else at this place must be an interrupted attempt of ours (marker `creating`) to clear.
    if (previous === undefined && registered !== undefined) {
      throw new WorktreeError(`${path} is already a worktree of ${repo} that Rein did not make`)
    }
    if (previous === undefined && (await exists(path)) && (await readdir(path)).length > 0) {
      throw new WorktreeError(`${path} already exists and is not a worktree Rein made`)
    }
    if (registered !== undefined) await git(repo, ["worktree", "remove", "--force", "--force", path])
    await rm(path, { recursive: true, force: true })

    // The branch: new, or left by an interrupted attempt (no commits of its own), else refused.
    let reset = false
    if (await refExists(repo, `refs/heads/${branch}`)) {
      const checkedOut = (await registeredWorktrees(repo)).find((w) => w.branch === branch)
      if (checkedOut !== undefined) throw new WorktreeError(`branch ${branch} is checked out in ${checkedOut.path}`)
      const merged = await run(repo, ["merge-base", "--is-ancestor", `refs/heads/${branch}`, baseCommit])
      if (merged.code !== 0) {
        throw new WorktreeError(
          `branch ${branch} already exists in ${repo} with commits not in ${baseRef} (an earlier session's work?); rename or delete it`
        )
      }
      reset = true
    }

    const marker: Worktree = {
      version: 1,
      sessionId,
      repo,
      repoName,
      path,
      branch,
      baseRef,
      baseCommit,
      createdAt: new Date().toISOString(),
      state: "creating",
      ...(options.owner !== undefined ? { owner: options.owner } : {}),
      processes: []
    }
    await writeMarker(marker)
    const added = await run(repo, ["worktree", "add", "--quiet", reset ? "-B" : "-b", branch, path, baseCommit])
    if (added.code !== 0) {
      await discard(marker).catch(() => {})
      throw new WorktreeError(`cannot create the worktree ${path}: ${added.stderr.trim()}`)
    }
    const ready: Worktree = { ...marker, state: "ready" }
    await writeMarker(ready)
    return { ...ready, reused: false }
  })
}

/** Undoes an interrupted creation: directory, registration, the branch (it has no work), marker. */
const discard = async (marker: Worktree): Promise<void> => {
  const registered = (await registeredWorktrees(marker.repo).catch(() => [])).find((w) => w.path === marker.path)
  if (registered !== undefined) await run(marker.repo, ["worktree", "remove", "--force", "--force", marker.path])
  await rm(marker.path, { recursive: true, force: true })
  await deleteBranchIfNoWork(marker)
  await dropMarker(marker.path)
}

/** Deletes the branch unless it has commits beyond the base; says whether it is kept and why. */
const deleteBranchIfNoWork = async (marker: Worktree): Promise<{ kept: boolean; commits: number }> => {
  if (!(await refExists(marker.repo, `refs/heads/${marker.branch}`))) return { kept: false, commits: 0 }
  const count = await run(marker.repo, ["rev-list", "--count", `${marker.baseCommit}..refs/heads/${marker.branch}`])
  const commits = count.code === 0 ? Number(count.stdout.trim()) : Number.NaN
  if (!(commits === 0)) return { kept: true, commits }
  const deleted = await run(marker.repo, ["branch", "-D", marker.branch]) // fails when checked out elsewhere: kept
  return { kept: deleted.code !== 0, commits }
}

const dropMarker = async (path: string) => {
  await rm(markerPath(path), { force: true })
  // Tidy: the repository's directory goes when nothing is left in it.
  await rmdir(dirname(markerPath(path))).catch(() => {})
  await rmdir(dirname(path)).catch(() => {})
}

// ---------------------------------------------------------------------------------------------
// remove

export type KeptReason =
  /** Modified, staged or untracked files (ignored ones do not count). */
  | "uncommitted changes"
  /** HEAD was detached and has commits no branch or tag holds. */
  | "detached commits"
  /** The directory exists but git cannot read it as a worktree. */
  | "not a worktree"

export type RemoveResult =
  | {
    readonly removed: true
    readonly path: string
    readonly branch?: string
    /** The branch stays when it has commits beyond the base (or cannot be deleted). */
    readonly branchKept: boolean
    readonly commits?: number
  }
  | {
    readonly removed: false
    readonly path: string
    readonly kept: KeptReason
    /** What was found, e.g. the first few changed paths. */
    readonly detail: string
  }

/**
 * Removes the worktree at `path`, its registration and marker, and its branch unless the branch
 * has commits beyond the base. A worktree with uncommitted changes (untracked files included) or
 * unreachable detached commits is kept and reported, unless `force`. Removing what is already
 * gone succeeds. Stop the processes working in it first.
 */
export const removeWorktree = async (options: { readonly path: string; readonly force?: boolean }): Promise<RemoveResult> => {
  const asked = resolve(options.path)
  return serially((await readMarker(asked))?.repo ?? asked, async (): Promise<RemoveResult> => {
    const marker = await readMarker(asked)
    // The marker's path is the one git registered (the root's real path).
    const path = marker?.path ?? asked
    const present = await exists(path)
    if (marker === undefined) {
      if (!present) return { removed: true, path, branchKept: false }
      return { removed: false, path, kept: "not a worktree", detail: `${path} has no Rein marker; not touched` }
    }
    if (marker.state === "creating") {
      await discard(marker)
      return { removed: true, path, branch: marker.branch, branchKept: false }
    }
    if (present && options.force !== true) {
      const kept = await whyKeep(path)
      if (kept !== undefined) return { removed: false, path, ...kept }
    }
    if (await exists(marker.repo)) {
      const registered = (await registeredWorktrees(marker.repo)).find((w) => w.path === path)
      if (registered !== undefined) await git(marker.repo, ["worktree", "remove", "--force", "--force", path])
    }
    await rm(path, { recursive: true, force: true })
    if (!(await exists(marker.repo))) {
      await dropMarker(path)
      return { removed: true, path, branch: marker.branch, branchKept: false }
    }
    const branch = await deleteBranchIfNoWork(marker)
    await dropMarker(path)
    return { removed: true, path, branch: marker.branch, branchKept: branch.kept, commits: branch.commits }
  })
}

/** Why a worktree must not be deleted, or undefined when nothing in it would be lost. */
const whyKeep = async (path: string): Promise<{ kept: KeptReason; detail: string } | undefined> => {
  const status = await run(path, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none"])
  if (status.code !== 0) return { kept: "not a worktree", detail: status.stderr.trim() }
  const entries = status.stdout.split("\0")
  const changed: Array<string> = []
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!
    if (entry === "") continue
    changed.push(entry)
    if (entry[0] === "R" || entry[0] === "C") i++ // a rename or copy is followed by its source path
  }
  if (changed.length > 0) {
    const shown = changed.slice(0, 10).map((e) => e.slice(3)).join(", ")
    return { kept: "uncommitted changes", detail: `${changed.length} changed: ${shown}${changed.length > 10 ? ", …" : ""}` }
  }
  if ((await run(path, ["symbolic-ref", "-q", "HEAD"])).code !== 0) {
    const holders = await run(path, ["for-each-ref", "--count=1", "--contains", "HEAD", "refs/heads", "refs/tags", "refs/remotes"])
    if (holders.code === 0 && holders.stdout.trim() === "") {
      const head = (await run(path, ["rev-parse", "HEAD"])).stdout.trim()
      return { kept: "detached commits", detail: `HEAD ${head} is on no branch or tag` }
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// list, diff, disk

export interface WorktreeStatus extends Worktree {
  /** The directory exists. */
  readonly present: boolean
  /** Its repository lists it (`git worktree list`). */
  readonly registered: boolean
  /** The branch its directory has checked out now, per git (undefined: detached or unknown). */
  readonly checkedOut?: string
  readonly locked?: string
}

/** Every worktree under `root` that has a marker, with what git and the disk say of it. */
export const listWorktrees = async (root: string): Promise<Array<WorktreeStatus>> => {
  const rootDir = resolve(root)
  const markers: Array<Worktree> = []
  for (const repoName of await readdir(rootDir).catch(() => [] as Array<string>)) {
    const dir = join(rootDir, repoName, ".rein")
    for (const file of await readdir(dir).catch(() => [] as Array<string>)) {
      if (!file.endsWith(".json")) continue
      const marker = await readMarker(join(rootDir, repoName, file.slice(0, -".json".length)))
      if (marker !== undefined) markers.push(marker)
    }
  }
  const byRepo = new Map<string, Promise<Array<Registered>>>()
  const out: Array<WorktreeStatus> = []
  for (const marker of markers) {
    if (!byRepo.has(marker.repo)) byRepo.set(marker.repo, registeredWorktrees(marker.repo).catch(() => []))
    const registered = (await byRepo.get(marker.repo)!).find((w) => w.path === marker.path)
    out.push({
      ...marker,
      present: await exists(marker.path),
      registered: registered !== undefined,
      ...(registered?.branch !== undefined ? { checkedOut: registered.branch } : {}),
      ...(registered?.locked !== undefined ? { locked: registered.locked } : {})
    })
  }
  return out.sort((a, b) => a.path.localeCompare(b.path))
}

export interface WorktreeDiff {
  readonly baseCommit: string
  /** Unified diff (`a/` and `b/` prefixes), committed and uncommitted changes and new files. */
  readonly patch: string
  /** The diff was longer than `maxBytes` and is cut there (at a line's end). */
  readonly truncated: boolean
}

/**
 * The worktree's unified diff against its base commit: what was committed on its branch, what
 * is modified or staged, and untracked files as new files (ignored ones left out). The agent's
 * own index is not touched (a copy is used). At most `maxBytes` (default 4 MiB).
 */
export const diffWorktree = async (options: { readonly path: string; readonly maxBytes?: number }): Promise<WorktreeDiff> => {
  const path = resolve(options.path)
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024
  const marker = await readMarker(path)
  if (marker === undefined) throw new WorktreeError(`no worktree marker for ${path}`)
  const index = resolve(path, (await git(path, ["rev-parse", "--git-path", "index"])).trim())
  const tmpIndex = join(tmpdir(), `rein-diff-${randomUUID()}.index`)
  try {
    await copyFile(index, tmpIndex).catch((e) => {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
    })
    const env = { GIT_INDEX_FILE: tmpIndex }
    await git(path, ["add", "--all", "--intent-to-add", "--", "."], env)
    const args = [
      "-c",
      "core.quotePath=false",
      "diff",
      "--no-color",
      "--no-ext-diff",
      "--no-textconv",
      "--src-prefix=a/",
      "--dst-prefix=b/",
      marker.baseCommit,
      "--"
    ]
    return { baseCommit: marker.baseCommit, ...(await gitCapped(path, args, env, maxBytes)) }
  } finally {
    await rm(tmpIndex, { force: true })
  }
}

/** Runs git and keeps at most `maxBytes` of its output (cut at a line's end), stopping it then. */
const gitCapped = (cwd: string, args: ReadonlyArray<string>, env: Record<string, string>, maxBytes: number) =>
  new Promise<{ patch: string; truncated: boolean }>((resolvePromise, reject) => {
    const child = spawn("git", [...args], { cwd, env: gitEnv(env), stdio: ["ignore", "pipe", "pipe"] })
    const chunks: Array<Buffer> = []
    let size = 0
    let truncated = false
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => {
      if (truncated) return
      chunks.push(d)
      size += d.length
      if (size > maxBytes) {
        truncated = true
        child.kill("SIGTERM")
      }
    })
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-4096)
    })
    child.once("error", (e) => reject(new WorktreeError(`cannot run git diff: ${e.message}`)))
    child.once("close", (code) => {
      if (!truncated && code !== 0) return reject(new WorktreeError(`git diff (in ${cwd}) failed: ${stderr.trim()}`))
      let out = Buffer.concat(chunks)
      if (truncated) {
        out = out.subarray(0, maxBytes)
        const end = out.lastIndexOf(0x0a)
        out = out.subarray(0, end + 1)
      }
      resolvePromise({ patch: out.toString("utf8"), truncated })
    })
  })

/** Bytes free for an unprivileged user on the filesystem holding `path` (or its nearest existing parent). */
export const freeDisk = async (path: string): Promise<number> => {
  let dir = resolve(path)
  while (!(await exists(dir)) && dirname(dir) !== dir) dir = dirname(dir)
  const s = await statfs(dir)
  return Number(s.bavail) * Number(s.bsize)
}
