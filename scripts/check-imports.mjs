#!/usr/bin/env node
/**
 * Checks the import rules of docs/architecture.md over a source tree (default: src/).
 * A tiny parser: it reads the specifiers of `import ... from`, `export ... from`, `import "..."`
 * and `import("...")`, keeps the relative ones, and names each module by its path under the root
 * without extension (`Sessions/Peers`). Run `node scripts/check-imports.mjs [root]`; it prints
 * every violation and exits 1 when there is one. `npm test` runs it (test/architecture.test.ts).
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"

const isDomain = (m) => m.startsWith("Domain/")
const isStore = (m) => m === "SessionStore" || m.startsWith("SessionStore/")
const isCluster = (m) => m === "Cluster" || m.startsWith("Cluster/")
const isSessions = (m) => m === "Sessions" || m.startsWith("Sessions/")
const isHttp = (m) => m.startsWith("Http/")

/** Who may import the cluster from outside it (the store only its wire types). */
const clusterImporters = new Set(["SessionStore/Pg", "Sessions/Peers", "Sessions/Follower", "Runners/Peers"])

/**
 * Each rule: which importing modules it governs, and whether importing `to` from `from` breaks
 * it. Modules are named by path under the root, without extension.
 */
export const rules = [
  {
    rule: "Domain imports nothing of ours outside Domain",
    applies: isDomain,
    breaks: (to) => !isDomain(to)
  },
  {
    rule: "Reducer and EventBus import only Domain",
    applies: (from) => from === "Reducer" || from === "EventBus",
    breaks: (to) => !isDomain(to)
  },
  {
    rule: "the store imports only Domain, Cluster/Protocol and SqlTransaction (SessionStore/Pg also builds Cluster)",
    applies: isStore,
    breaks: (to, from) =>
      !(isDomain(to) || isStore(to) || to === "Cluster/Protocol" || to === "SqlTransaction" ||
        (from === "SessionStore/Pg" && to === "Cluster"))
  },
  {
    rule: "only SessionStore/Pg, Sessions/Peers, Sessions/Follower and Runners/Peers import Cluster (the store its Protocol)",
    applies: (from) => !isCluster(from),
    breaks: (to, from) => isCluster(to) && !clusterImporters.has(from) && !(to === "Cluster/Protocol" && isStore(from))
  },
  {
    rule: "Cluster never imports the store, Sessions or Http",
    applies: isCluster,
    breaks: (to) => isStore(to) || isSessions(to) || isHttp(to)
  },
  {
    rule: "nothing outside Sessions.ts and Sessions/ imports Sessions/*",
    applies: (from) => !isSessions(from),
    breaks: (to) => to.startsWith("Sessions/")
  },
  {
    rule: "Http never imports the store, Cluster or Reducer",
    applies: isHttp,
    breaks: (to) => isStore(to) || isCluster(to) || to === "Reducer"
  }
]

const patterns = [
  /^[ \t]*(?:import|export)[ \t]+[^"'`;]*?\bfrom[ \t]*["']([^"']+)["']/gm,
  /^[ \t]*import[ \t]*["']([^"']+)["']/gm,
  /\bimport\([ \t]*["']([^"']+)["'][ \t]*\)/g
]

/** The specifiers a source file imports. */
export const specifiers = (source) => {
  const out = []
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) out.push(m[1])
  return out
}

const files = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return files(path)
    return /\.(ts|mts|tsx)$/.test(name) && !name.endsWith(".d.ts") ? [path] : []
  })

const moduleName = (root, path) => relative(root, path).split(sep).join("/").replace(/\.(ts|mts|tsx|js|mjs|jsx)$/, "")

/** Every import of `root` that breaks a rule: `{ from, to, rule }`, in file order. */
export const check = (root) => {
  const violations = []
  for (const file of files(root).sort()) {
    const from = moduleName(root, file)
    for (const spec of specifiers(readFileSync(file, "utf8"))) {
      if (!spec.startsWith(".")) continue
      const target = resolve(dirname(file), spec)
      const to = moduleName(root, target)
      if (to.startsWith("..")) continue
      for (const { applies, breaks, rule } of rules) {
        if (applies(from) && breaks(to, from)) violations.push({ from, to, rule })
      }
    }
  }
  return violations
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "..", "src"))
  const violations = check(root)
  for (const v of violations) console.error(`${v.from} imports ${v.to}: ${v.rule}`)
  if (violations.length > 0) process.exit(1)
  console.log(`imports of ${relative(process.cwd(), root) || "."}: every rule holds`)
}
