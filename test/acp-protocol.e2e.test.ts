/**
 * The protocol extension of issue 13 over real HTTP: the new events and fields, permission
 * replies by option or by decision (completed by the server, bad options refused with nothing
 * applied or sent), cancelled turns, `set_mode`, `session_removed` on the command stream (and
 * not on a replacement), the typed client's side of both, and a restart of a SQLite-backed
 * server in the middle of it all.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { ReinClient, SandboxConnection } from "../src/client/index.js"
import type { ServerOptions } from "../src/Server.js"
import { eventually, foldArtifacts, type SseClient, sorted, sse, start, tempDir, type TestServer } from "./helpers.js"

const servers: Array<TestServer> = []
const clients: Array<SseClient> = []
const cleanups: Array<() => unknown> = []

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const c of cleanups.splice(0)) await c()
  for (const s of servers.splice(0)) await s.close()
})

const boot = async (options: ServerOptions = {}) => {
  const server = await start({ bootstrapTimeout: 600_000, ...options })
  servers.push(server)
  return server
}

const open = async (url: string) => {
  const c = await sse(url)
  clients.push(c)
  await c.waitFor((e) => e.event === "snapshot_complete")
  return c
}

const post = (server: TestServer, id: string, events: unknown) => server.request("POST", `/sessions/${id}/events`, events)
const command = (server: TestServer, id: string, body: unknown) => server.request("POST", `/sessions/${id}/commands`, body)
const artifacts = async (server: TestServer, id: string): Promise<Array<any>> =>
  (await server.request("GET", `/sessions/${id}/artifacts`)).body

const expectAccepted = async (p: Promise<{ status: number; text: string }>) => {
  const res = await p
  expect(res.status, res.text).toBe(202)
}

const expectBadRequest = (res: { status: number; body: any }, message: RegExp) => {
  expect(res.status).toBe(400)
  expect(res.body.error.code).toBe("bad_request")
  expect(res.body.error.message).toMatch(message)
}

/** A session with a connected sandbox, whose command stream is returned. */
const withSandbox = async (server: TestServer, id: string) => {
  expect((await server.request("POST", `/sessions/${id}`)).status).toBe(201)
  return open(`${server.url}/sessions/${id}/commands`)
}

const options = [
  { optionId: "allow", name: "Allow once", kind: "allow_once" as const },
  { optionId: "always", name: "Always allow", kind: "allow_always" as const },
  { optionId: "never", name: "Never", kind: "reject_always" as const },
  { optionId: "no", name: "Reject", kind: "reject_once" as const }
]
/** How the server keeps them: by kind (issue 21). */
const byKind = [options[0], options[1], options[3], options[2]]

describe("issue 13 events", () => {
  it("every new event and field is stored, streamed and served alike", async () => {
    const server = await boot()
    await withSandbox(server, "e1")
    const stream = await open(`${server.url}/sessions/e1/stream`)
    await expectAccepted(post(server, "e1", [
      { type: "agent", name: "claude-code", version: "1.0.3", modes: [{ id: "ask", name: "Ask" }, { id: "code", name: "Code" }] },
      { type: "user_message", text: "earlier question" },
      { type: "turn_start" },
      { type: "plan", entries: [{ content: "read", status: "in_progress", priority: "high" }, { content: "edit", status: "pending" }] },
      {
        type: "tool_call_start",
        toolCallId: "t1",
        name: "edit",
        title: "Edit a.ts",
        kind: "edit",
        locations: [{ path: "a.ts", line: 4 }],
        input: "{\"path\":\"a.ts\"}"
      },
      { type: "tool_call_update", toolCallId: "t1", status: "pending", input: "{\"path\":\"b.ts\"}", locations: [{ path: "b.ts" }] },
      { type: "tool_call_start", toolCallId: "t2", name: "bash" },
      { type: "tool_call_input_delta", toolCallId: "t2", delta: "{\"cmd\":\"ls\"}" },
      { type: "tool_call_end", toolCallId: "t2", output: "a.ts" },
      { type: "tool_call_update", toolCallId: "t2", title: "List files", kind: "execute", status: "running" },
      { type: "permission_request", requestId: "r1", toolCallId: "t1", title: "Edit b.ts?", options },
      { type: "usage", inputTokens: 10, outputTokens: 2 },
      { type: "context", used: 1200, size: 200000 },
      { type: "agent", currentModeId: "code", commands: [{ name: "init", description: "set up" }] },
      { type: "custom", name: "acp.available_commands_update", data: { x: 1 } }
    ]))
    await expectAccepted(post(server, "e1", { type: "turn_end", stopReason: "max_turn_requests" }))
    const stored = await artifacts(server, "e1")
    expect(stored.map((a) => a.kind)).toEqual(["agent", "user_message", "plan", "tool_call", "tool_call", "permission", "usage", "custom"])
    const [agent, user, plan, t1, t2, permission, usage] = stored
    expect(agent).toMatchObject({
      seq: 1,
      name: "claude-code",
      version: "1.0.3",
      modes: [{ id: "ask", name: "Ask" }, { id: "code", name: "Code" }],
      commands: [{ name: "init", description: "set up" }],
      currentModeId: "code"
    })
    expect(user).toMatchObject({ text: "earlier question" })
    expect(plan.entries[0]).toEqual({ content: "read", status: "in_progress", priority: "high" })
    expect(t1).toMatchObject({
      toolCallId: "t1",
      name: "edit",
      title: "Edit a.ts",
      toolKind: "edit",
      locations: [{ path: "b.ts" }],
      input: "{\"path\":\"b.ts\"}",
      output: null,
      status: "pending"
    })
    // A late update of an ended call sets its fields, and does not re-open it.
    expect(t2).toMatchObject({ title: "List files", toolKind: "execute", input: "{\"cmd\":\"ls\"}", output: "a.ts", status: "done" })
    // Unanswered when the turn ended: nobody reads an answer now.
    expect(permission).toMatchObject({ requestId: "r1", toolCallId: "t1", options: byKind, decision: "cancelled", optionId: null })
    expect(usage).toMatchObject({ inputTokens: 10, outputTokens: 2, costUsd: null, context: { used: 1200, size: 200000 } })
    // The session did not turn live from the replayed user message, only from turn_start; it is idle again.
    expect((await server.request("GET", "/sessions/e1")).body.status).toBe("idle")
    await eventually(() => JSON.stringify(sorted(foldArtifacts(stream.events))) === JSON.stringify(stored), 10_000, "the stream converging")
  })

  it("bad new events are 400 naming the field, and nothing of the batch is applied", async () => {
    const server = await boot()
    await withSandbox(server, "b1")
    await expectAccepted(post(server, "b1", { type: "tool_call_start", toolCallId: "t1", name: "x" }))
    const before = await artifacts(server, "b1")
    const cases: ReadonlyArray<[unknown, RegExp]> = [
      [{ type: "permission_request", requestId: "r", title: "t", options: [options[0], { ...options[1], optionId: "allow" }] }, /^\[1\]\.options\[1\]\.optionId: /],
      [{ type: "permission_request", requestId: "r", title: "t", options: [{ optionId: "a", name: "A", kind: "maybe" }] }, /^\[1\]\.options\[0\]\.kind: /],
      [{ type: "permission_request", requestId: "r", title: "t", options: ["allow_once"] }, /^\[1\]\.options\[0\]: /],
      [{ type: "tool_call_start", toolCallId: "t2", name: "x", kind: "teleport" }, /^\[1\]\.kind: /],
      [{ type: "tool_call_start", toolCallId: "t2", name: "x", locations: [{ path: "a", line: -1 }] }, /^\[1\]\.locations\[0\]\.line: /],
      [{ type: "tool_call_update", toolCallId: "t1", status: "done" }, /^\[1\]\.status: /],
      [{ type: "tool_call_update", toolCallId: "ghost", title: "x" }, /^\[1\]\.toolCallId: unknown tool call ghost/],
      [{ type: "context", used: 1.5, size: 10 }, /^\[1\]\.used: /],
      [{ type: "context", used: 1, size: -10 }, /^\[1\]\.size: /],
      [{ type: "agent", modes: [{ id: "a" }] }, /^\[1\]\.modes\[0\]\.name: /],
      [{ type: "plan", entries: [{ content: "c", status: "pending", priority: "urgent" }] }, /^\[1\]\.entries\[0\]\.priority: /],
      [{ type: "turn_end", stopReason: "tired" }, /^\[1\]\.stopReason: /],
      [{ type: "user_message" }, /^\[1\]\.text: /]
    ]
    for (const [bad, message] of cases) {
      const res = await post(server, "b1", [{ type: "tool_call_update", toolCallId: "t1", title: "applied?" }, bad])
      expectBadRequest(res, message)
    }
    expect(await artifacts(server, "b1")).toEqual(before)
  })
})

describe("issue 13 permission replies", () => {
  const ask = async (server: TestServer, id: string, requestId: string, withOptions = true) =>
    expectAccepted(post(server, id, { type: "permission_request", requestId, title: `${requestId}?`, ...(withOptions && { options }) }))

  it("by optionId, by decision, and without options: completed, recorded and delivered alike", async () => {
    const server = await boot()
    const commands = await withSandbox(server, "p1")
    for (const r of ["r1", "r2", "r3", "r4"]) await ask(server, "p1", r)
    await ask(server, "p1", "r5", false)
    await expectAccepted(command(server, "p1", { type: "permission_reply", requestId: "r1", optionId: "always" }))
    await expectAccepted(command(server, "p1", { type: "permission_reply", requestId: "r2", decision: "reject" }))
    await expectAccepted(command(server, "p1", { type: "permission_reply", requestId: "r3", optionId: "never" }))
    await expectAccepted(command(server, "p1", { type: "permission_reply", requestId: "r4", optionId: "allow", decision: "allow_once" }))
    await expectAccepted(command(server, "p1", { type: "permission_reply", requestId: "r5", decision: "allow_always" }))
    const expected = [
      { requestId: "r1", decision: "allow_always", optionId: "always" },
      { requestId: "r2", decision: "reject", optionId: "no" },
      { requestId: "r3", decision: "reject", optionId: "never" },
      { requestId: "r4", decision: "allow_once", optionId: "allow" },
      { requestId: "r5", decision: "allow_always", optionId: null }
    ]
    await commands.waitFor(() => commands.events.filter((e) => e.event === "command").length === 5)
    expect(commands.events.filter((e) => e.event === "command").map((e) => e.data)).toEqual(
      expected.map((r) => ({ type: "permission_reply", ...r }))
    )
    expect((await artifacts(server, "p1")).map(({ requestId, decision, optionId }) => ({ requestId, decision, optionId })))
      .toEqual(expected)
  })

  it("a bad optionId, a contradicting decision, or neither field is 400 naming the field: nothing applied, nothing sent", async () => {
    const server = await boot()
    const commands = await withSandbox(server, "p2")
    await ask(server, "p2", "r1")
    await ask(server, "p2", "bare", false)
    const stream = await open(`${server.url}/sessions/p2/stream`)
    const before = await artifacts(server, "p2")
    expectBadRequest(
      await command(server, "p2", { type: "permission_reply", requestId: "r1", optionId: "maybe" }),
      /^optionId: "maybe" is not an option of permission request r1/
    )
    expectBadRequest(
      await command(server, "p2", { type: "permission_reply", requestId: "bare", optionId: "allow" }),
      /^optionId: "allow" is not an option of permission request bare/
    )
    expectBadRequest(
      await command(server, "p2", { type: "permission_reply", requestId: "r1", optionId: "no", decision: "allow_once" }),
      /^decision: /
    )
    expectBadRequest(await command(server, "p2", { type: "permission_reply", requestId: "r1" }), /^decision: one of decision or optionId/)
    expectBadRequest(await command(server, "p2", { type: "permission_reply", requestId: "r1", optionId: 7 }), /^optionId: /)
    // Unknown and answered requests still conflict.
    expect((await command(server, "p2", { type: "permission_reply", requestId: "zz", optionId: "allow" })).status).toBe(409)
    expect(await artifacts(server, "p2")).toEqual(before)
    // Nothing reached the sandbox or the watchers; a good reply afterwards is the first of each.
    await expectAccepted(command(server, "p2", { type: "permission_reply", requestId: "r1", optionId: "no" }))
    await commands.waitFor((e) => e.event === "command")
    expect(commands.events.filter((e) => e.event === "command").map((e) => e.data)).toEqual([
      { type: "permission_reply", requestId: "r1", decision: "reject", optionId: "no" }
    ])
    await stream.waitFor((e) => e.event === "artifact_updated" && e.data.field === "optionId")
    expect(stream.events.filter((e) => e.event === "artifact_updated").map((e) => [e.data.field, e.data.set])).toEqual([
      ["decision", "reject"],
      ["optionId", "no"]
    ])
    expect((await command(server, "p2", { type: "permission_reply", requestId: "r1", optionId: "allow" })).status).toBe(409)
  })

  it("a cancelled turn cancels unanswered permissions and pending or running tool calls; a late reply conflicts", async () => {
    const server = await boot()
    await withSandbox(server, "c1")
    await expectAccepted(post(server, "c1", [
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "run", name: "bash" },
      { type: "tool_call_start", toolCallId: "wait", name: "edit" },
      { type: "tool_call_update", toolCallId: "wait", status: "pending" },
      { type: "tool_call_start", toolCallId: "done", name: "read" },
      { type: "tool_call_end", toolCallId: "done" },
      { type: "permission_request", requestId: "open", title: "?", options },
      { type: "permission_request", requestId: "answered", title: "?" }
    ]))
    await expectAccepted(command(server, "c1", { type: "permission_reply", requestId: "answered", decision: "allow_once" }))
    await expectAccepted(post(server, "c1", { type: "turn_end", stopReason: "cancelled" }))
    const stored = await artifacts(server, "c1")
    expect(stored.map((a) => [a.toolCallId ?? a.requestId, a.status ?? a.decision, a.optionId])).toEqual([
      ["run", "cancelled", undefined],
      ["wait", "cancelled", undefined],
      ["done", "done", undefined],
      ["open", "cancelled", null],
      ["answered", "allow_once", null],
      [undefined, undefined, undefined] // turn_stopped
    ])
    const late = await command(server, "c1", { type: "permission_reply", requestId: "open", optionId: "allow" })
    expect(late.status).toBe(409)
    expect(late.body.error.message).toMatch(/open/)
  })
})

describe("issue 13 set_mode and session_removed", () => {
  it("set_mode reaches the sandbox as it was sent, is not recorded, and is 409 without a sandbox", async () => {
    const server = await boot()
    expect((await server.request("POST", "/sessions/m1")).status).toBe(201)
    const none = await command(server, "m1", { type: "set_mode", modeId: "code" })
    expect(none.status).toBe(409)
    expect(none.body.error.code).toBe("no_sandbox")
    expectBadRequest(await command(server, "m1", { type: "set_mode" }), /^modeId: /)
    const commands = await open(`${server.url}/sessions/m1/commands`)
    await expectAccepted(command(server, "m1", { type: "set_mode", modeId: "code" }))
    const got = await commands.waitFor((e) => e.event === "command")
    expect(got.data).toEqual({ type: "set_mode", modeId: "code" })
    expect(await artifacts(server, "m1")).toEqual([])
  })

  it("DELETE: the command stream sends session_removed with the id, then ends", async () => {
    const server = await boot()
    const commands = await withSandbox(server, "d1")
    expect((await server.request("DELETE", "/sessions/d1")).status).toBe(204)
    const removed = await commands.waitFor((e) => e.event === "session_removed")
    expect(removed.data).toEqual({ id: "d1" })
    await commands.ended
    expect(commands.events.map((e) => e.event)).toEqual(["snapshot_complete", "session_removed"])
  })

  it("a newer sandbox replacing an older one ends the older stream with superseded, not session_removed (issue 20)", async () => {
    const server = await boot()
    const older = await withSandbox(server, "n1")
    const newer = await open(`${server.url}/sessions/n1/commands`)
    await older.ended
    expect(older.events.map((e) => e.event)).toEqual(["snapshot_complete", "superseded"])
    expect(older.events[1]!.data).toEqual({ id: "n1" })
    // The newer one is the one that learns of the deletion.
    expect((await server.request("DELETE", "/sessions/n1")).status).toBe(204)
    await newer.waitFor((e) => e.event === "session_removed")
    expect(newer.events.map((e) => e.event)).toEqual(["snapshot_complete", "session_removed"])
    expect(older.events.map((e) => e.event)).toEqual(["snapshot_complete", "superseded"])
  })

  it("a server shutting down ends the command stream without session_removed", async () => {
    const server = await boot()
    const commands = await withSandbox(server, "s1")
    await server.close()
    servers.splice(servers.indexOf(server), 1)
    await commands.ended
    expect(commands.events.map((e) => e.event)).toEqual(["snapshot_complete"])
  })

  it("typed client: session_removed makes the SandboxConnection final (removed, onRemoved, no reconnect); setMode and replies by option", async () => {
    const server = await boot()
    const client = new ReinClient({ baseUrl: server.url })
    await client.createSession("k1")
    const states: Array<string> = []
    let removed = 0
    const received: Array<unknown> = []
    const sandbox = new SandboxConnection({
      baseUrl: server.url,
      sessionId: "k1",
      retry: { initialDelay: 20, maxDelay: 50 },
      onState: (s) => states.push(s.status),
      onRemoved: () => removed++,
      onCommand: (c) => received.push(c)
    })
    cleanups.push(() => sandbox.close())
    const iterator = sandbox.commands()
    await sandbox.connect()
    await sandbox.send({ type: "permission_request", requestId: "r1", title: "?", options })
    await sandbox.send({ type: "agent", modes: [{ id: "ask", name: "Ask" }, { id: "code", name: "Code" }], currentModeId: "ask" })
    await client.setMode("k1", "code")
    await client.permissionReply("k1", "r1", { optionId: "never" })
    await eventually(() => received.length === 2, 10_000, "both commands")
    expect(received).toEqual([
      { type: "set_mode", modeId: "code" },
      { type: "permission_reply", requestId: "r1", decision: "reject", optionId: "never" }
    ])
    await client.deleteSession("k1")
    await eventually(() => sandbox.state.status === "removed", 10_000, "the connection turning removed")
    expect(removed).toBe(1)
    // The iterator ends after what it had; nothing reconnects afterwards.
    const drained: Array<unknown> = []
    for await (const c of iterator) drained.push(c)
    expect(drained).toHaveLength(2)
    await new Promise((r) => setTimeout(r, 300))
    expect(states.filter((s) => s === "reconnecting")).toEqual([])
    expect(states.at(-1)).toBe("removed")
  })

  it("bootstrap timeout: no sandbox is connected to tell, and one connecting afterwards finds the session gone", async () => {
    const server = await boot({ bootstrapTimeout: 200 })
    expect((await server.request("POST", "/sessions/x1")).status).toBe(201)
    await eventually(async () => (await server.request("GET", "/sessions/x1")).status === 404, 10_000, "expiry")
    const sandbox = new SandboxConnection({ baseUrl: server.url, sessionId: "x1" })
    cleanups.push(() => sandbox.close())
    await expect(sandbox.connect()).rejects.toMatchObject({ status: 404 })
    expect(sandbox.state.status).toBe("gone")
  })
})

describe("issue 13 across a restart (SQLite file)", () => {
  const tmp = tempDir()
  afterAll(tmp.cleanup)

  it("the state after a restart is identical: options, agent, tool calls and usage continue where they were", async () => {
    const dbPath = `${tmp.dir}/acp-${Date.now()}.db`
    const first = await boot({ dbPath })
    await withSandbox(first, "r1")
    await expectAccepted(post(first, "r1", [
      { type: "agent", name: "gemini", modes: [{ id: "a", name: "A" }], currentModeId: "a" },
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "t1", name: "edit", title: "Edit", kind: "edit", input: "x".repeat(5000) },
      { type: "permission_request", requestId: "q1", toolCallId: "t1", title: "Edit?", options },
      { type: "permission_request", requestId: "q2", title: "Also?", options },
      { type: "context", used: 5, size: 100 }
    ]))
    await expectAccepted(command(first, "r1", { type: "permission_reply", requestId: "q2", decision: "allow_always" }))
    const before = await artifacts(first, "r1")
    await first.close()
    servers.splice(servers.indexOf(first), 1)

    const second = await boot({ dbPath })
    expect(await artifacts(second, "r1")).toEqual(before)
    const commands = await open(`${second.url}/sessions/r1/commands`)
    // The options of the pending request were learned from the store: a reply by optionId works, a bad one is 400.
    expectBadRequest(
      await command(second, "r1", { type: "permission_reply", requestId: "q1", optionId: "maybe" }),
      /^optionId: "maybe" is not an option of permission request q1/
    )
    await expectAccepted(command(second, "r1", { type: "permission_reply", requestId: "q1", optionId: "allow" }))
    expect((await command(second, "r1", { type: "permission_reply", requestId: "q2", decision: "reject" })).status).toBe(409)
    expect((await commands.waitFor((e) => e.event === "command")).data).toEqual({
      type: "permission_reply",
      requestId: "q1",
      decision: "allow_once",
      optionId: "allow"
    })
    // The agent artifact is the same one; the tool call's input is replaced, not appended to; it is still unfinished.
    await expectAccepted(post(second, "r1", [
      { type: "agent", currentModeId: null },
      { type: "tool_call_update", toolCallId: "t1", input: "short", status: "pending" },
      { type: "permission_request", requestId: "q3", title: "Third?", options }
    ]))
    await expectAccepted(post(second, "r1", { type: "turn_end", stopReason: "cancelled" }))
    const after = await artifacts(second, "r1")
    expect(after.map((a) => a.kind)).toEqual(["agent", "tool_call", "permission", "permission", "usage", "permission", "turn_stopped"])
    expect(after[0]).toMatchObject({ seq: 1, name: "gemini", currentModeId: null })
    expect(after[1]).toMatchObject({ input: "short", status: "cancelled" })
    expect(after.filter((a) => a.kind === "permission").map((a) => [a.requestId, a.decision, a.optionId])).toEqual([
      ["q1", "allow_once", "allow"],
      ["q2", "allow_always", "always"],
      ["q3", "cancelled", null]
    ])
    expect(after[4]).toMatchObject({ context: { used: 5, size: 100 } })
    await second.close()
    servers.splice(servers.indexOf(second), 1)
    // And once more: what the second server wrote reads back the same.
    const third = await boot({ dbPath })
    expect(await artifacts(third, "r1")).toEqual(after)
  })
})
