/**
 * How each artifact reads in a terminal: one block of lines per artifact.
 * The same functions serve the TTY (styled, Markdown) and plain output
 * (`noColors`, raw text): only `TranscriptStyle` differs.
 */
import { formatCost } from "../client/sessionState.js"
import type { Artifact } from "../Domain/Artifact.js"
import { noColors, sanitize, strip, type Style, truncate } from "./Ansi.js"
import { renderMarkdown } from "./Markdown.js"

export interface TranscriptStyle {
  readonly style: Style
  /** Terminal columns; lines meant to be one line are cut to it. */
  readonly width: number
  /** Render `text` artifacts as Markdown (TTY only). */
  readonly markdown: boolean
  /** Plain output: word markers (`[tool]`) instead of symbols, no colour. */
  readonly plain: boolean
  /** The worktree's `changes` in full (`rein artifacts`); else one summary line (`rein watch`). */
  readonly fullChanges?: boolean
}

/** Output lines of a finished tool call shown before "… N more lines". */
export const OUTPUT_LINES = 4

const str = (v: unknown): string => (typeof v === "string" ? sanitize(v) : v === null || v === undefined ? "" : sanitize(JSON.stringify(v)))
const oneLine = (s: string): string => s.replace(/\s+/g, " ").trim()

/** A permission option as the server has it: `{optionId, name, kind}` (issue 13), or anything older. */
export interface PermissionOption {
  readonly optionId?: string
  readonly name?: string
  readonly kind?: string
}

export const permissionOptions = (a: Artifact): ReadonlyArray<PermissionOption> =>
  Array.isArray(a.options) ? (a.options as Array<unknown>).map((o) => (typeof o === "object" && o !== null ? o : { name: String(o) }) as PermissionOption) : []

/**
 * Shown only with `--verbose`: the agent's protocol messages the bridge passes on whole
 * (`custom {name: "acp.<sessionUpdate>"}`), which say nothing a person reads.
 */
export const hidden = (a: Artifact): boolean => a.kind === "custom" && typeof a.name === "string" && a.name.startsWith("acp.")

export const isPendingPermission = (a: Artifact): boolean => a.kind === "permission" && (a.decision === null || a.decision === undefined)

export const isRunningTool = (a: Artifact): boolean => a.kind === "tool_call" && (a.status === "running" || a.status === "pending")

/** How each tool call status shows: one table, so a status cannot be missed in one of two places. */
const toolStatuses: Record<string, { readonly icon: string; readonly word: string; readonly colour: "green" | "red" | "gray" | "yellow" }> = {
  done: { icon: "✓", word: "done", colour: "green" },
  error: { icon: "✗", word: "error", colour: "red" },
  cancelled: { icon: "⊘", word: "cancelled", colour: "gray" },
  pending: { icon: "○", word: "pending", colour: "gray" },
  running: { icon: "◌", word: "running", colour: "yellow" }
}
const toolStatus = (status: string) => (Object.hasOwn(toolStatuses, status) ? toolStatuses[status] : undefined) ?? toolStatuses.running!

const toolIcon = (status: string, t: TranscriptStyle): string => {
  if (t.plain) return "[tool]"
  const { icon, colour } = toolStatus(status)
  return t.style[colour](icon)
}

const statusWord = (status: string, s: Style): string => {
  const { word, colour } = toolStatus(status)
  return s[colour](word)
}

/** The one line of a tool call: icon, title (or name and input), first location, status. */
export const toolLine = (a: Artifact, t: TranscriptStyle): string => {
  const s = t.style
  const status = str(a.status) || "running"
  const name = str(a.name)
  const title = oneLine(str(a.title))
  const input = oneLine(str(a.input))
  const locations = Array.isArray(a.locations) ? (a.locations as Array<{ path?: unknown; line?: unknown }>) : []
  const where = locations.length > 0 && typeof locations[0]!.path === "string"
    ? ` ${sanitize(locations[0]!.path)}${typeof locations[0]!.line === "number" ? `:${locations[0]!.line}` : ""}`
    : ""
  const what = title !== "" ? title : input !== "" ? `${name} ${input}` : name
  const tail = ` · ${status}`
  const room = Math.max(10, t.width - 3 - [...tail].length - [...where].length)
  const text = truncate(what, room)
  const label = title !== "" ? text : text.startsWith(name) ? s.bold(name) + text.slice(name.length) : text
  return `${toolIcon(status, t)} ${label}${s.gray(where)}${s.dim(" · ")}${statusWord(status, s)}`
}

/** A Markdown code fence line (```lang, ~~~), which agents wrap their tools' output in. */
const FENCE = /^\s*(```|~~~)[\w.+-]*\s*$/

/**
 * A tool's output as it reads: Markdown code fences (Claude's adapter wraps output in them) are
 * rendered as what they are, a block of code, so the fence lines themselves are not shown.
 */
export const outputLines = (output: string): Array<string> => {
  const lines = output.replace(/\n+$/, "").split("\n")
  const fences = lines.filter((l) => FENCE.test(l)).length
  // Only fences that open and close: a lone ``` inside a program's output is the output.
  const kept = fences >= 2 && fences % 2 === 0 ? lines.filter((l) => !FENCE.test(l)) : lines
  while (kept.length > 0 && kept[0]!.trim() === "") kept.shift()
  while (kept.length > 0 && kept[kept.length - 1]!.trim() === "") kept.pop()
  return kept
}

/** The output of a finished call, collapsed to a few lines. */
export const toolOutput = (a: Artifact, t: TranscriptStyle): Array<string> => {
  if (isRunningTool(a)) return []
  const lines = outputLines(str(a.output))
  if (lines.length === 0) return []
  const bar = t.plain ? "  | " : t.style.gray("  │ ")
  const shown = lines.slice(0, OUTPUT_LINES).map((l) => bar + t.style.dim(truncate(l, Math.max(10, t.width - 5))))
  if (lines.length > OUTPUT_LINES) shown.push(t.style.gray(`  … ${lines.length - OUTPUT_LINES} more lines`))
  return shown
}

/** A permission's answer in words, without colour: "allowed once (Allow this time)". */
export const decisionWords = (a: Artifact): string => strip(decisionText(a, noColors))

const decisionText = (a: Artifact, s: Style): string => {
  const opt = permissionOptions(a).find((o) => o.optionId !== undefined && o.optionId === a.optionId)
  const label = opt?.name !== undefined ? ` (${sanitize(opt.name)})` : ""
  switch (a.decision) {
    case "allow_once":
      return s.green("allowed once") + label
    case "allow_always":
      return s.green("always allowed") + label
    case "reject":
      return s.red("rejected") + label
    default:
      return s.gray(str(a.decision)) + label
  }
}

/** The keys a pending permission answers to, and what each sends. */
export interface PermissionKey {
  readonly key: string
  readonly label: string
  readonly reply: { readonly decision: "allow_once" | "allow_always" | "reject" } | { readonly optionId: string }
}

export const permissionKeys = (a: Artifact): Array<PermissionKey> => {
  const keys: Array<PermissionKey> = [
    { key: "y", label: "allow once", reply: { decision: "allow_once" } },
    { key: "a", label: "always", reply: { decision: "allow_always" } },
    { key: "n", label: "reject", reply: { decision: "reject" } }
  ]
  permissionOptions(a).forEach((o, i) => {
    if (i < 9 && typeof o.optionId === "string") {
      keys.push({ key: String(i + 1), label: sanitize(o.name ?? o.optionId), reply: { optionId: o.optionId } })
    }
  })
  return keys
}

/** A pending permission's diff stays short: it sits in the live region, above the keys that answer it. */
const permissionDiffLines = 30

const permissionLines = (a: Artifact, t: TranscriptStyle): Array<string> => {
  const s = t.style
  const title = str(a.title)
  const rid = str(a.requestId)
  if (!isPendingPermission(a)) {
    return [t.plain ? `[permission] ${title} (${rid}): ${decisionText(a, s)}` : `${s.magenta("◆")} ${title} ${s.gray(`(${rid})`)} · ${decisionText(a, s)}`]
  }
  const lines = [t.plain ? `[permission] ${title} (${rid}): waiting for an answer` : s.inverse(s.yellow(` ? ${title} `)) + s.gray(` (${rid})`)]
  // What approving changes, before the options: people see what they approve.
  if (typeof a.diff === "string" && a.diff !== "") {
    const diff = diffLines(sanitize(a.diff), s)
    lines.push(...diff.slice(0, permissionDiffLines))
    if (diff.length > permissionDiffLines) lines.push(s.gray(`  … ${diff.length - permissionDiffLines} more lines of diff`))
  }
  permissionOptions(a).forEach((o, i) => {
    const kind = o.kind !== undefined ? ` ${s.gray(`[${sanitize(o.kind)}]`)}` : ""
    lines.push(`  ${i + 1}) ${sanitize(o.name ?? o.optionId ?? "")}${kind}`)
  })
  return lines
}

const planLines = (a: Artifact, t: TranscriptStyle): Array<string> => {
  const s = t.style
  const entries = Array.isArray(a.entries) ? (a.entries as Array<{ content?: unknown; status?: unknown; priority?: unknown }>) : []
  const lines = [t.plain ? "[plan]" : s.bold("Plan")]
  for (const e of entries) {
    const content = oneLine(str(e.content))
    if (e.status === "completed") lines.push(`  ${t.plain ? "[x]" : s.green("☑")} ${s.dim(content)}`)
    else if (e.status === "in_progress") lines.push(`  ${t.plain ? "[~]" : s.yellow("◐")} ${s.bold(content)}`)
    else lines.push(`  ${t.plain ? "[ ]" : "☐"} ${content}`)
  }
  return lines
}

/** A unified diff, coloured by line. */
export const diffLines = (diff: string, s: Style): Array<string> =>
  diff.replace(/\n+$/, "").split("\n").map((l) => {
    if (l.startsWith("+++") || l.startsWith("---")) return s.bold(l)
    if (l.startsWith("+")) return s.green(l)
    if (l.startsWith("-")) return s.red(l)
    if (l.startsWith("@@")) return s.cyan(l)
    return l
  })

const fileLines = (a: Artifact, t: TranscriptStyle): Array<string> => {
  const s = t.style
  const action = str(a.action)
  const color = action === "create" ? s.green : action === "delete" ? s.red : s.yellow
  const head = t.plain ? `[file] ${action} ${str(a.path)}` : `${color("±")} ${s.bold(str(a.path))} ${s.gray(action)}`
  return typeof a.diff === "string" && a.diff !== "" ? [head, ...diffLines(sanitize(a.diff), s)] : [head]
}

/** What a unified diff changes: files, lines added and removed (file headers aside). */
export const diffStat = (diff: string): { readonly files: number; readonly added: number; readonly removed: number } => {
  let files = 0
  let added = 0
  let removed = 0
  // Between a file's `diff --git` and its first hunk, `---` / `+++` name the file.
  let inHeader = false
  for (const l of diff.split("\n")) {
    if (l.startsWith("diff --git ")) {
      files++
      inHeader = true
    } else if (l.startsWith("@@")) inHeader = false
    else if (inHeader && (l.startsWith("--- ") || l.startsWith("+++ "))) continue
    else if (!inHeader && l.startsWith("+")) added++
    else if (!inHeader && l.startsWith("-")) removed++
  }
  // A diff without git's headers: one file per `+++`.
  if (files === 0 && diff.trim() !== "") files = Math.max(1, diff.split("\n").filter((l) => l.startsWith("+++ ")).length)
  return { files, added, removed }
}

/** The worktree's diff against its base: one line (`watch`), or that line and the diff (`artifacts`). */
const changesLines = (a: Artifact, t: TranscriptStyle): Array<string> => {
  const s = t.style
  const diff = typeof a.diff === "string" ? sanitize(a.diff) : ""
  const { files, added, removed } = diffStat(diff)
  const truncated = a.truncated === true ? s.gray(" (truncated)") : ""
  const what = files === 0
    ? s.gray("no changes against the base")
    : `${files} file${files === 1 ? "" : "s"} changed, ${s.green(`+${added}`)} ${s.red(`-${removed}`)}`
  const head = t.plain ? `[changes] ${what}${truncated}` : `${s.yellow("±")} ${s.bold("changes")} ${what}${truncated}`
  return t.fullChanges === true && diff.trim() !== "" ? [head, ...diffLines(diff, s)] : [head]
}

const textLines = (text: string, t: TranscriptStyle): Array<string> =>
  t.markdown ? renderMarkdown(text, t.width, t.style.bold("x") !== "x") : sanitize(text).replace(/\n+$/, "").split("\n")

/** The whole block of one artifact. */
export const artifactLines = (a: Artifact, t: TranscriptStyle): Array<string> => {
  const s = t.style
  switch (a.kind) {
    case "user_message": {
      const lines = sanitize(str(a.text)).split("\n")
      return t.plain
        ? lines.map((l) => `> ${l}`)
        : ["", ...lines.map((l, i) => (i === 0 ? s.cyan(s.bold("❯ ")) : "  ") + s.bold(l))]
    }
    case "text":
      return textLines(str(a.text), t)
    case "reasoning": {
      const lines = sanitize(str(a.text)).replace(/\n+$/, "").split("\n")
      return t.plain ? lines.map((l, i) => (i === 0 ? `[thinking] ${l}` : l)) : lines.map((l) => s.dim(s.italic(l)))
    }
    case "tool_call":
      return [toolLine(a, t), ...toolOutput(a, t)]
    case "permission":
      return permissionLines(a, t)
    case "plan":
      return planLines(a, t)
    case "file_change":
      return fileLines(a, t)
    case "error":
      return [`${t.plain ? "[error]" : s.red("✗ error:")} ${s.red(str(a.message))}${a.code ? s.gray(` (${str(a.code)})`) : ""}`]
    case "usage": {
      const dollars = formatCost(typeof a.costUsd === "number" ? a.costUsd : null)
      const cost = dollars === null ? "" : ` · ${dollars}`
      const ctx = a.context && typeof a.context === "object"
        ? ` · context ${(a.context as { used?: unknown }).used}/${(a.context as { size?: unknown }).size}`
        : ""
      return [s.gray(`${t.plain ? "[usage] " : ""}tokens in ${a.inputTokens} · out ${a.outputTokens}${cost}${ctx}`)]
    }
    case "changes":
      return changesLines(a, t)
    case "custom":
      // The runner started the agent again, and it could not resume its conversation.
      if (a.name === "rein.new_conversation") return [s.gray("— agent started again: a new conversation —")]
      if (a.name === "rein.resumed_conversation") return [s.gray("— agent started again: it resumed its conversation —")]
      return [s.gray(truncate(`[${str(a.name)}] ${str(a.data)}`, t.width))]

    default: {
      // A turn ended by Abort says so where its reply ends.
      if ((a.kind as string) === "turn_stopped") return [s.gray("— turn stopped —")]
      if ((a.kind as string) === "agent") {
        const version = a.version ? ` ${str(a.version)}` : ""
        return [s.gray(`${t.plain ? "[agent] " : "agent: "}${str(a.name) || "unknown"}${version}`)]
      }
      const { seq: _s, kind, createdAt: _c, updatedAt: _u, ...rest } = a
      return [s.gray(truncate(`[${kind}] ${sanitize(JSON.stringify(rest))}`, t.width))]
    }
  }
}
