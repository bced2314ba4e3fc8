/**
 * The docs cannot drift silently: docs/protocol.md names every event type, command type, route,
 * error code, artifact kind and rein-server flag the code has (and lists no route, event or
 * command the code lacks), and no markdown link in the repository points outside it.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { commandTypes } from "../src/Domain/Command.js"
import { eventTypes } from "../src/Domain/Event.js"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const read = (path: string) => readFileSync(join(root, path), "utf8")
const protocol = read("docs/protocol.md")

/** The lines of the markdown table under `heading` (the first table after it), as cells. */
const table = (doc: string, heading: string): Array<Array<string>> => {
  const lines = doc.split("\n")
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, "").trim() === heading)
  if (start < 0) throw new Error(`no heading "${heading}" in docs/protocol.md`)
  let i = start + 1
  while (i < lines.length && !lines[i]!.startsWith("|")) i++
  const rows: Array<Array<string>> = []
  // The header and the separator row are skipped.
  for (i += 2; i < lines.length && lines[i]!.startsWith("|"); i++) {
    rows.push(lines[i]!.replace(/\\\|/g, "\u0000").split("|").slice(1, -1).map((c) => c.replace(/\u0000/g, "|").trim()))
  }
  return rows
}

const unquote = (cell: string) => cell.replace(/^`|`$/g, "")

describe("docs/protocol.md matches the code", () => {
  it("lists exactly the event types of Domain/Event.ts", () => {
    const documented = table(protocol, "Events (sandbox → server)").map((row) => unquote(row[0]!))
    expect([...documented].sort()).toEqual([...eventTypes].sort())
  })

  it("lists exactly the command types of Domain/Command.ts", () => {
    const documented = table(protocol, "Commands (client → sandbox)").map((row) => unquote(row[0]!))
    expect([...documented].sort()).toEqual([...commandTypes].sort())
  })

  it("lists exactly the routes of Http/Router.ts and Http/Static.ts", () => {
    const methods: Record<string, string> = { get: "GET", post: "POST", del: "DELETE", put: "PUT", patch: "PATCH" }
    const registered = new Set<string>()
    for (const file of ["src/Http/Router.ts", "src/Http/Static.ts"]) {
      for (const m of read(file).matchAll(/HttpRouter\.(get|post|del|put|patch)\(\s*"([^"]+)"/g)) {
        registered.add(`${methods[m[1]!]} ${m[2]}`)
      }
    }
    expect(registered.size).toBeGreaterThan(10)
    const documented = new Set<string>()
    for (const [method, paths] of table(protocol, "Routes")) {
      for (const path of paths!.split(", ")) documented.add(`${method} ${path.replace(/\[.*\]$/, "")}`)
    }
    expect([...documented].sort()).toEqual([...registered].sort())
  })

  it("documents every error code and its status", () => {
    const source = read("src/Http/Errors.ts")
    const codes = new Map<string, string>()
    for (const m of source.matchAll(/\[(\d{3}), "([a-z_]+)"\]/g)) codes.set(m[2]!, m[1]!)
    for (const m of source.matchAll(/jsonError\((\d{3}), "([a-z_]+)"/g)) codes.set(m[2]!, m[1]!)
    expect(codes.size).toBeGreaterThan(5)
    const documented = new Map(table(protocol, "Errors").map(([status, code]) => [unquote(code!), status!]))
    for (const [code, status] of codes) expect(documented.get(code), `error code ${code}`).toBe(status)
    expect([...documented.keys()].sort()).toEqual([...codes.keys()].sort())
  })

  it("describes every artifact kind of Domain/Artifact.ts", () => {
    const block = /export type ArtifactKind =([^]*?)\n\n/.exec(read("src/Domain/Artifact.ts"))![1]!
    const kinds = [...block.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]!)
    expect(kinds.length).toBeGreaterThan(5)
    const documented = table(protocol, "Artifacts").map((row) => unquote(row[0]!))
    expect([...documented].sort()).toEqual([...kinds].sort())
  })

  // Both bins take the runner's flags from src/runner/Flags.ts.
  it.each([
    ["rein-server", ["src/bin.ts", "src/runner/Flags.ts"]],
    ["rein-runner", ["src/runner/bin.ts", "src/runner/Flags.ts"]]
  ] as const)("lists every %s flag and its environment variable", (bin, files) => {
    const source = files.map(read).join("\n")
    const flags = [...source.matchAll(/Options\.\w+\("([a-z-]+)"[,)]/g)].map((m) => `--${m[1]}`)
    const env = [...source.matchAll(/Config\.\w+\("([A-Z_]+)"\)/g)].map((m) => m[1]!)
    expect(flags.length).toBeGreaterThan(5)
    const rows = table(protocol, `\`${bin}\` flags`)
    const documentedFlags = rows.flatMap(([flag]) => flag!.split(", ").map(unquote))
    expect(documentedFlags.filter((f) => f !== "--help" && f !== "--version").sort()).toEqual([...flags].sort())
    const documentedEnv = rows.flatMap((row) => row[1]!.split(", ").map(unquote)).filter((e) => e !== "")
    expect([...documentedEnv].sort()).toEqual([...new Set(env)].sort())
  })

  it("lists every createServer option of Server.ts", () => {
    const block = /export interface ServerOptions \{([^]*?)\n\}/.exec(read("src/Server.ts"))![1]!
    const options = [...block.matchAll(/readonly (\w+)\?:/g)].map((m) => m[1]!)
    expect(options.length).toBeGreaterThan(5)
    const documented = table(protocol, "`createServer` options").map((row) => unquote(row[0]!))
    expect([...documented].sort()).toEqual([...options].sort())
  })
})

// ---------------------------------------------------------------------------------------------

const skipped = new Set(["node_modules", ".git", "dist", "dist-bench", "coverage"])

const files = (dir: string): Array<string> =>
  readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    if (entry.name.startsWith(".") && entry.name !== ".ci" || skipped.has(entry.name)) return []
    const path = dir === "" ? entry.name : `${dir}/${entry.name}`
    return entry.isDirectory() ? files(path) : [path]
  })

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
const anchors = (markdown: string): Set<string> => {
  const out = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of withoutFences(markdown).split("\n")) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!m) continue
    const base = m[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-")
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

const withoutFences = (markdown: string) => markdown.replace(/^(```|~~~)[^]*?^\1\s*$/gm, "")

/** Fenced blocks and inline code hold examples, not links. */
const withoutCode = (markdown: string) => withoutFences(markdown).replace(/`[^`\n]*`/g, "")

const links = (markdown: string): Array<string> =>
  [...withoutCode(markdown).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => (m[1] ?? m[2])!)

describe("links in the repository", () => {
  const markdown = files("").filter((f) => f.endsWith(".md"))

  it("finds the markdown files", () => {
    expect(markdown).toContain("README.md")
    expect(markdown).toContain("docs/protocol.md")
  })

  it("every relative markdown link resolves to a file (and heading) in the repository", () => {
    const broken: Array<string> = []
    for (const file of markdown) {
      const text = read(file)
      for (const link of links(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue // http:, https:, mailto:
        const [path, anchor] = link.split("#") as [string, string | undefined]
        const target = path === "" ? join(root, file) : resolve(root, dirname(file), decodeURIComponent(path))
        const inside = relative(root, target)
        if (inside.startsWith("..") || inside.split(sep).some((part) => skipped.has(part))) {
          broken.push(`${file}: ${link} points outside the repository`)
          continue
        }
        let isFile = false
        try {
          isFile = statSync(target).isFile() || statSync(target).isDirectory()
        } catch {
          broken.push(`${file}: ${link} does not exist`)
          continue
        }
        if (isFile && anchor !== undefined && anchor !== "" && target.endsWith(".md")) {
          if (!anchors(readFileSync(target, "utf8")).has(anchor)) broken.push(`${file}: ${link} has no heading #${anchor}`)
        }
      }
    }
    expect(broken).toEqual([])
  })

  it("no file refers to the protocol document outside the repository", () => {
    // Built from parts, so this file does not match itself.
    const needles = [["..", "shared"].join("/"), ["PROTOCOL", "md"].join(".")]
    const offenders = files("")
      .filter((f) => /\.(md|ts|tsx|js|mjs|json|html|css|yml|yaml)$/.test(f) && !f.endsWith("package-lock.json"))
      .filter((f) => needles.some((n) => read(f).includes(n)))
    expect(offenders).toEqual([])
  })
})
