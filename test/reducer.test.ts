/**
 * The Reducer: unit tests per event type (docs/protocol.md, "Events"), batches,
 * fromArtifacts, and properties that tie the reducer's changes to what both
 * stores hold (a client fold of the live changes equals the stored artifacts,
 * also after a resume).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import type * as Layer from "effect/Layer"
import { type Artifact, type ArtifactChange, applyChange, type CommittedChange } from "../src/Domain/Artifact.js"
import { InvalidInput, PermissionConflict } from "../src/Domain/Errors.js"
import { newSession, noUsage, type SessionStatus } from "../src/Domain/Session.js"
import { completeReply, follow, fromArtifacts, initial, type Input, reduce, type Reduction, type ReducerState, turnOf } from "../src/Reducer.js"
import { layerMemory, SessionStore } from "../src/SessionStore.js"
import * as Sqlite from "../src/SessionStore/Sqlite.js"

// ---------------------------------------------------------------------------
// helpers

const NOW = 1_764_000_000_000
const live = { status: "live", usage: noUsage } as const

const ok = (r: Either.Either<Reduction, InvalidInput | PermissionConflict>): Reduction => {
  if (Either.isLeft(r)) throw new Error(`expected the reduction to succeed, got ${r.left._tag}: ${r.left.message}`)
  return r.right
}

const fail = (r: Either.Either<Reduction, InvalidInput | PermissionConflict>): InvalidInput | PermissionConflict => {
  if (Either.isRight(r)) throw new Error(`expected the reduction to fail, got ${JSON.stringify(r.right.changes)}`)
  return r.left
}

const run = (
  inputs: ReadonlyArray<Input>,
  options: { readonly state?: ReducerState; readonly status?: SessionStatus; readonly now?: number } = {}
) => reduce(options.state ?? initial, { status: options.status ?? "live", usage: noUsage }, inputs, options.now ?? NOW)

const seqOf = (c: ArtifactChange) => c._tag === "created" ? c.artifact.seq : c.seq

/** What every client does with live changes. */
const fold = (changes: ReadonlyArray<ArtifactChange>, into: Map<number, Artifact> = new Map()) => {
  for (const c of changes) into.set(seqOf(c), applyChange(into.get(seqOf(c)), c))
  return into
}
const sorted = (m: Map<number, Artifact>) => [...m.values()].sort((a, b) => a.seq - b.seq)

/** Reduce inputs one reduction per array element, threading state and status; every step must succeed. */
const chain = (steps: ReadonlyArray<ReadonlyArray<Input>>, status: SessionStatus = "live") => {
  let state = initial
  let current = status
  let usage = noUsage
  const all: Array<ArtifactChange> = []
  let now = NOW
  for (const inputs of steps) {
    const r = ok(reduce(state, { status: current, usage }, inputs, now++))
    state = r.state
    current = r.session.status ?? current
    usage = r.session.usage ?? usage
    all.push(...r.changes)
  }
  return { state, status: current, changes: all, artifacts: sorted(fold(all)) }
}

const created = (seq: number, kind: string, fields: Record<string, unknown>, at = NOW) => ({
  _tag: "created",
  artifact: { seq, kind, ...fields, createdAt: at, updatedAt: at }
})
const appended = (seq: number, field: string, text: string, at = NOW) => ({ _tag: "updated", seq, field, append: text, at })
const setTo = (seq: number, field: string, value: unknown, at = NOW) => ({ _tag: "updated", seq, field, set: value, at })

// ---------------------------------------------------------------------------
// unit tests

describe("Reducer: deltas", () => {
  it("text_delta creates a text artifact and appends to it while it is open", () => {
    const r = ok(run([{ type: "text_delta", delta: "Hel" }, { type: "text_delta", delta: "lo" }]))
    expect(r.changes).toEqual([created(1, "text", { text: "Hel" }), appended(1, "text", "lo")])
    expect(r.state.nextSeq).toBe(2)
    expect(r.session).toEqual({})
  })

  it("the open text artifact stays open across separate reductions (ingests)", () => {
    const first = ok(run([{ type: "text_delta", delta: "Hel" }]))
    const second = ok(run([{ type: "text_delta", delta: "lo" }], { state: first.state, now: NOW + 5 }))
    expect(second.changes).toEqual([appended(1, "text", "lo", NOW + 5)])
  })

  it("reasoning_delta does the same for a reasoning artifact", () => {
    const r = ok(run([{ type: "reasoning_delta", delta: "hmm" }, { type: "reasoning_delta", delta: "!" }]))
    expect(r.changes).toEqual([created(1, "reasoning", { text: "hmm" }), appended(1, "text", "!")])
  })

  it.each([
    { type: "turn_start" },
    { type: "turn_end" },
    { type: "plan", entries: [] },
    { type: "error", message: "x" },
    { type: "file_change", path: "a", action: "create" },
    { type: "tool_call_start", toolCallId: "t1", name: "bash" },
    { type: "permission_request", requestId: "r1", title: "t" },
    { type: "reasoning_delta", delta: "r" },
    { type: "user_message", text: "u" },
    { type: "prompt", text: "u" }
  ] as ReadonlyArray<Input>)("an event of the transcript's flow ($type) closes the open text artifact", (other) => {
    const r = ok(run([{ type: "text_delta", delta: "a" }, other, { type: "text_delta", delta: "b" }]))
    const texts = sorted(fold(r.changes)).filter((a) => a.kind === "text")
    expect(texts.map((a) => a.text)).toEqual(["a", "b"])
  })

  // Codex and Qwen send their command list mid-reply, with no messageId: one reply stays one artifact (issue 21).
  it.each([
    { type: "heartbeat" },
    { type: "summary", text: "s" },
    { type: "usage", inputTokens: 1, outputTokens: 1 },
    { type: "custom", name: "n", data: 1 },
    { type: "context", used: 1, size: 2 },
    { type: "agent", name: "a" },
    { type: "agent", commands: [{ name: "init" }] }
  ] as ReadonlyArray<Input>)("metadata ($type) does not end the open text artifact", (other) => {
    const r = ok(run([{ type: "text_delta", delta: "Hello from the " }, other, { type: "text_delta", delta: "fake model!" }]))
    const texts = sorted(fold(r.changes)).filter((a) => a.kind === "text")
    expect(texts.map((a) => a.text)).toEqual(["Hello from the fake model!"])
  })

  it("a plan's update does not end the open text artifact, its first appearance does", () => {
    const r = ok(run([
      { type: "plan", entries: [] },
      { type: "text_delta", delta: "a" },
      { type: "plan", entries: [{ content: "x", status: "pending" }] },
      { type: "text_delta", delta: "b" }
    ]))
    expect(sorted(fold(r.changes)).filter((a) => a.kind === "text").map((a) => a.text)).toEqual(["ab"])
  })

  it("a closing event in one reduction closes the open artifact for the next reduction", () => {
    const first = ok(run([{ type: "text_delta", delta: "a" }]))
    const hb = ok(run([{ type: "heartbeat" }], { state: first.state }))
    expect(hb.changes).toEqual([])
    const fc = ok(run([{ type: "file_change", path: "a", action: "create" }], { state: hb.state }))
    const next = ok(run([{ type: "text_delta", delta: "b" }], { state: fc.state }))
    expect(next.changes).toEqual([created(3, "text", { text: "b" })])
  })

  it("text after reasoning (and reasoning after text) starts a new artifact", () => {
    const r = chain([[
      { type: "reasoning_delta", delta: "think" },
      { type: "text_delta", delta: "say" },
      { type: "reasoning_delta", delta: "more" }
    ]])
    expect(r.artifacts.map((a) => [a.seq, a.kind, a.text])).toEqual([
      [1, "reasoning", "think"],
      [2, "text", "say"],
      [3, "reasoning", "more"]
    ])
  })

  it("an empty delta appends nothing", () => {
    const r = ok(run([{ type: "text_delta", delta: "a" }, { type: "text_delta", delta: "" }]))
    expect(r.changes).toEqual([created(1, "text", { text: "a" })])
  })

  it("partId routes deltas to the artifact with that partId, per kind", () => {
    const r = chain([
      [{ type: "text_delta", delta: "A1", partId: "a" }],
      [{ type: "text_delta", delta: "B1", partId: "b" }],
      [{ type: "reasoning_delta", delta: "R1", partId: "a" }],
      [{ type: "heartbeat" }],
      [{ type: "text_delta", delta: "A2", partId: "a" }],
      [{ type: "reasoning_delta", delta: "R2", partId: "a" }],
      [{ type: "text_delta", delta: "B2", partId: "b" }]
    ])
    expect(r.artifacts.map((a) => [a.seq, a.kind, a.partId, a.text])).toEqual([
      [1, "text", "a", "A1A2"],
      [2, "text", "b", "B1B2"],
      [3, "reasoning", "a", "R1R2"]
    ])
  })

  it("a keyed delta never extends the open (unkeyed) artifact, and vice versa", () => {
    const r = chain([[
      { type: "text_delta", delta: "open" },
      { type: "text_delta", delta: "keyed", partId: "p" }
    ], [{ type: "text_delta", delta: "+k", partId: "p" }]])
    expect(r.artifacts.map((a) => [a.seq, a.partId, a.text])).toEqual([[1, undefined, "open"], [2, "p", "keyed+k"]])
  })

  // docs/protocol.md: "A delta artifact without partId stays open until an event of any other type arrives."
  // A keyed text_delta is of the same type, so the open text artifact should survive it.
  it("a keyed text_delta (same type) does not close the open text artifact", () => {
    const r = ok(run([
      { type: "text_delta", delta: "Hel" },
      { type: "text_delta", delta: "part", partId: "p" },
      { type: "text_delta", delta: "lo" }
    ]))
    const texts = sorted(fold(r.changes))
    expect(texts.map((a) => [a.seq, a.text])).toEqual([[1, "Hello"], [2, "part"]])
  })
})

describe("Reducer: tool calls", () => {
  it("tool_call_start creates a running tool_call; input deltas append to input", () => {
    const r = ok(run([
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "{\"cmd\":" },
      { type: "tool_call_input_delta", toolCallId: "t1", delta: "\"ls\"}" }
    ]))
    expect(r.changes).toEqual([
      created(1, "tool_call", {
        toolCallId: "t1",
        name: "bash",
        title: null,
        toolKind: null,
        locations: null,
        input: "{\"cmd\":",
        output: null,
        status: "running"
      }),
      appended(1, "input", "\"ls\"}")
    ])
  })

  it("tool_call_start without input starts with an empty input", () => {
    const r = ok(run([{ type: "tool_call_start", toolCallId: "t1", name: "bash" }]))
    expect(r.changes).toEqual([
      created(1, "tool_call", {
        toolCallId: "t1",
        name: "bash",
        title: null,
        toolKind: null,
        locations: null,
        input: "",
        output: null,
        status: "running"
      })
    ])
  })

  it("tool_call_end sets output and status done", () => {
    const start = ok(run([{ type: "tool_call_start", toolCallId: "t1", name: "bash" }]))
    const end = ok(run([{ type: "tool_call_end", toolCallId: "t1", output: "file.txt" }], { state: start.state }))
    expect(end.changes).toEqual([setTo(1, "output", "file.txt"), setTo(1, "status", "done")])
  })

  it("tool_call_end with isError ends in status error; isError false is done", () => {
    const r = chain([[
      { type: "tool_call_start", toolCallId: "t1", name: "a" },
      { type: "tool_call_start", toolCallId: "t2", name: "b" },
      { type: "tool_call_end", toolCallId: "t1", isError: true, output: "boom" },
      { type: "tool_call_end", toolCallId: "t2", isError: false }
    ]])
    expect(r.artifacts.map((a) => [a.toolCallId, a.status, a.output])).toEqual([["t1", "error", "boom"], [
      "t2",
      "done",
      null
    ]])
  })

  it.each([
    { type: "tool_call_input_delta", toolCallId: "nope", delta: "x" },
    { type: "tool_call_end", toolCallId: "nope" }
  ] as ReadonlyArray<Input>)("$type for an unknown toolCallId is InvalidInput naming toolCallId", (input) => {
    const e = fail(run([input]))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toMatch(/^toolCallId: /)
    expect(e.message).toContain("nope")
  })

  it("in a batch, the error names the index of the offending event", () => {
    const e = fail(run([{ type: "heartbeat" }, { type: "text_delta", delta: "x" }, {
      type: "tool_call_end",
      toolCallId: "ghost"
    }]))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toMatch(/^\[2\]\.toolCallId: /)
    expect(e.message).toContain("ghost")
  })

  it("a second tool_call_start for the same toolCallId is InvalidInput", () => {
    const start = ok(run([{ type: "tool_call_start", toolCallId: "t1", name: "bash" }]))
    const e = fail(run([{ type: "tool_call_start", toolCallId: "t1", name: "bash" }], { state: start.state }))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toContain("toolCallId")
  })
})

const options = [
  { optionId: "once", name: "Allow once", kind: "allow_once" },
  { optionId: "always", name: "Always", kind: "allow_always" },
  { optionId: "no-forever", name: "Never", kind: "reject_always" },
  { optionId: "no", name: "Reject", kind: "reject_once" }
] as const

describe("Reducer: permissions", () => {
  const requested = () => ok(run([{ type: "permission_request", requestId: "r1", toolCallId: "t9", title: "run rm?" }]))

  it("permission_request creates a pending permission", () => {
    expect(requested().changes).toEqual([
      created(1, "permission", {
        requestId: "r1",
        toolCallId: "t9",
        title: "run rm?",
        options: null,
        diff: null,
        decision: null,
        optionId: null
      })
    ])
    const withOptions = ok(run([{ type: "permission_request", requestId: "r2", title: "t", options, diff: "--- a/x\n+++ b/x\n" }]))
    // Sorted by kind: allow once, allow always, reject once, reject always (issue 21).
    const byKind = [options[0], options[1], options[3], options[2]]
    expect(withOptions.changes).toEqual([
      created(1, "permission", { requestId: "r2", toolCallId: null, title: "t", options: byKind, diff: "--- a/x\n+++ b/x\n", decision: null, optionId: null })
    ])
  })

  it("options come in the same order for every agent: Claude's \"Always Allow\" first is moved after allow once", () => {
    const claude = [
      { optionId: "allow_always", name: "Always Allow", kind: "allow_always" },
      { optionId: "allow", name: "Allow", kind: "allow_once" },
      { optionId: "reject", name: "Reject", kind: "reject_once" }
    ] as const
    const r = ok(run([{ type: "permission_request", requestId: "r", title: "t", options: claude }]))
    const [a] = fold(r.changes).values()
    expect((a!.options as ReadonlyArray<{ optionId: string }>).map((o) => o.optionId)).toEqual(["allow", "allow_always", "reject"])
  })

  it("the first decision sets decision; a second one is PermissionConflict answered", () => {
    const first = ok(
      run([{ type: "permission_decision", requestId: "r1", decision: "allow_once" }], { state: requested().state })
    )
    expect(first.changes).toEqual([setTo(1, "decision", "allow_once")])
    const second = fail(run([{ type: "permission_decision", requestId: "r1", decision: "reject" }], { state: first.state }))
    expect(second).toEqual(new PermissionConflict({ requestId: "r1", reason: "answered" }))
    // The earlier state is unchanged: it can still be answered once.
    expect(ok(run([{ type: "permission_decision", requestId: "r1", decision: "reject" }], { state: requested().state })).changes)
      .toEqual([setTo(1, "decision", "reject")])
  })

  it("a decision for an unknown request is PermissionConflict unknown", () => {
    const e = fail(run([{ type: "permission_decision", requestId: "zz", decision: "allow_once" }]))
    expect(e).toEqual(new PermissionConflict({ requestId: "zz", reason: "unknown" }))
  })
})

describe("Reducer: ACP extensions (issue 13)", () => {
  const started = () =>
    ok(run([{
      type: "tool_call_start",
      toolCallId: "t1",
      name: "edit",
      title: "Edit src/a.ts",
      kind: "edit",
      locations: [{ path: "src/a.ts", line: 3 }],
      input: "{\"path\":"
    }]))

  it("tool_call_start records title, toolKind and locations", () => {
    expect(started().changes).toEqual([
      created(1, "tool_call", {
        toolCallId: "t1",
        name: "edit",
        title: "Edit src/a.ts",
        toolKind: "edit",
        locations: [{ path: "src/a.ts", line: 3 }],
        input: "{\"path\":",
        output: null,
        status: "running"
      })
    ])
  })

  it("tool_call_update sets each field it carries, input included (a set, not an append)", () => {
    const r = ok(run([{
      type: "tool_call_update",
      toolCallId: "t1",
      title: "Edit src/b.ts",
      kind: "move",
      status: "pending",
      input: "{}",
      output: "so far",
      locations: [{ path: "src/b.ts" }]
    }], { state: started().state }))
    expect(r.changes).toEqual([
      setTo(1, "title", "Edit src/b.ts"),
      setTo(1, "toolKind", "move"),
      setTo(1, "locations", [{ path: "src/b.ts" }]),
      setTo(1, "input", "{}"),
      setTo(1, "output", "so far"),
      setTo(1, "status", "pending")
    ])
    expect(ok(run([{ type: "tool_call_update", toolCallId: "t1" }], { state: started().state })).changes).toEqual([])
  })

  it("a pending tool call is unfinished: a cancelled turn ends it, tool_call_end ends it", () => {
    const pending = ok(run([{ type: "tool_call_update", toolCallId: "t1", status: "pending" }], { state: started().state }))
    expect(ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: pending.state })).changes).toEqual([
      setTo(1, "status", "cancelled"),
      created(2, "turn_stopped", { stopReason: "cancelled" })
    ])
    expect(ok(run([{ type: "tool_call_end", toolCallId: "t1" }], { state: pending.state })).changes).toEqual([
      setTo(1, "status", "done")
    ])
  })

  it("a late tool_call_update of an ended call sets its fields but never re-opens it", () => {
    const ended = ok(run([{ type: "tool_call_end", toolCallId: "t1", output: "ok" }], { state: started().state }))
    const late = ok(run([{ type: "tool_call_update", toolCallId: "t1", title: "Edited", status: "running" }], { state: ended.state }))
    expect(late.changes).toEqual([setTo(1, "title", "Edited")])
    // still ended: a cancelled turn leaves it alone (and only says the turn stopped)
    expect(ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: late.state })).changes).toEqual([created(2, "turn_stopped", { stopReason: "cancelled" })])
  })

  it("tool_call_update of an unknown toolCallId is InvalidInput naming toolCallId", () => {
    const e = fail(run([{ type: "tool_call_update", toolCallId: "ghost", title: "x" }]))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toBe("toolCallId: unknown tool call ghost")
  })

  const asked = () => ok(run([{ type: "permission_request", requestId: "r1", title: "Write?", options }]))

  it("a reply by optionId takes its decision from the option's kind and records both", () => {
    for (const [optionId, decision] of [["once", "allow_once"], ["always", "allow_always"], ["no", "reject"], ["no-forever", "reject"]]) {
      const r = ok(run([{ type: "permission_decision", requestId: "r1", optionId }], { state: asked().state }))
      expect(r.changes).toEqual([setTo(1, "decision", decision), setTo(1, "optionId", optionId)])
    }
  })

  it("a reply by decision picks the first option of a matching kind (reject: reject_once first)", () => {
    const by = (decision: "allow_once" | "allow_always" | "reject") =>
      ok(run([{ type: "permission_decision", requestId: "r1", decision }], { state: asked().state })).changes
    expect(by("allow_once")).toEqual([setTo(1, "decision", "allow_once"), setTo(1, "optionId", "once")])
    expect(by("allow_always")).toEqual([setTo(1, "decision", "allow_always"), setTo(1, "optionId", "always")])
    expect(by("reject")).toEqual([setTo(1, "decision", "reject"), setTo(1, "optionId", "no")])
    // no option of that kind: the decision stands alone
    const rejectOnly = ok(run([{
      type: "permission_request",
      requestId: "r2",
      title: "t",
      options: [{ optionId: "never", name: "Never", kind: "reject_always" }]
    }]))
    expect(ok(run([{ type: "permission_decision", requestId: "r2", decision: "allow_once" }], { state: rejectOnly.state })).changes)
      .toEqual([setTo(1, "decision", "allow_once")])
    expect(ok(run([{ type: "permission_decision", requestId: "r2", decision: "reject" }], { state: rejectOnly.state })).changes)
      .toEqual([setTo(1, "decision", "reject"), setTo(1, "optionId", "never")])
  })

  it("completeReply completes a reply the same way, optionId null when nothing matches", () => {
    expect(completeReply(asked().state, { requestId: "r1", decision: "reject" })).toEqual(
      Either.right({ decision: "reject", optionId: "no" })
    )
    const bare = ok(run([{ type: "permission_request", requestId: "r1", title: "t" }]))
    expect(completeReply(bare.state, { requestId: "r1", decision: "allow_always" })).toEqual(
      Either.right({ decision: "allow_always", optionId: null })
    )
    expect(completeReply(bare.state, { requestId: "zz", decision: "reject" })).toEqual(
      Either.left(new PermissionConflict({ requestId: "zz", reason: "unknown" }))
    )
  })

  it("an optionId that is not one of the request's options, or that contradicts the decision, is InvalidInput", () => {
    const e = fail(run([{ type: "permission_decision", requestId: "r1", optionId: "maybe" }], { state: asked().state }))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toMatch(/^optionId: "maybe" is not an option of permission request r1/)
    const bare = ok(run([{ type: "permission_request", requestId: "r1", title: "t" }]))
    expect(fail(run([{ type: "permission_decision", requestId: "r1", optionId: "once" }], { state: bare.state })).message)
      .toMatch(/^optionId: "once" is not an option of permission request r1 \(it offers none\)/)
    const contradicted = fail(
      run([{ type: "permission_decision", requestId: "r1", optionId: "no", decision: "allow_once" }], { state: asked().state })
    )
    expect(contradicted).toBeInstanceOf(InvalidInput)
    expect(contradicted.message).toMatch(/^decision: /)
    // neither: invalid too
    expect(fail(run([{ type: "permission_decision", requestId: "r1" }], { state: asked().state }))).toBeInstanceOf(InvalidInput)
    // and the request can still be answered
    expect(ok(run([{ type: "permission_decision", requestId: "r1", optionId: "no", decision: "reject" }], { state: asked().state }))
      .changes).toEqual([setTo(1, "decision", "reject"), setTo(1, "optionId", "no")])
  })

  it("a cancelled turn sets decision cancelled on unanswered permissions, and on nothing else", () => {
    const two = ok(run([
      { type: "permission_request", requestId: "r1", title: "a", options },
      { type: "permission_request", requestId: "r2", title: "b" },
      { type: "permission_decision", requestId: "r2", decision: "allow_once" },
      { type: "permission_request", requestId: "r3", title: "c" }
    ]))
    const end = ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: two.state }))
    expect(end.changes).toHaveLength(3)
    expect(end.changes).toEqual(
      expect.arrayContaining([setTo(1, "decision", "cancelled"), setTo(3, "decision", "cancelled"), created(4, "turn_stopped", { stopReason: "cancelled" })])
    )
    // answered now: a late reply conflicts
    expect(fail(run([{ type: "permission_decision", requestId: "r1", optionId: "once" }], { state: end.state }))).toEqual(
      new PermissionConflict({ requestId: "r1", reason: "answered" })
    )
  })

  it.each(["end_turn", "max_tokens", "max_turn_requests", "refusal", "error", undefined] as const)(
    "a turn ended with stopReason %s cancels its unanswered permissions too (nobody reads the answer now)",
    (stopReason) => {
      const two = ok(run([
        { type: "tool_call_start", toolCallId: "t1", name: "a" },
        { type: "permission_request", requestId: "r1", title: "a", options },
        { type: "permission_request", requestId: "r2", title: "b" },
        { type: "permission_decision", requestId: "r2", decision: "allow_once" }
      ]))
      expect(two.state.pending).toBe(1)
      const end = ok(run([stopReason === undefined ? { type: "turn_end" } : { type: "turn_end", stopReason }], { state: two.state }))
      // Only the unanswered one; the running tool call stays running (it may still end).
      expect(end.changes).toEqual([setTo(2, "decision", "cancelled")])
      expect(end.state.pending).toBe(0)
      expect(fail(run([{ type: "permission_decision", requestId: "r1", optionId: "once" }], { state: end.state }))).toEqual(
        new PermissionConflict({ requestId: "r1", reason: "answered" })
      )
    }
  )

  it("context sets the turn's usage context, creating the usage artifact when the turn has none", () => {
    const r = chain([
      [{ type: "context", used: 10, size: 200 }],
      [{ type: "usage", inputTokens: 3, outputTokens: 4, costUsd: 0.5 }, { type: "context", used: 20, size: 200 }],
      [{ type: "turn_start" }, { type: "usage", inputTokens: 1, outputTokens: 1 }, { type: "context", used: 5, size: 200 }]
    ])
    expect(r.artifacts.map((a) => [a.seq, a.kind, a.inputTokens, a.outputTokens, a.costUsd, a.context])).toEqual([
      [1, "usage", 3, 4, 0.5, { used: 20, size: 200 }],
      [2, "usage", 1, 1, null, { used: 5, size: 200 }]
    ])
  })

  it("the first agent event creates the session's agent artifact; later ones set what they carry", () => {
    const modes = [{ id: "ask", name: "Ask" }, { id: "code", name: "Code", description: "writes files" }]
    const first = ok(run([{ type: "agent", name: "claude", modes, currentModeId: "ask" }]))
    expect(first.changes).toEqual([
      created(1, "agent", { name: "claude", version: null, commands: [], modes, currentModeId: "ask" })
    ])
    const later = ok(run([
      { type: "text_delta", delta: "x" },
      { type: "agent", currentModeId: "code", commands: [{ name: "init" }] },
      { type: "agent", version: "1.2" }
    ], { state: first.state }))
    expect(later.changes).toEqual([
      created(2, "text", { text: "x" }),
      setTo(1, "commands", [{ name: "init" }]),
      setTo(1, "currentModeId", "code"),
      setTo(1, "version", "1.2")
    ])
    // rebuilt from its artifacts, the state still knows the agent artifact
    const rebuilt = fromArtifacts(chain([[{ type: "agent", name: "a" }], [{ type: "error", message: "e" }]]).artifacts)
    expect(ok(run([{ type: "agent", currentModeId: null }], { state: rebuilt })).changes).toEqual([setTo(1, "currentModeId", null)])
  })

  it("fromArtifacts learns the options of pending permissions, and the answered and cancelled ones", () => {
    const history = chain([[
      { type: "permission_request", requestId: "r1", title: "a", options },
      { type: "permission_request", requestId: "r2", title: "b", options },
      { type: "permission_decision", requestId: "r2", optionId: "always" }
    ], [{ type: "permission_request", requestId: "r3", title: "c" }, { type: "turn_end", stopReason: "cancelled" }], [
      { type: "permission_request", requestId: "r4", title: "d", options }
    ]])
    const state = fromArtifacts(history.artifacts)
    // seq 4 says the cancelled turn stopped
    expect(ok(run([{ type: "permission_decision", requestId: "r4", optionId: "no-forever" }], { state })).changes).toEqual([
      setTo(5, "decision", "reject"),
      setTo(5, "optionId", "no-forever")
    ])
    for (const requestId of ["r1", "r2", "r3"]) {
      expect(fail(run([{ type: "permission_decision", requestId, decision: "reject" }], { state }))).toEqual(
        new PermissionConflict({ requestId, reason: "answered" })
      )
    }
    // Stored before options were typed: such options offer nothing, and a bare decision still works.
    const old = fromArtifacts([
      { seq: 1, kind: "permission", requestId: "old", toolCallId: null, title: "t", options: ["y", "n"], decision: null, createdAt: NOW, updatedAt: NOW }
    ])
    expect(ok(run([{ type: "permission_decision", requestId: "old", decision: "allow_once" }], { state: old })).changes).toEqual([
      setTo(1, "decision", "allow_once")
    ])
  })
})

describe("Reducer: plan, file_change, error, custom, user_message", () => {
  it("plan creates the turn's plan, replaces it within the turn, and a new turn gets a new one", () => {
    const e1 = [{ content: "a", status: "pending" as const }]
    const e2 = [{ content: "a", status: "completed" as const }, { content: "b", status: "in_progress" as const }]
    const turn1 = ok(run([{ type: "plan", entries: e1 }, { type: "text_delta", delta: "x" }, { type: "plan", entries: e2 }]))
    expect(turn1.changes).toEqual([
      created(1, "plan", { entries: e1 }),
      created(2, "text", { text: "x" }),
      setTo(1, "entries", e2)
    ])
    const ended = ok(run([{ type: "turn_end" }, { type: "plan", entries: e1 }], { state: turn1.state }))
    expect(ended.changes).toEqual([created(3, "plan", { entries: e1 })])
    const started = ok(run([{ type: "turn_start" }, { type: "plan", entries: e2 }], { state: ended.state }))
    expect(started.changes).toEqual([created(4, "plan", { entries: e2 })])
  })

  it("file_change creates a file_change artifact", () => {
    const r = ok(run([
      { type: "file_change", path: "src/a.ts", action: "modify", diff: "@@ -1 +1 @@" },
      { type: "file_change", path: "b", action: "delete" }
    ]))
    expect(r.changes).toEqual([
      created(1, "file_change", { path: "src/a.ts", action: "modify", diff: "@@ -1 +1 @@" }),
      created(2, "file_change", { path: "b", action: "delete", diff: null })
    ])
  })

  it("error creates an error artifact", () => {
    const r = ok(run([{ type: "error", message: "boom", code: 42 }, { type: "error", message: "bang" }]))
    expect(r.changes).toEqual([
      created(1, "error", { message: "boom", code: 42 }),
      created(2, "error", { message: "bang", code: null })
    ])
  })

  it("custom creates a custom artifact", () => {
    const r = ok(run([{ type: "custom", name: "ci", data: { ok: true } }, { type: "custom", name: "empty" }]))
    expect(r.changes).toEqual([
      created(1, "custom", { name: "ci", data: { ok: true } }),
      created(2, "custom", { name: "empty", data: null })
    ])
  })

  it("a prompt creates a user_message artifact and makes an idle session live", () => {
    const r = ok(run([{ type: "prompt", text: "fix it" }], { status: "idle" }))
    expect(r.changes).toEqual([created(1, "user_message", { text: "fix it" })])
    expect(r.session).toEqual({ status: "live" })
    expect(ok(run([{ type: "prompt", text: "x" }], { status: "live" })).session).toEqual({})
  })

  it("a user_message event from the sandbox (history replay) creates the same artifact, and leaves the status alone", () => {
    const r = ok(run([{ type: "user_message", text: "earlier" }], { status: "idle" }))
    expect(r.changes).toEqual([created(1, "user_message", { text: "earlier" })])
    expect(r.session).toEqual({})
  })
})

describe("Reducer: usage", () => {
  it("usage adds up within a turn; costUsd stays null when never given", () => {
    const r = chain([
      [{ type: "usage", inputTokens: 10, outputTokens: 5 }],
      [{ type: "usage", inputTokens: 1, outputTokens: 2 }, { type: "usage", inputTokens: 0, outputTokens: 3 }]
    ])
    expect(r.artifacts).toHaveLength(1)
    expect(r.artifacts[0]).toMatchObject({ kind: "usage", inputTokens: 11, outputTokens: 10, costUsd: null })
  })

  it("costUsd adds up once given, also when the first usage had none", () => {
    const r = chain([[
      { type: "usage", inputTokens: 1, outputTokens: 1 },
      { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.5 },
      { type: "usage", inputTokens: 1, outputTokens: 1 },
      { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.25 }
    ]])
    expect(r.artifacts).toEqual([
      expect.objectContaining({ seq: 1, kind: "usage", inputTokens: 4, outputTokens: 4, costUsd: 0.75 })
    ])
  })

  it("a new turn gets a new usage artifact", () => {
    const r = chain([
      [{ type: "usage", inputTokens: 1, outputTokens: 2, costUsd: 0.1 }],
      [{ type: "turn_end" }],
      [{ type: "usage", inputTokens: 3, outputTokens: 4 }]
    ])
    expect(r.artifacts.map((a) => [a.seq, a.inputTokens, a.outputTokens, a.costUsd])).toEqual([[1, 1, 2, 0.1], [
      2,
      3,
      4,
      null
    ]])
  })
})

describe("Reducer: session fields", () => {
  it("summary sets the session's summary and creates nothing", () => {
    const r = ok(run([{ type: "summary", text: "first" }, { type: "summary", text: "second" }]))
    expect(r.changes).toEqual([])
    expect(r.session).toEqual({ summary: "second" })
  })

  it("turn_start makes an idle session live, and leaves other statuses alone", () => {
    expect(ok(run([{ type: "turn_start" }], { status: "idle" })).session).toEqual({ status: "live" })
    expect(ok(run([{ type: "turn_start" }], { status: "live" })).session).toEqual({})
  })

  it("turn_end makes a live session idle", () => {
    expect(ok(run([{ type: "turn_end", stopReason: "end_turn" }], { status: "live" })).session).toEqual({
      status: "idle",
      lastStopReason: "end_turn"
    })
    expect(ok(run([{ type: "turn_end" }], { status: "idle" })).session).toEqual({ lastStopReason: null })
  })

  it("a whole turn inside one batch reports the final status", () => {
    expect(ok(run([{ type: "turn_start" }, { type: "turn_end" }], { status: "idle" })).session).toEqual({
      status: "idle",
      lastStopReason: null
    })
    expect(ok(run([{ type: "turn_end", stopReason: "error" }, { type: "turn_start" }], { status: "live" })).session).toEqual({
      status: "live",
      lastStopReason: "error"
    })
  })

  it("turn_end cancelled marks running tool calls cancelled, and only those", () => {
    const start = ok(run([
      { type: "tool_call_start", toolCallId: "t1", name: "a" },
      { type: "tool_call_start", toolCallId: "t2", name: "b" },
      { type: "tool_call_start", toolCallId: "t3", name: "c" },
      { type: "tool_call_end", toolCallId: "t2" }
    ]))
    const end = ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: start.state }))
    expect(end.changes).toHaveLength(3)
    expect(end.changes).toEqual(
      expect.arrayContaining([setTo(1, "status", "cancelled"), setTo(3, "status", "cancelled"), created(4, "turn_stopped", { stopReason: "cancelled" })])
    )
    expect(end.session).toEqual({ status: "idle", lastStopReason: "cancelled" })
    // They are no longer running: a second cancel changes nothing but says so.
    expect(ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: end.state })).changes).toEqual([created(5, "turn_stopped", { stopReason: "cancelled" })])
  })

  it.each(["end_turn", "max_tokens", "refusal", "error", undefined] as const)(
    "turn_end with stopReason %s leaves running tool calls running",
    (stopReason) => {
      const start = ok(run([{ type: "tool_call_start", toolCallId: "t1", name: "a" }]))
      const end = ok(run([stopReason === undefined ? { type: "turn_end" } : { type: "turn_end", stopReason }], {
        state: start.state
      }))
      expect(end.changes).toEqual([])
      // still running, so it can still end
      expect(ok(run([{ type: "tool_call_end", toolCallId: "t1" }], { state: end.state })).changes).toEqual([
        setTo(1, "status", "done")
      ])
    }
  )

  it("pendingPermissions counts unanswered requests: a request adds one, a decision or a cancelled turn removes it", () => {
    const asked = ok(run([
      { type: "permission_request", requestId: "r1", title: "a" },
      { type: "permission_request", requestId: "r2", title: "b" },
      { type: "permission_request", requestId: "r3", title: "c" }
    ]))
    expect(asked.session).toEqual({ pendingPermissions: 3 })
    const answered = ok(run([{ type: "permission_decision", requestId: "r2", decision: "reject" }], { state: asked.state }))
    expect(answered.session).toEqual({ pendingPermissions: 2 })
    // Unchanged count, nothing stated.
    expect(ok(run([{ type: "text_delta", delta: "x" }], { state: answered.state })).session).toEqual({})
    const cancelled = ok(run([{ type: "turn_end", stopReason: "cancelled" }], { state: answered.state }))
    expect(cancelled.session).toEqual({ status: "idle", lastStopReason: "cancelled", pendingPermissions: 0 })
    // Rebuilt from the artifacts, the count is the same.
    const artifacts = sorted(fold([...asked.changes, ...answered.changes]))
    expect(fromArtifacts(artifacts).pending).toBe(2)
  })

  it("usage sums tokens and cost over every turn, continuing from the record's totals; cost stays null until one is given", () => {
    const base = { inputTokens: 100, outputTokens: 10, costUsd: null }
    const first = ok(reduce(initial, { status: "live", usage: base }, [
      { type: "usage", inputTokens: 1, outputTokens: 2 },
      { type: "context", used: 5, size: 10 }
    ], NOW))
    expect(first.session).toEqual({ usage: { inputTokens: 101, outputTokens: 12, costUsd: null } })
    const second = ok(reduce(first.state, { status: "live", usage: first.session.usage! }, [
      { type: "usage", inputTokens: 3, outputTokens: 4, costUsd: 0.25 },
      { type: "turn_end" },
      { type: "usage", inputTokens: 5, outputTokens: 6, costUsd: 0.5 }
    ], NOW))
    expect(second.session.usage).toEqual({ inputTokens: 109, outputTokens: 22, costUsd: 0.75 })
    // A context report alone is not usage.
    expect(ok(run([{ type: "context", used: 1, size: 2 }])).session).toEqual({})
  })

  it("heartbeat changes nothing", () => {
    const r = ok(run([{ type: "heartbeat" }], { status: "idle" }))
    expect(r.changes).toEqual([])
    expect(r.session).toEqual({})
    expect(r.state.nextSeq).toBe(1)
  })
})

describe("Reducer: batches", () => {
  it("a batch is all or nothing and leaves the caller's state untouched", () => {
    const base = chain([[
      { type: "text_delta", delta: "open" },
      { type: "tool_call_start", toolCallId: "t1", name: "a" },
      { type: "permission_request", requestId: "r1", title: "t" },
      { type: "plan", entries: [] },
      { type: "usage", inputTokens: 1, outputTokens: 1 },
      { type: "text_delta", delta: "p", partId: "p" },
      { type: "text_delta", delta: "again" }
    ]])
    const probe: ReadonlyArray<Input> = [
      { type: "text_delta", delta: "more" },
      { type: "text_delta", delta: "p2", partId: "p" },
      { type: "text_delta", delta: "q", partId: "q" },
      { type: "tool_call_start", toolCallId: "t2", name: "b" },
      { type: "tool_call_end", toolCallId: "t1" },
      { type: "permission_decision", requestId: "r1", decision: "allow_once" },
      { type: "plan", entries: [{ content: "x", status: "pending" }] },
      { type: "usage", inputTokens: 2, outputTokens: 2 },
      { type: "turn_end", stopReason: "cancelled" }
    ]
    const before = ok(run(probe, { state: base.state }))

    const failing: ReadonlyArray<Input> = [...probe, { type: "tool_call_input_delta", toolCallId: "ghost", delta: "x" }]
    const e = fail(run(failing, { state: base.state }))
    expect(e).toBeInstanceOf(InvalidInput)
    expect(e.message).toMatch(/^\[9\]\.toolCallId: /)

    const conflicting: ReadonlyArray<Input> = [...probe, { type: "permission_decision", requestId: "r1", decision: "reject" }]
    expect(fail(run(conflicting, { state: base.state }))).toEqual(new PermissionConflict({ requestId: "r1", reason: "answered" }))

    const after = ok(run(probe, { state: base.state }))
    expect(after.changes).toEqual(before.changes)
    expect(after.session).toEqual(before.session)
    expect(after.state.nextSeq).toBe(before.state.nextSeq)
  })
})

describe("Reducer: fromArtifacts", () => {
  it("rebuilds partId, tool call and permission routing and the next seq", () => {
    const history = chain([[
      { type: "text_delta", delta: "A", partId: "a" },
      { type: "reasoning_delta", delta: "R", partId: "a" },
      { type: "tool_call_start", toolCallId: "run", name: "bash" },
      { type: "tool_call_start", toolCallId: "done", name: "bash" },
      { type: "tool_call_end", toolCallId: "done" },
      { type: "permission_request", requestId: "pending", title: "t" },
      { type: "permission_request", requestId: "answered", title: "t" },
      { type: "permission_decision", requestId: "answered", decision: "reject" },
      { type: "text_delta", delta: "open" }
    ]])
    const state = fromArtifacts(history.artifacts)
    expect(state.nextSeq).toBe(8)

    const later = NOW + 1000
    const r = ok(reduce(state, live, [
      { type: "text_delta", delta: "2", partId: "a" },
      { type: "reasoning_delta", delta: "2", partId: "a" },
      { type: "tool_call_input_delta", toolCallId: "run", delta: "i" },
      { type: "permission_decision", requestId: "pending", decision: "allow_once" },
      { type: "text_delta", delta: "new" },
      { type: "turn_end", stopReason: "cancelled" }
    ], later))
    expect(r.changes).toEqual([
      appended(1, "text", "2", later),
      appended(2, "text", "2", later),
      appended(3, "input", "i", later),
      setTo(5, "decision", "allow_once", later),
      // the open delta is not carried over a restart
      created(8, "text", { text: "new" }, later),
      // only the running tool call is cancelled
      setTo(3, "status", "cancelled", later),
      created(9, "turn_stopped", { stopReason: "cancelled" }, later)
    ])

    expect(fail(reduce(state, live, [{ type: "permission_decision", requestId: "answered", decision: "allow_once" }], later)))
      .toEqual(new PermissionConflict({ requestId: "answered", reason: "answered" }))
    expect(fail(reduce(state, live, [{ type: "tool_call_start", toolCallId: "done", name: "x" }], later)))
      .toBeInstanceOf(InvalidInput)
    expect(ok(reduce(state, live, [{ type: "tool_call_end", toolCallId: "done", isError: true }], later)).changes)
      .toEqual([setTo(4, "status", "error", later)])
  })

  it("of no artifacts is the initial state", () => {
    const state = fromArtifacts([])
    expect(state.nextSeq).toBe(1)
    expect(state.open).toBeNull()
  })
})

// ---------------------------------------------------------------------------
// properties

const toolIds = ["t1", "t2", "t3", "t4", "t5"]
const partIds = ["p1", "p2"]
const requestIds = ["r1", "r2", "r3"]
const optionIds = ["o1", "o2", "o3"]
/** Mostly known ids, sometimes one that was never started. */
const idFrom = (pool: ReadonlyArray<string>) =>
  fc.oneof({ weight: 19, arbitrary: fc.constantFrom(...pool) }, { weight: 1, arbitrary: fc.constant("unknown") })

/** Text that exercises appends: short, unicode, empty, and long enough to cross the SQL store's chunks. */
const text = fc.oneof(
  { weight: 6, arbitrary: fc.string({ maxLength: 6 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constant("") },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 2100 }).map((n) => "x".repeat(n)) }
)
const money = fc.double({ min: 0, max: 100, noNaN: true }).map((x) => Math.abs(x))
const tokens = fc.oneof(fc.nat({ max: 5000 }), fc.constant(0))
const data = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.integer(),
  fc.string({ maxLength: 5 }),
  fc.boolean(),
  fc.record({ a: fc.integer(), b: fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }) })
)
const planEntries = fc.array(
  fc.record({ content: fc.string({ maxLength: 5 }), status: fc.constantFrom("pending", "in_progress", "completed") }),
  { maxLength: 3 }
)

const input: fc.Arbitrary<Input> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ type: fc.constant("text_delta"), delta: text }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant("text_delta"), delta: text, partId: fc.constantFrom(...partIds) }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant("reasoning_delta"), delta: text }) },
  {
    weight: 2,
    arbitrary: fc.record({ type: fc.constant("reasoning_delta"), delta: text, partId: fc.constantFrom(...partIds) })
  },
  {
    weight: 3,
    arbitrary: fc.record({ type: fc.constant("tool_call_start"), toolCallId: idFrom(toolIds), name: fc.constant("bash"), input: fc.option(text, { nil: undefined }) }, { requiredKeys: ["type", "toolCallId", "name"] })
  },
  { weight: 4, arbitrary: fc.record({ type: fc.constant("tool_call_input_delta"), toolCallId: idFrom(toolIds), delta: text }) },
  {
    weight: 3,
    arbitrary: fc.record(
      { type: fc.constant("tool_call_end"), toolCallId: idFrom(toolIds), output: text, isError: fc.boolean() },
      { requiredKeys: ["type", "toolCallId"] }
    )
  },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        type: fc.constant("permission_request"),
        requestId: idFrom(requestIds),
        toolCallId: fc.constantFrom(...toolIds),
        title: fc.string({ maxLength: 5 }),
        options: fc.uniqueArray(
          fc.record({
            optionId: fc.constantFrom(...optionIds),
            name: fc.string({ maxLength: 3 }),
            kind: fc.constantFrom("allow_once", "allow_always", "reject_once", "reject_always")
          }),
          { maxLength: 3, selector: (o) => o.optionId }
        )
      },
      { requiredKeys: ["type", "requestId", "title"] }
    )
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("permission_decision"),
      requestId: idFrom(requestIds),
      decision: fc.constantFrom("allow_once", "allow_always", "reject")
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ type: fc.constant("permission_decision"), requestId: idFrom(requestIds), optionId: idFrom(optionIds) })
  },
  {
    weight: 3,
    arbitrary: fc.record({
      type: fc.constant("tool_call_update"),
      toolCallId: idFrom(toolIds),
      title: fc.string({ maxLength: 4 }),
      kind: fc.constantFrom("read", "edit", "execute", "other"),
      status: fc.constantFrom("pending", "running"),
      input: text,
      output: text,
      locations: fc.array(fc.record({ path: fc.string({ maxLength: 4 }), line: fc.nat({ max: 99 }) }, { requiredKeys: ["path"] }), {
        maxLength: 2
      })
    }, { requiredKeys: ["type", "toolCallId"] })
  },
  { weight: 2, arbitrary: fc.record({ type: fc.constant("context"), used: tokens, size: tokens }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("agent"),
      name: fc.string({ maxLength: 4 }),
      version: fc.string({ maxLength: 4 }),
      commands: fc.array(fc.record({ name: fc.string({ maxLength: 3 }), description: fc.string({ maxLength: 3 }) }, { requiredKeys: ["name"] }), {
        maxLength: 2
      }),
      modes: fc.array(fc.record({ id: fc.string({ maxLength: 3 }), name: fc.string({ maxLength: 3 }) }), { maxLength: 2 }),
      currentModeId: fc.option(fc.string({ maxLength: 3 }), { nil: null })
    }, { requiredKeys: ["type"] })
  },
  { weight: 2, arbitrary: fc.record({ type: fc.constant("plan"), entries: planEntries }) },
  {
    weight: 1,
    arbitrary: fc.record(
      { type: fc.constant("file_change"), path: fc.string({ maxLength: 5 }), action: fc.constantFrom("create", "modify", "delete"), diff: text },
      { requiredKeys: ["type", "path", "action"] }
    )
  },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constant("error"), message: fc.string({ maxLength: 5 }), code: fc.oneof(fc.string({ maxLength: 3 }), fc.integer()) }, {
      requiredKeys: ["type", "message"]
    })
  },
  {
    weight: 3,
    arbitrary: fc.record({ type: fc.constant("usage"), inputTokens: tokens, outputTokens: tokens, costUsd: money }, {
      requiredKeys: ["type", "inputTokens", "outputTokens"]
    })
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant("summary"), text: fc.string({ maxLength: 5 }) }) },
  { weight: 2, arbitrary: fc.constant({ type: "turn_start" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ type: fc.constant("turn_end"), stopReason: fc.constantFrom("end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled", "error") }, {
      requiredKeys: ["type"]
    })
  },
  { weight: 1, arbitrary: fc.constant({ type: "heartbeat" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constant("custom"), name: fc.string({ maxLength: 4 }), data }, { requiredKeys: ["type", "name"] })
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constant("user_message"), text }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant("prompt"), text }) }
) as fc.Arbitrary<Input>

/** Runs of deltas to one artifact in one batch: consecutive appends that a store may coalesce. */
const burst: fc.Arbitrary<ReadonlyArray<Input>> = fc.oneof(
  fc.array(text.map((delta): Input => ({ type: "text_delta", delta })), { minLength: 2, maxLength: 5 }),
  fc.tuple(fc.constantFrom(...partIds), fc.array(text, { minLength: 2, maxLength: 5 })).map(([partId, deltas]) =>
    deltas.map((delta): Input => ({ type: "reasoning_delta", delta, partId }))
  ),
  fc.tuple(idFrom(toolIds), fc.boolean(), fc.array(text, { minLength: 2, maxLength: 5 })).map(([toolCallId, start, deltas]) => [
    ...(start ? [{ type: "tool_call_start", toolCallId, name: "bash" } as const] : []),
    ...deltas.map((delta): Input => ({ type: "tool_call_input_delta", toolCallId, delta }))
  ])
)

/** Reductions: mostly single events, sometimes batches (all or nothing). */
const script = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: input.map((i): ReadonlyArray<Input> => [i]) },
    { weight: 2, arbitrary: fc.array(input, { minLength: 2, maxLength: 4 }) },
    { weight: 2, arbitrary: burst }
  ),
  { minLength: 1, maxLength: 60, size: "medium" }
)

interface Played {
  readonly id: string
  /** Every committed change, in rev order. */
  readonly log: ReadonlyArray<CommittedChange>
  readonly rev: number
  readonly rejected: number
}

/**
 * Reduce the script reduction by reduction (skipping rejected ones), commit
 * each reduction's changes to the store with revs, as Sessions does.
 */
const play = (steps: ReadonlyArray<ReadonlyArray<Input>>) =>
  Effect.gen(function*() {
    const store = yield* SessionStore
    const id = "prop"
    yield* store.create({ ...newSession(id, null, NOW), status: "live" })
    let state = initial
    let status: SessionStatus = "live"
    let summary: string | null = null
    let lastHeartbeat = NOW
    let usage = noUsage
    let rev = 0
    let rejected = 0
    const log: Array<CommittedChange> = []
    for (let i = 0; i < steps.length; i++) {
      const now = NOW + i
      const r = reduce(state, { status, usage }, steps[i]!, now)
      if (Either.isLeft(r)) {
        rejected++
        continue
      }
      const committed = r.right.changes.map((c): CommittedChange => ({ ...c, rev: ++rev }))
      yield* store.commit(id, { rev, lastHeartbeat: now, ...r.right.session, changes: committed })
      state = r.right.state
      status = r.right.session.status ?? status
      usage = r.right.session.usage ?? usage
      if (r.right.session.summary !== undefined) summary = r.right.session.summary
      lastHeartbeat = now
      log.push(...committed)
    }
    const stored = (yield* store.list).find((s) => s.session.id === id)
    expect(stored).toMatchObject({ rev, session: { status, summary, lastHeartbeat, usage, pendingPermissions: state.pending } })
    return { id, log, rev, rejected } satisfies Played
  })

const stores: ReadonlyArray<readonly [string, () => Layer.Layer<SessionStore, unknown>]> = [
  ["memory", () => layerMemory],
  ["sqlite", () => Sqlite.layer({ filename: ":memory:" })]
]

describe.each(stores)("Reducer + SessionStore (%s): properties", (_name, makeLayer) => {
  it.effect.prop(
    "a client folding every change holds exactly the store's artifacts",
    [script],
    ([steps]) =>
      Effect.gen(function*() {
        const store = yield* SessionStore
        const played = yield* play(steps)
        const client = sorted(fold(played.log))
        const snapshot = yield* store.artifacts(played.id)
        expect(snapshot.artifacts).toEqual(client)
        expect(snapshot.rev).toBe(played.rev)
        // seq is gap-free from 1, in creation order
        expect(snapshot.artifacts.map((a) => a.seq)).toEqual(snapshot.artifacts.map((_, i) => i + 1))
      }).pipe(Effect.provide(makeLayer())),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect.prop(
    "resume: a client cut off right after artifact N was created converges with artifacts(id, N)",
    [script, fc.nat()],
    ([steps, pick]) =>
      Effect.gen(function*() {
        const store = yield* SessionStore
        const played = yield* play(steps)
        const full = (yield* store.artifacts(played.id)).artifacts
        if (full.length === 0) return
        const n = (pick % full.length) + 1
        const createdAt = played.log.findIndex((c) => c._tag === "created" && c.artifact.seq === n)
        const createdRev = played.log[createdAt]!.rev
        // The client saw every change up to and including the creation of artifact N.
        const client = fold(played.log.slice(0, createdAt + 1))

        const resumed = yield* store.artifacts(played.id, n)
        // Exactly: seq >= N, and seq < N changed after artifact N was created.
        const changedAfter = new Set(played.log.filter((c) => c.rev > createdRev).map(seqOf))
        expect(resumed.artifacts.map((a) => a.seq)).toEqual(
          full.map((a) => a.seq).filter((seq) => seq >= n || changedAfter.has(seq))
        )
        for (const a of resumed.artifacts) client.set(a.seq, a)
        expect(sorted(client)).toEqual(full)
        expect(resumed.rev).toBe(played.rev)
      }).pipe(Effect.provide(makeLayer())),
    { fastCheck: { numRuns: 150 } }
  )

  it.effect("resume from an id that is not a known seq replays everything", () =>
    Effect.gen(function*() {
      const store = yield* SessionStore
      const played = yield* play([[{ type: "text_delta", delta: "a" }], [{ type: "error", message: "e" }]])
      const full = (yield* store.artifacts(played.id)).artifacts
      expect(full).toHaveLength(2)
      expect((yield* store.artifacts(played.id, 0)).artifacts).toEqual(full)
      expect((yield* store.artifacts(played.id, 3)).artifacts).toEqual(full)
    }).pipe(Effect.provide(makeLayer())))

  it.effect("a surrogate pair split over two deltas (two commits) survives the store", () =>
    Effect.gen(function*() {
      const store = yield* SessionStore
      const emoji = "\u{1F600}"
      const played = yield* play([
        [{ type: "text_delta", delta: "a" + emoji[0] }],
        [{ type: "text_delta", delta: emoji[1]! + "b" }]
      ])
      expect(sorted(fold(played.log))[0]!.text).toBe("a\u{1F600}b")
      expect((yield* store.artifacts(played.id)).artifacts[0]!.text).toBe("a\u{1F600}b")
    }).pipe(Effect.provide(makeLayer())))
})

describe("Reducer: follow (another instance's reductions)", () => {
  // An instance that only sees the committed changes (through JSON, as the change log carries
  // them) and the turn must end in the state the reducing instance ended in, or the next event
  // it reduces would number or route artifacts differently.
  it("following the changes of every reduction gives exactly the reducer's own state", () =>
    fc.assert(
      fc.property(script, (steps) => {
        let own = initial
        let followed = initial
        let status: SessionStatus = "live"
        for (const [i, step] of steps.entries()) {
          const r = reduce(own, { status, usage: noUsage }, step, NOW + i)
          if (Either.isLeft(r)) continue
          own = r.right.state
          status = r.right.session.status ?? status
          const logged = JSON.parse(JSON.stringify({ changes: r.right.changes, turn: turnOf(own) }))
          followed = follow(followed, logged.changes, logged.turn)
          expect(followed).toEqual(own)
        }
      }),
      { numRuns: 200 }
    ))

  it("fromArtifacts with the last turn equals the reducer's state", () =>
    fc.assert(
      fc.property(script, (steps) => {
        let state = initial
        let status: SessionStatus = "live"
        const artifacts = new Map<number, Artifact>()
        for (const [i, step] of steps.entries()) {
          const r = reduce(state, { status, usage: noUsage }, step, NOW + i)
          if (Either.isLeft(r)) continue
          state = r.right.state
          status = r.right.session.status ?? status
          for (const c of r.right.changes) artifacts.set(seqOf(c), applyChange(artifacts.get(seqOf(c)), c))
        }
        const rebuilt = fromArtifacts([...artifacts.values()].sort((a, b) => a.seq - b.seq), turnOf(state))
        expect(rebuilt).toEqual(state)
      }),
      { numRuns: 200 }
    ))
})

describe("Reducer: what a person needs to know (issue 21)", () => {
  const fresh = { status: "live" as const, usage: noUsage, summary: null }

  it("a fatal error (the agent died or could not start) leaves lastStopReason error; a started agent clears it", () => {
    const died = ok(reduce(initial, fresh, [{ type: "error", message: "the agent was killed by SIGKILL", fatal: true }], NOW))
    expect(died.session.lastStopReason).toBe("error")
    expect(died.changes).toEqual([created(1, "error", { message: "the agent was killed by SIGKILL", code: null, fatal: true })])
    // a plain error (a failed tool, a refused mode change) is no reason to call someone
    expect(ok(reduce(initial, fresh, [{ type: "error", message: "x" }], NOW)).session.lastStopReason).toBeUndefined()
    const back = ok(reduce(died.state, fresh, [{ type: "agent", name: "claude", started: true }], NOW))
    expect(back.session.lastStopReason).toBeNull()
    expect(ok(reduce(died.state, fresh, [{ type: "agent", commands: [] }], NOW)).session.lastStopReason).toBeUndefined()
  })

  it("without a summary, the first prompt (its first line, at most 80 characters) stands in; a summary replaces it", () => {
    const first = ok(reduce(initial, fresh, [{ type: "prompt", text: "  fix the   login bug\nand add a test" }], NOW))
    expect(first.session.summary).toBe("fix the login bug")
    const long = "x".repeat(200)
    expect(ok(reduce(initial, fresh, [{ type: "user_message", text: long }], NOW)).session.summary).toBe(`${"x".repeat(79)}…`)
    // a second prompt keeps the first's
    expect(ok(reduce(first.state, { ...fresh, summary: "fix the login bug" }, [{ type: "prompt", text: "now" }], NOW)).session.summary)
      .toBeUndefined()
    expect(ok(reduce(initial, fresh, [{ type: "prompt", text: "a" }, { type: "prompt", text: "b" }], NOW)).session.summary).toBe("a")
    // the agent's own summary wins, in the same batch or later
    expect(ok(reduce(initial, fresh, [{ type: "summary", text: "Login fix" }, { type: "prompt", text: "a" }], NOW)).session.summary)
      .toBe("Login fix")
    expect(ok(reduce(first.state, { ...fresh, summary: "fix the login bug" }, [{ type: "summary", text: "Login fix" }], NOW)).session.summary)
      .toBe("Login fix")
  })

  it("a turn ended by Abort says so in the transcript; other stop reasons add nothing", () => {
    const stopped = ok(reduce(initial, fresh, [{ type: "turn_start" }, { type: "turn_end", stopReason: "cancelled" }], NOW))
    expect(stopped.changes).toEqual([created(1, "turn_stopped", { stopReason: "cancelled" })])
    expect(ok(reduce(initial, fresh, [{ type: "turn_start" }, { type: "turn_end", stopReason: "end_turn" }], NOW)).changes).toEqual([])
  })
})
