/**
 * The `rein watch` printers on their own: what each prints as artifacts
 * change, including repeated snapshots (a resumed stream), and the TTY
 * printer's live region on a small emulated screen (scrollback + rows).
 */
import { describe, expect, it } from "vitest"
import { noColors } from "../src/cli/Ansi.js"
import { JsonPrinter, PlainPrinter, TtyPrinter } from "../src/cli/Printer.js"
import { artifactLines, diffStat } from "../src/cli/Transcript.js"
import type { Artifact } from "../src/Domain/Artifact.js"

const art = (seq: number, kind: string, fields: Record<string, unknown>): Artifact =>
  ({ seq, kind, createdAt: seq, updatedAt: seq, ...fields }) as Artifact

const sink = () => {
  let text = ""
  return { write: (s: string) => void (text += s), text: () => text }
}

/**
 * Enough of a terminal for the live region: lines of text, a cursor row,
 * CR, LF, cursor up (CSI n A), erase down (CSI J), erase line (CSI K); SGR
 * and cursor visibility ignored. Rows that scroll off the top stay in `lines`
 * (the scrollback); the cursor cannot move above the visible screen.
 */
const screen = (columns: number, height: number) => {
  const lines: Array<string> = [""]
  let row = 0
  let col = 0
  const top = () => Math.max(0, lines.length - height)
  const write = (s: string) => {
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!
      if (c === "\x1b") {
        const m = /^\x1b\[(\??)([0-9;]*)([A-Za-z])/.exec(s.slice(i))!
        i += m[0].length - 1
        if (m[3] === "A") row = Math.max(top(), row - Number(m[2] || 1))
        else if (m[3] === "J") {
          lines.splice(row + 1)
          lines[row] = lines[row]!.slice(0, col)
        } else if (m[3] === "K") lines[row] = lines[row]!.slice(0, col)
        continue
      }
      if (c === "\r") col = 0
      else if (c === "\n") {
        row++
        col = 0
        if (row >= lines.length) lines.push("")
      } else {
        if (col >= columns) {
          row++
          col = 0
          if (row >= lines.length) lines.push("")
        }
        const l = lines[row]!.padEnd(col)
        lines[row] = l.slice(0, col) + c + l.slice(col + 1)
        col++
      }
    }
  }
  return { write, columns: () => columns, rows: () => height, lines: () => lines.join("\n").replace(/\n+$/, "") }
}

describe("PlainPrinter", () => {
  it("prints appends only, and nothing again for a repeated snapshot (new objects, same content)", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    p.update([art(1, "text", { text: "Hel" })])
    p.update([art(1, "text", { text: "Hello" })])
    p.update([art(1, "text", { text: "Hello" }), art(2, "tool_call", { name: "ls", input: "", status: "running", output: null })])
    // a resume: every artifact again as a fresh snapshot object
    p.update([art(1, "text", { text: "Hello" }), art(2, "tool_call", { name: "ls", input: "", status: "running", output: null })])
    p.update([art(1, "text", { text: "Hello" }), art(2, "tool_call", { name: "ls", input: "", status: "done", output: "x" })])
    // a text that grows after something else was printed: a continuation
    p.update([art(1, "text", { text: "Hello!" }), art(2, "tool_call", { name: "ls", input: "", status: "done", output: "x" })])
    p.end()
    expect(out.text()).toBe("Hello\n[tool] ls · running\n[tool] ls · done\n  | x\n[text #1 continued] !\n")
    expect(out.text()).not.toMatch(/\x1b/)
  })

  it("a tool call's streaming input is not printed per delta; its end is", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    const call = (input: string, status = "running", output: string | null = null) => art(1, "tool_call", { name: "write", input, status, output })
    p.update([call("{")])
    p.update([call("{\"path\"")])
    p.update([call("{\"path\": \"a\"}")])
    p.update([call("{\"path\": \"a\"}", "done", "ok")])
    expect(out.text()).toBe("[tool] write { · running\n[tool] write {\"path\": \"a\"} · done\n  | ok\n")
  })

  it("a pending permission shows the diff it carries before its options, the first 30 lines of a long one", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    const options = [{ optionId: "y", name: "Allow", kind: "allow_once" }]
    const diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n-two\n+2\n three\n"
    p.update([art(1, "permission", { requestId: "r1", title: "Edit a.txt?", options, diff, decision: null, optionId: null })])
    expect(out.text()).toBe(
      "[permission] Edit a.txt? (r1): waiting for an answer\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n-two\n+2\n three\n  1) Allow [allow_once]\n"
    )
    const long = ["--- a/b", "+++ b/b", "@@ -0,0 +1,40 @@", ...Array.from({ length: 40 }, (_, i) => `+${i}`)].join("\n")
    const again = sink()
    new PlainPrinter(again, sink()).update([art(1, "permission", { requestId: "r2", title: "Write b?", diff: long, decision: null, optionId: null })])
    const lines = again.text().trimEnd().split("\n")
    expect(lines).toHaveLength(1 + 30 + 1)
    expect(lines.at(-1)).toBe("  … 13 more lines of diff")
  })

  it("strips control characters a server's text could smuggle into the terminal", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    p.update([art(1, "text", { text: "a\x1b]0;evil\x07b" })])
    p.update([art(1, "text", { text: "a\x1b]0;evil\x07b\x1b[2Jc" })])
    expect(out.text()).toBe("a]0;evilb[2Jc")
  })
})

describe("JsonPrinter", () => {
  it("snapshots, snapshot_complete once, then changes as appends or sets; nothing again after a resume", () => {
    const out = sink()
    const p = new JsonPrinter(out, sink())
    p.update([art(1, "text", { text: "a" })], false)
    p.update([art(1, "text", { text: "a" })], true)
    p.update([art(1, "text", { text: "ab" }), art(2, "plan", { entries: [] })], true)
    p.update([art(1, "text", { text: "ab" }), art(2, "plan", { entries: [{ content: "x", status: "pending" }] })], true)
    p.update([art(1, "text", { text: "ab" }), art(2, "plan", { entries: [{ content: "x", status: "pending" }] })], true)
    const events = out.text().trimEnd().split("\n").map((l) => JSON.parse(l))
    expect(events).toEqual([
      { event: "artifact_snapshot", artifact: art(1, "text", { text: "a" }) },
      { event: "snapshot_complete" },
      { event: "artifact_updated", seq: 1, field: "text", append: "b", updatedAt: 1 },
      { event: "artifact_created", artifact: art(2, "plan", { entries: [] }) },
      { event: "artifact_updated", seq: 2, field: "entries", set: [{ content: "x", status: "pending" }], updatedAt: 2 }
    ])
  })
})

describe("TtyPrinter", () => {
  const flush = (p: TtyPrinter) => (p as unknown as { draw: (extra: Array<string>) => void }).draw([])

  it("redraws the live part in place: a tool call's line changes, finished artifacts stay in scrollback", () => {
    const term = screen(60, 10)
    const p = new TtyPrinter(term, noColors, 1_000_000)
    const call = (status: string, output: string | null = null) => art(2, "tool_call", { name: "make", input: "", status, output })
    p.update([art(1, "text", { text: "Building." }), call("running")])
    flush(p)
    expect(term.lines()).toBe("Building.\n◌ make · running")
    p.update([art(1, "text", { text: "Building." }), call("done", "ok")])
    flush(p)
    expect(term.lines()).toBe("Building.\n✓ make · done\n  │ ok")
    p.update([art(1, "text", { text: "Building." }), call("done", "ok"), art(3, "text", { text: "Done" })])
    flush(p)
    p.update([art(1, "text", { text: "Building." }), call("done", "ok"), art(3, "text", { text: "Done, all **green**." })])
    flush(p)
    p.end()
    expect(term.lines()).toBe("Building.\n✓ make · done\n  │ ok\nDone, all green.")
  })

  it("a live region taller than the screen spills into scrollback instead of garbling it", () => {
    const term = screen(40, 6)
    const p = new TtyPrinter(term, noColors, 1_000_000)
    const long = Array.from({ length: 12 }, (_, i) => `line ${i + 1}`).join("\n\n")
    const grow = (n: number) => art(1, "reasoning", { text: long.split("\n\n").slice(0, n).join("\n") })
    for (let n = 1; n <= 12; n++) {
      p.update([grow(n)])
      flush(p)
    }
    p.update([grow(12), art(2, "text", { text: "answer" })])
    flush(p)
    p.end()
    expect(term.lines()).toBe([...Array.from({ length: 12 }, (_, i) => `line ${i + 1}`), "answer"].join("\n"))
  })

  it("an artifact already in scrollback that changes again is printed again (a text: only what it gained)", () => {
    const term = screen(60, 10)
    const p = new TtyPrinter(term, noColors, 1_000_000)
    const plan = (done: boolean) => art(1, "plan", { entries: [{ content: "fix", status: done ? "completed" : "in_progress" }] })
    p.update([plan(false), art(2, "text", { text: "working" })])
    flush(p)
    p.update([plan(true), art(2, "text", { text: "working" })])
    flush(p)
    p.end()
    expect(term.lines()).toBe("Plan\n  ◐ fix\nPlan\n  ☑ fix\nworking")
  })

  it("while the turn runs, its plan is redrawn in place at the bottom and its usage held; both printed once at its end", () => {
    const term = screen(60, 12)
    const p = new TtyPrinter(term, noColors, 1_000_000)
    const plan = (a: string, b: string) => art(2, "plan", { entries: [{ content: "look", status: a }, { content: "fix", status: b }] })
    const usage = (n: number) => art(3, "usage", { inputTokens: n, outputTokens: n, costUsd: null, context: null })
    const call = (seq: number, name: string) => art(seq, "tool_call", { name, input: "", status: "done", output: null })
    const prompt = art(1, "user_message", { text: "go" })
    p.update([prompt, plan("in_progress", "pending"), usage(1), call(4, "ls")], true, true)
    flush(p)
    p.update([prompt, plan("completed", "in_progress"), usage(2), call(4, "ls"), call(5, "make")], true, true)
    flush(p)
    // The plan on top of what may still change (the last call).
    expect(term.lines()).toBe("\n❯ go\n✓ ls · done\nPlan\n  ☑ look\n  ◐ fix\n✓ make · done")
    p.update([prompt, plan("completed", "completed"), usage(3), call(4, "ls"), call(5, "make"), art(6, "text", { text: "Done." })], true, false)
    flush(p)
    // The turn's end: its reply, then its last plan and its usage.
    expect(term.lines()).toBe("\n❯ go\n✓ ls · done\n✓ make · done\nDone.\nPlan\n  ☑ look\n  ☑ fix\ntokens in 3 · out 3")
  })
})

describe("TtyPrinter and a tall plan", () => {
  it("a running turn's plan taller than the screen is cut to fit, not garbled", () => {
    const term = screen(40, 6)
    const p = new TtyPrinter(term, noColors, 1_000_000)
    const entries = Array.from({ length: 12 }, (_, i) => ({ content: `step ${i + 1}`, status: "pending" }))
    const artifacts = [art(1, "user_message", { text: "go" }), art(2, "plan", { entries }), art(3, "text", { text: "ok" })]
    p.update(artifacts, true, true)
    ;(p as unknown as { draw: (extra: Array<string>) => void }).draw([])
    const shown = term.lines().split("\n")
    expect(shown.slice(-5)).toEqual(["Plan", "  ☐ step 1", "  ☐ step 2", "  …", "ok"])
    expect(term.lines()).not.toContain("step 5")
  })
})

describe("PlainPrinter and the running turn", () => {
  it("prints the running turn's plan once, its last version at the turn's end, and its usage only then", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    const plan = (a: string) => art(2, "plan", { entries: [{ content: "look", status: a }] })
    const usage = (n: number) => art(3, "usage", { inputTokens: n, outputTokens: n, costUsd: 0.001 * n, context: null })
    const prompt = art(1, "user_message", { text: "go" })
    p.update([prompt, plan("pending"), usage(1)], true, true)
    p.update([prompt, plan("in_progress"), usage(2), art(4, "text", { text: "ok" })], true, true)
    p.update([prompt, plan("completed"), usage(3), art(4, "text", { text: "ok" })], true, false)
    p.end()
    expect(out.text()).toBe("> go\n[plan]\n  [ ] look\nok\n[plan]\n  [x] look\n[usage] tokens in 3 · out 3 · <$0.01\n")
  })
})

describe("a runner's session (issue 20): the worktree's changes, a new conversation", () => {
  const diff = [
    "diff --git a/notes.txt b/notes.txt",
    "new file mode 100644",
    "--- /dev/null",
    "+++ b/notes.txt",
    "@@ -0,0 +1,2 @@",
    "+hello",
    "+--- not a header",
    "diff --git a/src/a.txt b/src/a.txt",
    "--- a/src/a.txt",
    "+++ b/src/a.txt",
    "@@ -1,3 +1,2 @@",
    " one",
    "-two",
    "-three",
    "+3"
  ].join("\n")

  it("counts files and lines, file headers aside", () => {
    expect(diffStat(diff)).toEqual({ files: 2, added: 3, removed: 2 })
    expect(diffStat("")).toEqual({ files: 0, added: 0, removed: 0 })
  })

  it("watch: the changes as one line, again when a turn replaces them; artifacts: the whole diff", () => {
    const out = sink()
    const p = new PlainPrinter(out, sink())
    const changes = art(2, "changes", { diff, truncated: false })
    p.update([art(1, "user_message", { text: "go" }), changes])
    expect(out.text()).toBe("> go\n[changes] 2 files changed, +3 -2\n")
    p.update([art(1, "user_message", { text: "go" }), { ...changes, diff: "", updatedAt: 9 } as Artifact])
    expect(out.text()).toBe("> go\n[changes] 2 files changed, +3 -2\n[changes] no changes against the base\n")

    const t = { style: noColors, width: 100, markdown: false, plain: true }
    expect(artifactLines(art(2, "changes", { diff, truncated: true }), { ...t, fullChanges: true })).toEqual([
      "[changes] 2 files changed, +3 -2 (truncated)",
      ...diff.split("\n")
    ])
    expect(artifactLines(art(3, "custom", { name: "rein.new_conversation", data: { text: "…" } }), t)).toEqual([
      "— agent started again: a new conversation —"
    ])
  })
})
