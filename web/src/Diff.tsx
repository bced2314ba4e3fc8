/**
 * Unified diffs: a file change's patch, or the old and new text a tool call carries, as rows with
 * old and new line numbers, added and removed lines coloured, long ones collapsed. Parsing and
 * diffing are jsdiff's (`diff`, already the sandbox bridge's), not ours.
 */
import { parsePatch, structuredPatch, type StructuredPatchHunk } from "diff"
import { useState } from "preact/hooks"

export interface DiffRow {
  readonly kind: "add" | "del" | "ctx" | "hunk" | "note"
  readonly old?: number | undefined
  readonly new?: number | undefined
  readonly text: string
}

/**
 * A hunk's header as a unified diff writes it. jsdiff counts an empty side (a new file's old side,
 * a deleted file's new side) as starting at line 1 (its `parsePatch` adds one to the written 0);
 * the header says 0, the line before the first, as `diff -u` and git do.
 */
export const hunkHeader = (h: Pick<StructuredPatchHunk, "oldStart" | "oldLines" | "newStart" | "newLines">): string => {
  const range = (start: number, lines: number) => `${lines === 0 ? Math.max(0, start - 1) : start},${lines}`
  return `@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@`
}

/**
 * The file a patch's `---`/`+++` line names: without git's `a/`/`b/` prefix, and an absolute path
 * kept absolute (`b//tmp/x` and `/tmp/x` are both `/tmp/x`); undefined for `/dev/null`.
 */
export const patchFileName = (name: string | undefined): string | undefined => {
  if (name === undefined) return undefined
  const n = name.trim()
  if (n === "" || n === "/dev/null") return undefined
  return n.replace(/^[ab]\//, "")
}

const rowsOfHunks = (hunks: ReadonlyArray<StructuredPatchHunk>): Array<DiffRow> => {
  const rows: Array<DiffRow> = []
  for (const h of hunks) {
    rows.push({ kind: "hunk", text: hunkHeader(h) })
    let o = h.oldStart
    let n = h.newStart
    for (const line of h.lines) {
      const sign = line[0]
      const text = line.slice(1)
      if (sign === "+") rows.push({ kind: "add", new: n++, text })
      else if (sign === "-") rows.push({ kind: "del", old: o++, text })
      else if (sign === "\\") rows.push({ kind: "note", text: line })
      else rows.push({ kind: "ctx", old: o++, new: n++, text })
    }
  }
  return rows
}

/** A patch's rows and the files it changes; undefined when it does not parse or changes nothing. */
const readPatch = (patch: string): { readonly files: Array<string>; readonly rows: Array<DiffRow> } | undefined => {
  try {
    const parsed = parsePatch(patch)
    const hunks = parsed.flatMap((p) => p.hunks)
    if (hunks.length === 0) return undefined
    const files = parsed.map((p) => patchFileName(p.newFileName) ?? patchFileName(p.oldFileName)).filter((n): n is string => n !== undefined)
    return { files, rows: rowsOfHunks(hunks) }
  } catch {
    return undefined
  }
}

/** The rows of a unified patch; undefined when the text is not one (it is then shown as it is). */
export const rowsOfPatch = (patch: string): Array<DiffRow> | undefined => readPatch(patch)?.rows

/** The rows of the change from `oldText` to `newText`, with three lines of context. */
export const rowsOfTexts = (oldText: string, newText: string): Array<DiffRow> =>
  // Fragments (an edit's old and new strings) rarely end in a newline: no note saying so.
  rowsOfHunks(structuredPatch("a", "b", oldText, newText, undefined, undefined, { context: 3 }).hunks).filter((r) => r.kind !== "note")

export const diffStats = (rows: ReadonlyArray<DiffRow>) => ({
  added: rows.filter((r) => r.kind === "add").length,
  removed: rows.filter((r) => r.kind === "del").length
})

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined)

/**
 * The change a tool call's input describes, when it describes one: an edit (`old_string` /
 * `new_string`, or `oldText` / `newText`), a whole file written (`content`), or a patch.
 */
export const toolCallDiff = (input: unknown): { readonly path: string | undefined; readonly rows: Array<DiffRow> } | undefined => {
  let v: unknown = input
  if (typeof input === "string") {
    try {
      v = JSON.parse(input)
    } catch {
      return undefined
    }
  }
  if (typeof v !== "object" || v === null) return undefined
  const o = v as Record<string, unknown>
  const path = str(o.file_path) ?? str(o.path) ?? str(o.filePath)
  const oldText = str(o.old_string) ?? str(o.oldText) ?? str(o.old_str)
  const newText = str(o.new_string) ?? str(o.newText) ?? str(o.new_str)
  if (newText !== undefined) return { path, rows: rowsOfTexts(oldText ?? "", newText) }
  const content = str(o.content)
  if (content !== undefined && path !== undefined) return { path, rows: rowsOfTexts("", content) }
  const patch = str(o.patch) ?? str(o.diff)
  const rows = patch === undefined ? undefined : rowsOfPatch(patch)
  return rows === undefined ? undefined : { path, rows }
}

/** The change a permission request carries itself (`diff`, a unified patch of one or more files). */
export const permissionDiff = (diff: unknown): { readonly path: string | undefined; readonly rows: Array<DiffRow> } | undefined => {
  const patch = str(diff)
  if (patch === undefined || patch === "") return undefined
  const read = readPatch(patch)
  if (read === undefined) return undefined
  return { path: read.files.length === 1 ? read.files[0] : undefined, rows: read.rows }
}

const signs: Record<DiffRow["kind"], string> = { add: "+", del: "-", ctx: " ", hunk: "", note: "" }

/** Rows shown before a long diff is collapsed. */
export const COLLAPSE_AFTER = 40

export const DiffView = ({ rows, label }: { rows: ReadonlyArray<DiffRow>; label: string }) => {
  const [open, setOpen] = useState(false)
  const long = rows.length > COLLAPSE_AFTER
  const shown = long && !open ? rows.slice(0, COLLAPSE_AFTER) : rows
  const { added, removed } = diffStats(rows)
  const lines = rows.filter((r) => r.kind !== "hunk").length
  return (
    <div class="diff-view">
      <div class="diff-scroll">
        <table class="diff" aria-label={label}>
          <tbody>
            {shown.map((r) =>
              r.kind === "hunk" || r.kind === "note"
                ? (
                  <tr class={`diff-line ${r.kind}`}>
                    <td class="ln" />
                    <td class="ln" />
                    <td class="code">{r.text}</td>
                  </tr>
                )
                : (
                  <tr class={`diff-line ${r.kind}`} data-old={r.old} data-new={r.new}>
                    <td class="ln">{r.old ?? ""}</td>
                    <td class="ln">{r.new ?? ""}</td>
                    <td class="code">
                      <span class="sign" aria-hidden="true">{signs[r.kind]}</span>
                      <span class="sr-only">{r.kind === "add" ? "added: " : r.kind === "del" ? "removed: " : ""}</span>
                      {r.text}
                    </td>
                  </tr>
                )
            )}
          </tbody>
        </table>
      </div>
      <p class="diff-foot muted">
        <span class="diff-added">+{added}</span> <span class="diff-removed">−{removed}</span>
        {long && (
          <button type="button" class="button small ghost diff-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? "Collapse" : `Show all ${lines} lines`}
          </button>
        )}
      </p>
    </div>
  )
}

/** A file change's `diff` as rows, or as plain text when it is not a unified patch. */
export const PatchView = ({ patch, label }: { patch: string; label: string }) => {
  const rows = rowsOfPatch(patch)
  return rows !== undefined ? <DiffView rows={rows} label={label} /> : <pre class="diff-raw">{patch}</pre>
}

/** One file of a multi-file (git) patch. */
export interface PatchFile {
  readonly path: string
  /** The old path of a renamed file. */
  readonly oldPath?: string | undefined
  readonly status: "added" | "deleted" | "modified" | "renamed" | "binary"
  /** Its rows; undefined when it has no hunks (binary, a mode change) or does not parse (then `raw`). */
  readonly rows?: Array<DiffRow> | undefined
  readonly raw: string
}

const unquote = (name: string) => name.startsWith("\"") && name.endsWith("\"") ? name.slice(1, -1) : name

/**
 * A patch cut into its files (at git's `diff --git` lines), each parsed on its own, so one file
 * that does not parse (the last of a truncated patch) does not hide the others.
 */
export const patchFiles = (patch: string): Array<PatchFile> => {
  const parts = patch.split(/^(?=diff --git )/m).filter((p) => p.trim() !== "")
  return parts.map((raw): PatchFile => {
    const header = /^diff --git (.*)$/m.exec(raw)?.[1] ?? ""
    const plus = /^\+\+\+ (.*)$/m.exec(raw)?.[1]
    const minus = /^--- (.*)$/m.exec(raw)?.[1]
    const renameFrom = /^rename from (.*)$/m.exec(raw)?.[1]
    const renameTo = /^rename to (.*)$/m.exec(raw)?.[1]
    const fromHeader = (() => {
      const m = /^"?a\/(.*?)"? "?b\/(.*?)"?$/.exec(header)
      return m?.[2]
    })()
    const path = renameTo ?? patchFileName(plus === undefined ? undefined : unquote(plus)) ??
      patchFileName(minus === undefined ? undefined : unquote(minus)) ?? fromHeader ?? (header || "(unnamed)")
    const status: PatchFile["status"] = /^new file mode/m.test(raw)
      ? "added"
      : /^deleted file mode/m.test(raw)
      ? "deleted"
      : renameFrom !== undefined
      ? "renamed"
      : /^Binary files .* differ$/m.test(raw)
      ? "binary"
      : "modified"
    let rows: Array<DiffRow> | undefined
    try {
      const hunks = parsePatch(raw).flatMap((p) => p.hunks)
      rows = hunks.length > 0 ? rowsOfHunks(hunks) : undefined
    } catch {
      rows = undefined
    }
    return { path, ...(renameFrom !== undefined ? { oldPath: renameFrom } : {}), status, rows, raw }
  })
}
