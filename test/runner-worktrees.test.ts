/**
 * A git worktree per session, against real repositories in temporary directories: creation,
 * refusals, recovery from an interrupted attempt, removal that never loses work, listing, the
 * diff for the Changes view, free disk.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import {
  branchName,
  createWorktree,
  diffWorktree,
  freeDisk,
  listWorktrees,
  markerPath,
  readMarker,
  recordProcesses,
  removeWorktree,
  type Worktree
} from "../src/runner/Worktrees.js"
import { cleanup, commitAll, git, makeRepo, tempDir } from "./runner-helpers.js"

afterEach(cleanup)

const branches = (repo: string) => git(repo, "branch", "--format=%(refname:short)").split("\n").filter((b) => b !== "").sort()

/** The state a `git worktree add` killed half-way leaves: marker `creating`, registration, some files. */
const interrupt = async (wt: Worktree) => {
  writeFileSync(markerPath(wt.path), JSON.stringify({ ...wt, state: "creating" }))
}

describe("createWorktree", () => {
  it("makes <root>/<repo>/<session> on rein/<session> from HEAD, with a marker that is no change anywhere", async () => {
    const repo = makeRepo("app")
    const root = tempDir()
    const head = git(repo, "rev-parse", "HEAD")
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    expect(wt).toMatchObject({
      sessionId: "s1",
      repo,
      repoName: "app",
      path: join(root, "app", "s1"),
      branch: "rein/s1",
      baseRef: "HEAD",
      baseCommit: head,
      state: "ready",
      processes: [],
      reused: false
    })
    expect(readFileSync(join(wt.path, "src", "a.txt"), "utf8")).toBe("one\ntwo\nthree\n")
    expect(git(wt.path, "rev-parse", "--abbrev-ref", "HEAD")).toBe("rein/s1")
    expect(git(wt.path, "rev-parse", "HEAD")).toBe(head)
    // The marker is outside the worktree: neither the worktree nor the repository shows a change.
    expect(markerPath(wt.path)).toBe(join(root, "app", ".rein", "s1.json"))
    expect(existsSync(markerPath(wt.path))).toBe(true)
    expect(git(wt.path, "status", "--porcelain", "--untracked-files=all")).toBe("")
    expect(git(repo, "status", "--porcelain", "--untracked-files=all")).toBe("")
    const { reused: _, ...marker } = wt
    expect(await readMarker(wt.path)).toEqual(marker)
    // The main checkout did not move.
    expect(git(repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main")
  })

  it("starts from baseRef (a branch, a tag, a commit), and works from a directory inside the repository", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const first = git(repo, "rev-list", "--max-parents=0", "HEAD")
    git(repo, "tag", "v1", first)
    git(repo, "branch", "old", first)
    const a = await createWorktree({ repo, sessionId: "a", root, baseRef: "v1" })
    const b = await createWorktree({ repo: join(repo, "src"), sessionId: "b", root, baseRef: "old" })
    const c = await createWorktree({ repo, sessionId: "c", root, baseRef: first.slice(0, 10) })
    for (const w of [a, b, c]) {
      expect(w.baseCommit).toBe(first)
      expect(w.repo).toBe(repo)
      expect(existsSync(join(w.path, "src"))).toBe(false)
    }
    expect(a.baseRef).toBe("v1")
  })

  it("refuses what is not a git repository, an empty one, a missing directory, a base that names nothing, a bad id", async () => {
    const root = tempDir()
    const plain = tempDir()
    await expect(createWorktree({ repo: plain, sessionId: "s", root })).rejects.toThrow(`${plain} is not a git repository`)
    await expect(createWorktree({ repo: join(plain, "nope"), sessionId: "s", root })).rejects.toThrow(/is not a directory/)
    const empty = tempDir()
    git(empty, "init", "-q")
    await expect(createWorktree({ repo: empty, sessionId: "s", root })).rejects.toThrow(/has no commit yet/)
    const repo = makeRepo()
    await expect(createWorktree({ repo, sessionId: "s", root, baseRef: "no-such-branch" })).rejects.toThrow(
      /base ref "no-such-branch" names no commit/
    )
    await expect(createWorktree({ repo, sessionId: "s", root, baseRef: "--orphan" })).rejects.toThrow(/is not a ref/)
    await expect(createWorktree({ repo, sessionId: "../x", root })).rejects.toThrow(/session id "..\/x" must match/)
    // Nothing was left behind by the refusals.
    expect(await listWorktrees(root)).toEqual([])
    expect(branches(repo)).toEqual(["main"])
  })

  it("the same session again is the same worktree (reused)", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    writeFileSync(join(wt.path, "work.txt"), "in progress\n")
    const again = await createWorktree({ repo, sessionId: "s1", root })
    expect(again.reused).toBe(true)
    expect(again.path).toBe(wt.path)
    expect(readFileSync(join(wt.path, "work.txt"), "utf8")).toBe("in progress\n")
  })

  it("several sessions at once in one repository, made and removed concurrently", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const ids = ["p1", "p2", "p3", "p4", "p5", "p6"]
    const made = await Promise.all(ids.map((sessionId) => createWorktree({ repo, sessionId, root })))
    expect(made.map((w) => w.branch)).toEqual(ids.map((id) => `rein/${id}`))
    expect(branches(repo)).toEqual(["main", ...ids.map((id) => `rein/${id}`)])
    const more = ["q1", "q2", "q3"]
    await Promise.all([
      ...made.map((w) => removeWorktree({ path: w.path })),
      ...more.map((sessionId) => createWorktree({ repo, sessionId, root }))
    ])
    expect(branches(repo)).toEqual(["main", ...more.map((id) => `rein/${id}`)])
  })

  it("a session id git refuses in a branch name gets a branch it accepts", async () => {
    expect(branchName("a:b")).toBe("rein/a_b")
    expect(branchName("a..b")).toBe("rein/a__b")
    expect(branchName("x.lock")).toBe("rein/x.lock_")
    expect(branchName("x.")).toBe("rein/x._")
    const repo = makeRepo()
    const wt = await createWorktree({ repo, sessionId: "web:fix..1.lock", root: tempDir() })
    expect(wt.branch).toBe("rein/web_fix__1.lock_")
    expect(git(wt.path, "rev-parse", "--abbrev-ref", "HEAD")).toBe(wt.branch)
  })

  it("what an interrupted attempt left does not make it fail: half-made worktree, stray registration, partial directory", async () => {
    const repo = makeRepo()
    const root = tempDir()
    // 1. Killed after `git worktree add` but before the marker said ready (files written in it, too).
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    await interrupt(wt)
    writeFileSync(join(wt.path, "half.txt"), "partial checkout\n")
    const again = await createWorktree({ repo, sessionId: "s1", root })
    expect(again.reused).toBe(false)
    expect(existsSync(join(again.path, "half.txt"))).toBe(false)
    expect(git(again.path, "status", "--porcelain")).toBe("")

    // 2. The directory half there, not registered with git (git was killed before registering it);
    //    the branch was already made at the base.
    await interrupt(again)
    git(repo, "worktree", "remove", "--force", again.path)
    mkdirSync(join(again.path, "src"), { recursive: true })
    writeFileSync(join(again.path, "src", "a.txt"), "on")
    expect(branches(repo)).toContain("rein/s1")
    const third = await createWorktree({ repo, sessionId: "s1", root })
    expect(readFileSync(join(third.path, "src", "a.txt"), "utf8")).toBe("one\ntwo\nthree\n")

    // 3. A registration whose directory is gone, and a `locked` one (what `git worktree add` holds while it checks out).
    await interrupt(third)
    git(repo, "worktree", "lock", "--reason", "initializing", third.path)
    rmSync(third.path, { recursive: true, force: true })
    const fourth = await createWorktree({ repo, sessionId: "s1", root })
    expect(git(fourth.path, "rev-parse", "--abbrev-ref", "HEAD")).toBe("rein/s1")
    expect(git(repo, "worktree", "list", "--porcelain")).not.toContain("locked")
    expect(branches(repo)).toEqual(["main", "rein/s1"])
  })

  it("a worktree whose directory was deleted is made again on the session's own branch, its commits kept", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    writeFileSync(join(wt.path, "new.txt"), "committed\n")
    commitAll(wt.path, "agent work")
    rmSync(wt.path, { recursive: true, force: true })
    const again = await createWorktree({ repo, sessionId: "s1", root })
    expect(readFileSync(join(again.path, "new.txt"), "utf8")).toBe("committed\n")
    expect(again.baseCommit).toBe(wt.baseCommit)
  })

  it("refuses a place taken by something else, a branch with someone's commits, another repository of the same name", async () => {
    const root = tempDir()
    const repo = makeRepo("app")
    // Someone's directory where the worktree would go.
    mkdirSync(join(root, "app", "taken"), { recursive: true })
    writeFileSync(join(root, "app", "taken", "mine.txt"), "not yours\n")
    await expect(createWorktree({ repo, sessionId: "taken", root })).rejects.toThrow(/already exists and is not a worktree Rein made/)
    expect(readFileSync(join(root, "app", "taken", "mine.txt"), "utf8")).toBe("not yours\n")
    // A branch rein/<id> with commits beyond the base (an earlier session's kept work).
    git(repo, "checkout", "-q", "-b", "rein/old")
    writeFileSync(join(repo, "x.txt"), "x\n")
    commitAll(repo, "earlier work")
    git(repo, "checkout", "-q", "main")
    await expect(createWorktree({ repo, sessionId: "old", root })).rejects.toThrow(/branch rein\/old already exists .* with commits not in HEAD/)
    // A branch rein/<id> checked out elsewhere.
    git(repo, "checkout", "-q", "-b", "rein/busy")
    await expect(createWorktree({ repo, sessionId: "busy", root })).rejects.toThrow(/branch rein\/busy is checked out in/)
    git(repo, "checkout", "-q", "main")
    // A branch left at an older commit (no work of its own) is taken over.
    git(repo, "branch", "rein/stale", "HEAD~1")
    const stale = await createWorktree({ repo, sessionId: "stale", root })
    expect(git(stale.path, "rev-parse", "HEAD")).toBe(git(repo, "rev-parse", "HEAD"))
    // Another repository named "app" and the same session id.
    const other = makeRepo("app")
    await createWorktree({ repo, sessionId: "s9", root })
    await expect(createWorktree({ repo: other, sessionId: "s9", root })).rejects.toThrow(/for another repository/)
    // Another runner's worktree.
    await createWorktree({ repo, sessionId: "r1", root, owner: "runner-a" })
    await expect(createWorktree({ repo, sessionId: "r1", root, owner: "runner-b" })).rejects.toThrow(/belongs to another runner/)
  })
})

describe("removeWorktree", () => {
  it("a clean worktree: removed, with its marker, its registration and its branch (no commits)", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const wt = await createWorktree({ repo, sessionId: "s1", root })
    mkdirSync(join(wt.path, "node_modules"))
    writeFileSync(join(wt.path, "node_modules", "dep.js"), "ignored files do not count\n")
    expect(await removeWorktree({ path: wt.path })).toEqual({ removed: true, path: wt.path, branch: "rein/s1", branchKept: false, commits: 0 })
    expect(existsSync(wt.path)).toBe(false)
    expect(existsSync(markerPath(wt.path))).toBe(false)
    expect(existsSync(join(root, "app"))).toBe(false)
    expect(branches(repo)).toEqual(["main"])
    expect(git(repo, "worktree", "list", "--porcelain")).not.toContain(wt.path)
    // Again: already gone is fine.
    expect(await removeWorktree({ path: wt.path })).toMatchObject({ removed: true })
  })

  it("keeps the branch when it has commits beyond the base", async () => {
    const repo = makeRepo()
    const wt = await createWorktree({ repo, sessionId: "s1", root: tempDir() })
    writeFileSync(join(wt.path, "feature.txt"), "done\n")
    commitAll(wt.path, "one")
    writeFileSync(join(wt.path, "feature.txt"), "done twice\n")
    commitAll(wt.path, "two")
    expect(await removeWorktree({ path: wt.path })).toEqual({ removed: true, path: wt.path, branch: "rein/s1", branchKept: true, commits: 2 })
    expect(existsSync(wt.path)).toBe(false)
    expect(git(repo, "show", "rein/s1:feature.txt")).toBe("done twice")
  })

  it("never deletes uncommitted work: modified, staged, untracked (also in a new directory), or detached commits", async () => {
    const repo = makeRepo()
    const root = tempDir()
    const cases: Array<[string, (path: string) => void, RegExp]> = [
      ["modified", (p) => writeFileSync(join(p, "src", "a.txt"), "changed\n"), /uncommitted/],
      ["staged", (p) => {
        writeFileSync(join(p, "staged.txt"), "s\n")
        git(p, "add", "staged.txt")
      }, /uncommitted/],
      ["untracked", (p) => {
        mkdirSync(join(p, "deep", "er"), { recursive: true })
        writeFileSync(join(p, "deep", "er", "new.txt"), "n\n")
      }, /uncommitted/],
      ["deleted", (p) => unlinkSync(join(p, "README.md")), /uncommitted/],
      ["detached", (p) => {
        git(p, "checkout", "-q", "--detach")
        writeFileSync(join(p, "d.txt"), "d\n")
        commitAll(p, "on no branch")
      }, /detached/]
    ]
    for (const [id, change, reason] of cases) {
      const wt = await createWorktree({ repo, sessionId: id, root })
      change(wt.path)
      const r = await removeWorktree({ path: wt.path })
      expect(r.removed, id).toBe(false)
      if (r.removed) continue
      expect(r.kept).toMatch(reason)
      expect(existsSync(wt.path)).toBe(true)
      expect(existsSync(markerPath(wt.path))).toBe(true)
    }
    const untracked = await removeWorktree({ path: join(root, "app", "untracked") })
    expect(untracked).toMatchObject({ removed: false, kept: "uncommitted changes", detail: "1 changed: deep/er/new.txt" })
    // force: the user said so.
    expect(await removeWorktree({ path: join(root, "app", "modified"), force: true })).toMatchObject({ removed: true, branchKept: false })
    expect(existsSync(join(root, "app", "modified"))).toBe(false)
  })

  it("a root reached through a symbolic link: the real path is recorded, and either path removes it", async () => {
    const repo = makeRepo()
    const real = tempDir()
    const link = join(tempDir(), "link")
    symlinkSync(real, link)
    const wt = await createWorktree({ repo, sessionId: "s1", root: link })
    expect(wt.path).toBe(join(realpathSync(real), "app", "s1"))
    git(wt.path, "mv", "README.md", "READ.md")
    expect(await removeWorktree({ path: join(link, "app", "s1") })).toMatchObject({
      removed: false,
      kept: "uncommitted changes",
      detail: "1 changed: READ.md"
    })
    git(wt.path, "mv", "READ.md", "README.md")
    expect(await removeWorktree({ path: join(link, "app", "s1") })).toMatchObject({ removed: true, branchKept: false })
    expect(git(repo, "worktree", "list", "--porcelain")).not.toContain("s1")
    expect(branches(repo)).toEqual(["main"])
  })

  it("a directory without a marker is not touched", async () => {
    const dir = join(tempDir(), "app", "x")
    mkdirSync(dir, { recursive: true })
    expect(await removeWorktree({ path: dir })).toMatchObject({ removed: false, kept: "not a worktree" })
    expect(existsSync(dir)).toBe(true)
  })

  it("an interrupted creation is cleaned up whole", async () => {
    const repo = makeRepo()
    const wt = await createWorktree({ repo, sessionId: "s1", root: tempDir() })
    await interrupt(wt)
    writeFileSync(join(wt.path, "half.txt"), "x\n")
    expect(await removeWorktree({ path: wt.path })).toMatchObject({ removed: true })
    expect(existsSync(wt.path)).toBe(false)
    expect(branches(repo)).toEqual(["main"])
  })
})

describe("listWorktrees", () => {
  it("every marker under the root, with what git and the disk say", async () => {
    const root = tempDir()
    const app = makeRepo("app")
    const lib = makeRepo("lib")
    const a = await createWorktree({ repo: app, sessionId: "a", root })
    const b = await createWorktree({ repo: lib, sessionId: "b", root, owner: "r1" })
    const c = await createWorktree({ repo: app, sessionId: "c", root })
    await recordProcesses(a.path, [{ pid: 4242, startTime: 99 }])
    rmSync(c.path, { recursive: true, force: true })
    git(app, "worktree", "lock", a.path)
    const list = await listWorktrees(root)
    // Sorted by path: <root>/app/a, <root>/app/c, <root>/lib/b.
    expect(list.map((w) => [w.sessionId, w.repo, w.path, w.present, w.registered])).toEqual([
      ["a", app, a.path, true, true],
      ["c", app, c.path, false, true],
      ["b", lib, b.path, true, true]
    ])
    expect(list.find((w) => w.sessionId === "a")).toMatchObject({ processes: [{ pid: 4242, startTime: 99 }], locked: "", checkedOut: "rein/a" })
    expect(list.find((w) => w.sessionId === "b")!.owner).toBe("r1")
    git(app, "worktree", "unlock", a.path)
    expect(await listWorktrees(join(root, "nothing-here"))).toEqual([])
  })
})

describe("diffWorktree", () => {
  it("committed, modified, deleted and new untracked files against the base; the agent's index untouched", async () => {
    const repo = makeRepo()
    const wt = await createWorktree({ repo, sessionId: "s1", root: tempDir() })
    writeFileSync(join(wt.path, "committed.txt"), "from a commit\n")
    commitAll(wt.path, "agent commit")
    writeFileSync(join(wt.path, "src", "a.txt"), "one\n2\nthree\n")
    unlinkSync(join(wt.path, "README.md"))
    mkdirSync(join(wt.path, "new dir"))
    writeFileSync(join(wt.path, "new dir", "ü.txt"), "brand new\n")
    writeFileSync(join(wt.path, "staged.txt"), "staged\n")
    git(wt.path, "add", "staged.txt")
    mkdirSync(join(wt.path, "node_modules"))
    writeFileSync(join(wt.path, "node_modules", "ignored.js"), "ignored\n")
    const statusBefore = git(wt.path, "status", "--porcelain=v1", "--untracked-files=all")

    const diff = await diffWorktree({ path: wt.path })
    expect(diff.truncated).toBe(false)
    expect(diff.baseCommit).toBe(wt.baseCommit)
    const files = [...diff.patch.matchAll(/^diff --git a\/(.+) b\//gm)].map((m) => m[1])
    expect(files).toEqual(["README.md", "committed.txt", "new dir/ü.txt", "src/a.txt", "staged.txt"])
    expect(diff.patch).toContain("deleted file mode")
    expect(diff.patch).toContain("+from a commit")
    expect(diff.patch).toContain("-two\n+2\n")
    // (git ends a name with a space in it with a tab on these lines)
    expect(diff.patch).toMatch(/--- \/dev\/null\n\+\+\+ b\/new dir\/ü\.txt\t?\n@@ -0,0 \+1 @@\n\+brand new\n/)
    expect(diff.patch).not.toContain("ignored")
    // The patch applies to the base and gives the worktree's files.
    const check = tempDir()
    git(repo, "worktree", "add", "--detach", "-q", check, wt.baseCommit)
    writeFileSync(join(check, "..", "p.diff"), diff.patch)
    git(check, "apply", join(check, "..", "p.diff"))
    expect(readFileSync(join(check, "new dir", "ü.txt"), "utf8")).toBe("brand new\n")
    expect(readFileSync(join(check, "src", "a.txt"), "utf8")).toBe("one\n2\nthree\n")
    git(repo, "worktree", "remove", "--force", check)
    // The agent's own index and status are as they were.
    expect(git(wt.path, "status", "--porcelain=v1", "--untracked-files=all")).toBe(statusBefore)
    expect(git(wt.path, "diff", "--cached", "--name-only")).toBe("staged.txt")
  })

  it("nothing changed is an empty patch; a long one is cut at a line's end", async () => {
    const repo = makeRepo()
    const wt = await createWorktree({ repo, sessionId: "s1", root: tempDir() })
    expect((await diffWorktree({ path: wt.path })).patch).toBe("")
    writeFileSync(join(wt.path, "big.txt"), Array.from({ length: 5000 }, (_, i) => `line ${i}\n`).join(""))
    const diff = await diffWorktree({ path: wt.path, maxBytes: 1000 })
    expect(diff.truncated).toBe(true)
    expect(diff.patch.length).toBeLessThanOrEqual(1000)
    expect(diff.patch.endsWith("\n")).toBe(true)
    await expect(diffWorktree({ path: join(tempDir(), "none") })).rejects.toThrow(/no worktree marker/)
  })
})

describe("freeDisk", () => {
  it("bytes free on the filesystem, also for a path not made yet", async () => {
    const dir = tempDir()
    const free = await freeDisk(dir)
    expect(free).toBeGreaterThan(0)
    const df = Number(execFileSync("df", ["-B1", "--output=avail", dir], { encoding: "utf8" }).split("\n")[1])
    expect(Math.abs(free - df)).toBeLessThan(256 * 1024 * 1024)
    expect(await freeDisk(join(dir, "not", "yet"))).toBeGreaterThan(0)
  })
})
