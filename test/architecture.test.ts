/**
 * The import rules of docs/architecture.md hold over src/, and the checker that says so does
 * fail: a fixture tree breaking each rule once yields exactly those violations.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { check, rules, specifiers } from "../scripts/check-imports.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const script = join(root, "scripts", "check-imports.mjs")

/** A source tree of `files` (path under the root -> content) in a fresh temporary directory. */
const tree = (files: Record<string, string>) => {
  const dir = mkdtempSync(join(tmpdir(), "rein-imports-"))
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
  trees.push(dir)
  return dir
}
const trees: Array<string> = []
afterAll(() => {
  for (const dir of trees) rmSync(dir, { recursive: true, force: true })
})

describe("architecture", () => {
  it("src/ keeps every import rule", () => {
    expect(check(join(root, "src"))).toEqual([])
  })

  it("reads every form of import, and only code at the start of a statement", () => {
    const source = [
      `import * as A from "./a.js"`,
      `import type { B } from "../b.js"`,
      `import {\n  c,\n  type D\n} from "./c.js"`,
      `export { e } from "./e.js"`,
      `export type * from "./f.js"`,
      `import "./g.js"`,
      `const h = await import("./h.js")`,
      `const s = "import x from './not-code.js'"`
    ].join("\n")
    expect(specifiers(source).sort()).toEqual(["../b.js", "./a.js", "./c.js", "./e.js", "./f.js", "./g.js", "./h.js"])
  })

  it("finds each broken rule in a tree that breaks them", () => {
    const dir = tree({
      "Domain/Session.ts": `import { Reducer } from "../Reducer.js"\n`,
      "Reducer.ts": `import type { Entry } from "./Sessions.js"\n`,
      "EventBus.ts": `import type { Session } from "./Domain/Session.js"\nimport * as Sse from "./Http/Sse.js"\n`,
      "SessionStore/Sql.ts": `import { transaction } from "../SqlTransaction.js"\nimport type { Turn } from "../Reducer.js"\nimport type { LogBody } from "../Cluster/Protocol.js"\n`,
      "SessionStore/Pg.ts": `import * as Cluster from "../Cluster.js"\n`,
      "Cluster.ts": `import * as Sql from "./SessionStore/Sql.js"\n`,
      "Cluster/Listener.ts": `import { Sessions } from "../Sessions.js"\n`,
      "Sessions.ts": `import * as Registry from "./Sessions/Registry.js"\nimport { Cluster } from "./Cluster.js"\n`,
      "Sessions/Peers.ts": `import { Cluster } from "../Cluster.js"\n`,
      "Sessions/Registry.ts": `import * as Peers from "./Peers.js"\n`,
      "Http/Router.ts": `import { SessionStore } from "../SessionStore.js"\nimport * as Peers from "../Sessions/Peers.js"\n`
    })
    const found = check(dir).map((v) => `${v.from} -> ${v.to}`)
    expect(found.sort()).toEqual([
      "Cluster -> SessionStore/Sql",
      "Cluster/Listener -> Sessions",
      "Domain/Session -> Reducer",
      "EventBus -> Http/Sse",
      "Http/Router -> SessionStore",
      "Http/Router -> Sessions/Peers",
      "Reducer -> Sessions",
      "SessionStore/Sql -> Reducer",
      "Sessions -> Cluster"
    ])
    // Every rule is broken by some import above.
    expect(new Set(check(dir).map((v) => v.rule))).toEqual(new Set(rules.map((r) => r.rule)))
  })

  it("the script exits 1 and names the violation, 0 on a clean tree", () => {
    const bad = tree({ "Http/Router.ts": `import * as Reducer from "../Reducer.js"\n` })
    let failure: { status: number; stderr: string } | undefined
    try {
      execFileSync(process.execPath, [script, bad], { encoding: "utf8", stdio: "pipe" })
    } catch (e) {
      failure = e as { status: number; stderr: string }
    }
    expect(failure?.status).toBe(1)
    expect(failure?.stderr).toContain("Http/Router imports Reducer: Http never imports the store, Cluster or Reducer")
    const good = tree({ "Http/Router.ts": `import * as Sessions from "../Sessions.js"\n` })
    expect(execFileSync(process.execPath, [script, good], { encoding: "utf8" })).toContain("every rule holds")
  })
})
