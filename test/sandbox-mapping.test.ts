/**
 * The bridge's mapping of ACP `session/update` notifications to Rein events
 * (src/sandbox/Mapping.ts): pure, so tested here update by update.
 */
import { applyPatch } from "diff"
import { describe, expect, it } from "vitest"
import { displayPath, fileChange, UpdateMapper } from "../src/sandbox/Mapping.js"

const mapper = (terminals: Record<string, string> = {}) =>
  new UpdateMapper({ cwd: "/work/project", terminalOutput: (id) => terminals[id] })

describe("text and reasoning", () => {
  it("message and thought chunks become deltas whose partId is the messageId", () => {
    const m = mapper()
    expect(m.map({ sessionUpdate: "agent_message_chunk", content: { type: "text", text: "Hel" }, messageId: "m1" })).toEqual([
      { type: "text_delta", delta: "Hel", partId: "m1" }
    ])
    expect(m.map({ sessionUpdate: "agent_thought_chunk", content: { type: "text", text: "hmm" } })).toEqual([
      { type: "reasoning_delta", delta: "hmm" }
    ])
  })

  it("a non-text chunk (an image) is kept whole as custom", () => {
    const update = { sessionUpdate: "agent_message_chunk", content: { type: "image", data: "AAAA", mimeType: "image/png" } }
    expect(mapper().map(update)).toEqual([{ type: "custom", name: "acp.agent_message_chunk", data: update }])
  })

  it("a replayed user message chunk becomes user_message", () => {
    expect(mapper().map({ sessionUpdate: "user_message_chunk", content: { type: "text", text: "fix it" } })).toEqual([
      { type: "user_message", text: "fix it" }
    ])
  })
})

describe("tool calls", () => {
  it("tool_call starts a call with title, kind, locations and the raw input as JSON; ACP's default status is pending", () => {
    const events = mapper().map({
      sessionUpdate: "tool_call",
      toolCallId: "t1",
      title: "Read README.md",
      kind: "read",
      rawInput: { path: "/work/project/README.md" },
      locations: [{ path: "/work/project/README.md", line: 3 }, { path: "/x", line: -1 }]
    })
    expect(events).toEqual([
      {
        type: "tool_call_start",
        toolCallId: "t1",
        name: "read",
        title: "Read README.md",
        kind: "read",
        input: "{\"path\":\"/work/project/README.md\"}",
        locations: [{ path: "/work/project/README.md", line: 3 }, { path: "/x" }]
      },
      { type: "tool_call_update", toolCallId: "t1", status: "pending" }
    ])
  })

  it("the tool's name comes from `name`, then Claude's _meta, then the kind", () => {
    const m = mapper()
    const [a] = m.map({ sessionUpdate: "tool_call", toolCallId: "a", title: "x", name: "Bash", status: "in_progress" })
    const [b] = m.map({
      sessionUpdate: "tool_call",
      toolCallId: "b",
      title: "Edit",
      rawInput: {},
      status: "in_progress",
      _meta: { claudeCode: { toolName: "Edit" } }
    })
    const [c] = m.map({ sessionUpdate: "tool_call", toolCallId: "c", title: "Search", kind: "search", status: "in_progress" })
    expect([a, b, c].map((e) => (e as { name: string }).name)).toEqual(["Bash", "Edit", "search"])
  })

  it("Qwen Code's _meta.toolName names the tool too", () => {
    const [e] = mapper().map({
      sessionUpdate: "tool_call",
      toolCallId: "call_1",
      title: "Writing to a.txt",
      kind: "edit",
      status: "pending",
      _meta: { toolName: "write_file" }
    })
    expect((e as { name: string }).name).toBe("write_file")
  })

  it("a non-final update replaces fields; in_progress is running; content text streams as output", () => {
    const m = mapper()
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "Edit", rawInput: {}, status: "pending" })
    expect(m.map({
      sessionUpdate: "tool_call_update",
      toolCallId: "t1",
      title: "Edit src/a.ts",
      kind: "edit",
      status: "in_progress",
      rawInput: { file: "src/a.ts" },
      locations: [{ path: "/work/project/src/a.ts" }],
      content: [{ type: "content", content: { type: "text", text: "working" } }]
    })).toEqual([{
      type: "tool_call_update",
      toolCallId: "t1",
      title: "Edit src/a.ts",
      kind: "edit",
      status: "running",
      input: "{\"file\":\"src/a.ts\"}",
      output: "working",
      locations: [{ path: "/work/project/src/a.ts" }]
    }])
  })

  it("a diff becomes a file_change only when the call completes, after tool_call_end", () => {
    const m = mapper()
    const diff = { type: "diff", path: "/work/project/src/a.ts", oldText: "one\ntwo\n", newText: "one\n2\n" }
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "Edit", kind: "edit", status: "pending" })
    const pending = m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", content: [diff] })
    expect(pending.some((e) => e.type === "file_change")).toBe(false)
    const done = m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed" })
    expect(done.map((e) => e.type)).toEqual(["tool_call_end", "file_change"])
    const change = done[1] as { path: string; action: string; diff: string }
    expect(change.path).toBe("src/a.ts")
    expect(change.action).toBe("modify")
    expect(applyPatch("one\ntwo\n", change.diff)).toBe("one\n2\n")
    expect(change.diff).toContain("--- a/src/a.ts")
    expect(change.diff).toContain("+++ b/src/a.ts")
  })

  it("a failed call gives tool_call_end isError and no file_change (the edit did not happen)", () => {
    const m = mapper()
    m.map({
      sessionUpdate: "tool_call",
      toolCallId: "t1",
      title: "Write",
      status: "in_progress",
      content: [{ type: "diff", path: "/work/project/new.txt", oldText: null, newText: "hi\n" }]
    })
    expect(m.map({
      sessionUpdate: "tool_call_update",
      toolCallId: "t1",
      status: "failed",
      content: [{ type: "content", content: { type: "text", text: "denied" } }]
    })).toEqual([{ type: "tool_call_end", toolCallId: "t1", output: "denied", isError: true }])
  })

  it("a new file (oldText null) is a create whose diff applies to nothing", () => {
    const change = fileChange("/work/project", "/work/project/new.txt", null, "hello\nworld\n") as any
    expect(change.action).toBe("create")
    expect(change.diff).toBe("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n")
    expect(applyPatch("", change.diff)).toBe("hello\nworld\n")
  })

  it("a diff whose oldText is \"\" (Qwen Code's new file) is a create, in the permission's diff too", () => {
    const m = mapper()
    m.map({
      sessionUpdate: "tool_call",
      toolCallId: "t1",
      title: "Write new.txt",
      kind: "edit",
      status: "pending",
      content: [{ type: "diff", path: "/work/project/new.txt", oldText: "", newText: "hi\n" }]
    })
    expect(m.proposedDiff("t1")).toBe("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,1 @@\n+hi\n")
    const done = m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed" })
    expect(done[1]).toMatchObject({ type: "file_change", path: "new.txt", action: "create" })
  })

  it("one edit is one file_change: a write through fs/* and the call's diff of the same result count once", () => {
    const m = mapper()
    const diff = { type: "diff", path: "/work/project/a.txt", oldText: "one\n", newText: "1\n" }
    // Gemini CLI: the write first, then the completed call carrying the diff.
    expect(m.claimEdit("/work/project/a.txt", "1\n")).toBe(true)
    m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", title: "a.txt", kind: "edit", content: [diff] })
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed", content: [diff] }).map((e) => e.type))
      .toEqual(["tool_call_end"])
    // The other order: the call completes first, the write is then no news.
    m.map({ sessionUpdate: "tool_call", toolCallId: "t2", title: "b", kind: "edit", status: "in_progress" })
    const b = { type: "diff", path: "b.txt", oldText: null, newText: "b\n" }
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t2", status: "completed", content: [b] }).map((e) => e.type))
      .toEqual(["tool_call_end", "file_change"])
    expect(m.claimEdit("/work/project/b.txt", "b\n")).toBe(false)
    // Another result of the same file is another edit; so is the same result written again later.
    expect(m.claimEdit("/work/project/a.txt", "2\n")).toBe(true)
    expect(m.claimEdit("/work/project/b.txt", "b\n")).toBe(true)
  })

  it("edits are matched within the turn: after newTurn, a diff of an earlier write is reported", () => {
    const m = mapper()
    expect(m.claimEdit("/work/project/a.txt", "1\n")).toBe(true)
    m.newTurn()
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "a", kind: "edit", status: "in_progress" })
    const diff = { type: "diff", path: "/work/project/a.txt", oldText: "one\n", newText: "1\n" }
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed", content: [diff] }).map((e) => e.type))
      .toEqual(["tool_call_end", "file_change"])
  })

  it("terminal content puts the terminal's output into the call's output", () => {
    const m = mapper({ term1: "$ ls\na b\n" })
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "ls", kind: "execute", status: "in_progress" })
    m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", content: [{ type: "terminal", terminalId: "term1" }] })
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed" })).toEqual([
      { type: "tool_call_end", toolCallId: "t1", output: "$ ls\na b\n" }
    ])
  })

  it("raw output is the output when there is no content", () => {
    const m = mapper()
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "x", status: "in_progress" })
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", status: "completed", rawOutput: { ok: 1 } })).toEqual([
      { type: "tool_call_end", toolCallId: "t1", output: "{\"ok\":1}" }
    ])
  })

  it("a late update after the end sets fields but never the status, and never ends it twice", () => {
    const m = mapper()
    m.map({ sessionUpdate: "tool_call", toolCallId: "t1", title: "x", status: "completed" })
    expect(m.map({ sessionUpdate: "tool_call_update", toolCallId: "t1", title: "y", status: "completed" })).toEqual([
      { type: "tool_call_update", toolCallId: "t1", title: "y" }
    ])
  })

  it("an update for a call never announced starts it", () => {
    const events = mapper().map({ sessionUpdate: "tool_call_update", toolCallId: "t9", title: "late", status: "in_progress" })
    expect(events).toEqual([{ type: "tool_call_start", toolCallId: "t9", name: "late", title: "late" }])
  })
})

describe("plans, agent, usage and the rest", () => {
  it("a plan keeps priorities", () => {
    expect(mapper().map({
      sessionUpdate: "plan",
      entries: [{ content: "a", priority: "high", status: "in_progress" }, { content: "b", priority: "low", status: "pending" }]
    })).toEqual([{
      type: "plan",
      entries: [{ content: "a", priority: "high", status: "in_progress" }, { content: "b", priority: "low", status: "pending" }]
    }])
  })

  it("available commands and the current mode go to the agent artifact", () => {
    const m = mapper()
    expect(m.map({
      sessionUpdate: "available_commands_update",
      availableCommands: [{ name: "init", description: "Create AGENTS.md", input: null }, { name: "compact" }]
    })).toEqual([{ type: "agent", commands: [{ name: "init", description: "Create AGENTS.md" }, { name: "compact" }] }])
    expect(m.map({ sessionUpdate: "current_mode_update", currentModeId: "plan" })).toEqual([{ type: "agent", currentModeId: "plan" }])
  })

  it("usage_update: context, and the cumulative cost as deltas that never count twice", () => {
    const m = mapper()
    expect(m.map({ sessionUpdate: "usage_update", used: 1000, size: 200000, cost: { amount: 0.1, currency: "USD" } })).toEqual([
      { type: "context", used: 1000, size: 200000 },
      { type: "usage", inputTokens: 0, outputTokens: 0, costUsd: 0.1 }
    ])
    expect(m.map({ sessionUpdate: "usage_update", used: 1500, size: 200000, cost: { amount: 0.3, currency: "USD" } })).toEqual([
      { type: "context", used: 1500, size: 200000 },
      { type: "usage", inputTokens: 0, outputTokens: 0, costUsd: 0.2 }
    ])
    // The same total again adds nothing.
    expect(m.map({ sessionUpdate: "usage_update", used: 1500, size: 200000, cost: { amount: 0.3, currency: "USD" } })).toEqual([
      { type: "context", used: 1500, size: 200000 }
    ])
  })

  it("a usage_update with used: null (claude-agent-acp) is not lost", () => {
    const update = { sessionUpdate: "usage_update", used: null, size: 200000 }
    expect(mapper().map(update)).toEqual([{ type: "custom", name: "acp.usage_update", data: update }])
  })

  it("unknown and future variants are passed on whole as custom acp.<variant>", () => {
    const m = mapper()
    for (const update of [
      { sessionUpdate: "session_info_update", title: null },
      { sessionUpdate: "config_option_update", configOptions: [] },
      { sessionUpdate: "something_new", x: 1 }
    ]) {
      expect(m.map(update)).toEqual([{ type: "custom", name: `acp.${update.sessionUpdate}`, data: update }])
    }
    expect(m.map("garbage")).toEqual([{ type: "custom", name: "acp.unknown", data: "garbage" }])
  })

  it("session_info_update with a title is the session's summary", () => {
    expect(mapper().map({ sessionUpdate: "session_info_update", title: "Fixing the build", updatedAt: "2026-12-08T02:00:00Z" }))
      .toEqual([{ type: "summary", text: "Fixing the build" }])
    // PostgreSQL text cannot hold NUL: the server would refuse the summary.
    expect(mapper().map({ sessionUpdate: "session_info_update", title: "a\u0000b" })).toEqual([{ type: "summary", text: "ab" }])
  })

  it("displayPath is relative inside the working directory and absolute outside", () => {
    expect(displayPath("/work/project", "/work/project/src/a.ts")).toBe("src/a.ts")
    expect(displayPath("/work/project", "/work/other/a.ts")).toBe("/work/other/a.ts")
    expect(displayPath("/work/project", "/work/project-2/a.ts")).toBe("/work/project-2/a.ts")
  })
})
