/**
 * A vitest reporter, after the default one: lists every skipped test at the
 * end of the run, and when PostgreSQL was neither given (`DATABASE_URL`) nor
 * found (see globalSetup.ts), says loudly that its tests did not run and how
 * to get them to.
 */
import { relative } from "node:path"
import type { RunnerTask as Task } from "vitest"
import type { Reporter, Vitest } from "vitest/node"
import { pgStatusVariable } from "./globalSetup.js"

const skippedIn = (task: Task, path: ReadonlyArray<string>, out: Array<string>) => {
  if (task.type === "test") {
    if (task.mode === "skip") out.push([...path, task.name].join(" > "))
  } else if ("tasks" in task) {
    for (const t of task.tasks) skippedIn(t, "filepath" in task ? path : [...path, task.name], out)
  }
}

export default class SkipReport implements Reporter {
  private filtered = false

  onInit(vitest: Vitest) {
    // With `-t`, tests outside the pattern are skipped too: listing them would be noise.
    this.filtered = vitest.config.testNamePattern !== undefined
  }

  // onFinished, not onTestRunEnd: the default reporter prints its summary there, and this comes after it.
  onFinished(files: ReadonlyArray<Task> = []) {
    const skipped: Array<string> = []
    if (!this.filtered) {
      for (const f of files) skippedIn(f, [relative(process.cwd(), f.file.filepath)], skipped)
    }
    const noPg = process.env[pgStatusVariable] === "missing"
    if (skipped.length === 0 && !noPg) return
    const bar = "!".repeat(78)
    const lines = [""]
    if (noPg) {
      lines.push(
        bar,
        "!! PostgreSQL NOT FOUND: DATABASE_URL is unset and no PostgreSQL server binaries are on this",
        "!! machine (looked in /usr/lib/postgresql/*/bin, `pg_config --bindir`, PATH), so the tests",
        "!! that need PostgreSQL were SKIPPED: this is not the suite CI runs. To run them:",
        "!!   sudo apt-get install postgresql      (Debian/Ubuntu; npm test then starts its own)",
        "!!   or: DATABASE_URL=postgres://user@host:5432/db npm test",
        bar
      )
    }
    if (skipped.length > 0) lines.push(`${skipped.length} test(s) skipped:`, ...skipped.map((s) => `  ${s}`))
    if (noPg) lines.push(bar)
    process.stdout.write(lines.join("\n") + "\n")
  }
}
