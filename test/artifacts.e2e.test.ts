/**
 * End-to-end tests of the artifact part of docs/protocol.md over real HTTP: the
 * reduction of events into artifacts, the artifact stream (framing,
 * snapshots, live changes, resume with Last-Event-ID, many clients joining
 * during a burst), batches, idempotency, body limits, commands that create or
 * answer artifacts, session removal and persistence across a restart.
 *
 * Convergence is always checked the way a UI would see it: fold the stream
 * (helpers.foldArtifacts) and deep-compare with GET /sessions/:id/artifacts.
 */
import { isDeepStrictEqual } from "node:util"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { ServerOptions } from "../src/Server.js"
import {
  eventually,
  foldArtifacts,
  type SseClient,
  type SseEvent,
  sorted,
  sse,
  start,
  type TestResponse,
  type TestServer,
  tempDir
} from "./helpers.js"

const servers: Array<TestServer> = []
const clients: Array<SseClient> = []
const cleanups: Array<() => void> = []

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  for (const s of servers.splice(0)) await s.close()
  for (const c of cleanups.splice(0)) c()
})

const boot = async (options?: ServerOptions) => {
  const server = await start(options)
  servers.push(server)
  return server
}

const stream = async (url: string, headers?: Record<string, string>) => {
  const client = await sse(url, headers)
  clients.push(client)
  return client
}

/** A session with an artifact stream that has delivered its snapshots. */
const watch = async (server: TestServer, id: string, headers?: Record<string, string>) => {
  const client = await stream(`${server.url}/sessions/${id}/stream`, headers)
  expect(client.status).toBe(200)
  await client.waitFor((e) => e.event === "snapshot_complete")
  return client
}

/** A connected sandbox (session `live`), its command stream open. */
const sandbox = async (server: TestServer, id: string) => {
  const s = await stream(`${server.url}/sessions/${id}/commands`)
  expect(s.status).toBe(200)
  await s.waitFor((e) => e.event === "snapshot_complete")
  return s
}

const create = async (server: TestServer, id: string) => {
  const res = await server.request("POST", `/sessions/${id}`)
  expect(res.status, res.text).toBe(201)
}

const post = (server: TestServer, id: string, body: unknown, headers?: Record<string, string>) =>
  server.request("POST", `/sessions/${id}/events`, body, headers)

/** Posts and requires 202. */
const send = async (server: TestServer, id: string, body: unknown, headers?: Record<string, string>) => {
  const res = await post(server, id, body, headers)
  expect(res.status, `POST events ${JSON.stringify(body).slice(0, 200)} -> ${res.text}`).toBe(202)
  return res
}

const command = (server: TestServer, id: string, body: unknown) => server.request("POST", `/sessions/${id}/commands`, body)

const artifacts = async (server: TestServer, id: string): Promise<Array<any>> => {
  const res = await server.request("GET", `/sessions/${id}/artifacts`)
  expect(res.status, res.text).toBe(200)
  return res.body
}

const session = async (server: TestServer, id: string) => {
  const res = await server.request("GET", `/sessions/${id}`)
  expect(res.status, res.text).toBe(200)
  return res.body
}

/** Waits (bounded) until the folded stream equals GET /artifacts, then asserts it exactly. */
const converged = async (server: TestServer, id: string, events: () => ReadonlyArray<SseEvent>, into?: () => Map<number, any>) => {
  const fold = () => sorted(foldArtifacts(events(), into?.()))
  const stored = await artifacts(server, id)
  await eventually(() => isDeepStrictEqual(fold(), stored), 15_000, "the folded stream to equal GET /artifacts").catch(
    () => undefined
  )
  expect(fold()).toEqual(stored)
  return stored
}

const expectError = (res: TestResponse, status: number, message?: RegExp, code?: string) => {
  expect(res.status, res.text).toBe(status)
  expect(res.headers.get("content-type") ?? "").toMatch(/application\/json/)
  expect(res.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } })
  if (message !== undefined) expect(res.body.error.message).toMatch(message)
  if (code !== undefined) expect(res.body.error.code).toBe(code)
}

const within = <A>(p: Promise<A>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))
  ])

/** The id of the last event that carried one: what an EventSource would send as Last-Event-ID. */
const lastId = (events: ReadonlyArray<SseEvent>) => {
  for (let i = events.length - 1; i >= 0; i--) if (events[i]!.id !== undefined) return events[i]!.id!
  return undefined
}

/** `id:` is the artifact's seq: for snapshots and creations the artifact's, for updates the updated one's. */
const expectIdsAreSeqs = (events: ReadonlyArray<SseEvent>) => {
  for (const e of events) {
    if (e.event === "artifact_snapshot" || e.event === "artifact_created") {
      expect(e.id, `${e.event} ${JSON.stringify(e.data)}`).toBe(String(e.data.artifact.seq))
    } else if (e.event === "artifact_updated") {
      expect(e.id, `${e.event} ${JSON.stringify(e.data)}`).toBe(String(e.data.seq))
    } else if (e.event === "snapshot_complete") {
      expect(e.id).toBeUndefined()
    }
  }
}

/** No artifact announced twice (a snapshot or creation of a seq the client already has). */
const expectNoDuplicateArtifacts = (events: ReadonlyArray<SseEvent>) => {
  const seen = new Set<number>()
  for (const e of events) {
    if (e.event === "artifact_snapshot" || e.event === "artifact_created") {
      const seq = e.data.artifact.seq as number
      expect(seen.has(seq), `artifact ${seq} announced twice`).toBe(false)
      seen.add(seq)
    }
  }
}

const snapshotSeqs = (events: ReadonlyArray<SseEvent>) =>
  events.filter((e) => e.event === "artifact_snapshot").map((e) => e.data.artifact.seq as number)

describe("artifacts: a realistic turn", () => {
  it("a live client folding its stream equals GET /artifacts exactly", async () => {
    const server = await boot()
    await create(server, "t1")
    await sandbox(server, "t1")
    const client = await watch(server, "t1")
    expect(client.events.map((e) => e.event)).toEqual(["snapshot_complete"])

    const plan1 = [{ content: "read the code", status: "in_progress" }, { content: "fix it", status: "pending" }]
    const plan2 = [{ content: "read the code", status: "completed" }, { content: "fix it", status: "in_progress" }]
    await send(server, "t1", { type: "turn_start" })
    await send(server, "t1", { type: "plan", entries: plan1 })
    await send(server, "t1", { type: "reasoning_delta", delta: "Let me " })
    await send(server, "t1", { type: "reasoning_delta", delta: "think." })
    await send(server, "t1", [{ type: "text_delta", delta: "I'll " }, { type: "text_delta", delta: "fix " }])
    await send(server, "t1", { type: "text_delta", delta: "it." })
    await send(server, "t1", { type: "tool_call_start", toolCallId: "tc1", name: "bash", input: "{\"cmd\":" })
    await send(server, "t1", { type: "tool_call_input_delta", toolCallId: "tc1", delta: "\"ls" })
    await send(server, "t1", [
      { type: "tool_call_input_delta", toolCallId: "tc1", delta: " -la\"" },
      { type: "tool_call_input_delta", toolCallId: "tc1", delta: "}" }
    ])
    await send(server, "t1", {
      type: "permission_request",
      requestId: "r1",
      toolCallId: "tc1",
      title: "Run ls -la?",
      options: [{ optionId: "ok", name: "Allow", kind: "allow_once" }, { optionId: "no", name: "Reject", kind: "reject_once" }]
    })
    await send(server, "t1", { type: "tool_call_end", toolCallId: "tc1", output: "a.txt\nb.txt" })
    await send(server, "t1", { type: "file_change", path: "src/a.ts", action: "modify", diff: "-a\n+b" })
    await send(server, "t1", { type: "usage", inputTokens: 100, outputTokens: 20, costUsd: 0.01 })
    await send(server, "t1", { type: "plan", entries: plan2 })
    await send(server, "t1", { type: "text_delta", delta: "Done." })
    await send(server, "t1", { type: "usage", inputTokens: 30, outputTokens: 5, costUsd: 0.02 })
    await send(server, "t1", { type: "error", message: "lint failed", code: "E_LINT" })
    await send(server, "t1", { type: "custom", name: "progress", data: { pct: 100, nested: ["x", 1] } })
    await send(server, "t1", { type: "summary", text: "Fixed the bug" })
    await send(server, "t1", { type: "turn_end", stopReason: "end_turn" })

    const stored = await converged(server, "t1", () => client.events)
    expectIdsAreSeqs(client.events)
    expectNoDuplicateArtifacts(client.events)
    // Every update carries updatedAt, so the fold converges exactly.
    for (const e of client.events.filter((e) => e.event === "artifact_updated")) expect(typeof e.data.updatedAt).toBe("number")

    expect(stored.map((a) => a.seq)).toEqual(stored.map((_, i) => i + 1))
    expect(stored.map((a) => a.kind)).toEqual([
      "plan",
      "reasoning",
      "text",
      "tool_call",
      "permission",
      "file_change",
      "usage",
      "text",
      "error",
      "custom"
    ])
    const [plan, reasoning, text, tool, permission, file, usage, text2, error, custom] = stored
    expect(plan.entries).toEqual(plan2)
    expect(reasoning.text).toBe("Let me think.")
    expect(text.text).toBe("I'll fix it.")
    expect(tool).toMatchObject({
      toolCallId: "tc1",
      name: "bash",
      input: "{\"cmd\":\"ls -la\"}",
      output: "a.txt\nb.txt",
      status: "done"
    })
    // Unanswered when the turn ended: nobody reads an answer now.
    expect(permission).toMatchObject({ requestId: "r1", toolCallId: "tc1", title: "Run ls -la?", decision: "cancelled", optionId: null })
    expect(permission.options).toEqual([
      { optionId: "ok", name: "Allow", kind: "allow_once" },
      { optionId: "no", name: "Reject", kind: "reject_once" }
    ])
    expect(file).toMatchObject({ path: "src/a.ts", action: "modify", diff: "-a\n+b" })
    expect(usage.inputTokens).toBe(130)
    expect(usage.outputTokens).toBe(25)
    expect(usage.costUsd).toBeCloseTo(0.03, 10)
    expect(text2.text).toBe("Done.")
    expect(error).toMatchObject({ message: "lint failed", code: "E_LINT" })
    expect(custom).toMatchObject({ name: "progress", data: { pct: 100, nested: ["x", 1] } })
    for (const a of stored) {
      expect(typeof a.createdAt).toBe("number")
      expect(a.updatedAt).toBeGreaterThanOrEqual(a.createdAt)
    }
    const record = await session(server, "t1")
    expect(record.summary).toBe("Fixed the bug")
    expect(record.status).toBe("idle")

    // A client connecting now gets the same state from snapshots alone.
    const late = await watch(server, "t1")
    expect(snapshotSeqs(late.events)).toEqual(stored.map((a) => a.seq))
    expect(sorted(foldArtifacts(late.events))).toEqual(stored)
  })

  it("an open text artifact stays open across events of its own type (a keyed text_delta)", async () => {
    // docs/protocol.md: "A delta artifact without partId stays open until an event of any other type arrives."
    const server = await boot()
    await create(server, "o1")
    await send(server, "o1", { type: "text_delta", delta: "Hel" })
    await send(server, "o1", { type: "text_delta", delta: "part", partId: "p" })
    await send(server, "o1", { type: "text_delta", delta: "lo" })
    const stored = await artifacts(server, "o1")
    expect(stored.map((a) => [a.seq, a.kind, a.text])).toEqual([[1, "text", "Hello"], [2, "text", "part"]])
  })

  it("tool_call_end isError ends in error; turn_end cancelled marks only running tool calls cancelled", async () => {
    const server = await boot()
    await create(server, "c1")
    const client = await watch(server, "c1")
    await send(server, "c1", [
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "running", name: "bash" },
      { type: "tool_call_start", toolCallId: "ok", name: "read" },
      { type: "tool_call_start", toolCallId: "bad", name: "write" }
    ])
    await send(server, "c1", { type: "tool_call_end", toolCallId: "ok", output: "fine" })
    await send(server, "c1", { type: "tool_call_end", toolCallId: "bad", output: "EACCES", isError: true })
    let stored = await artifacts(server, "c1")
    expect(stored.map((a) => [a.toolCallId, a.status])).toEqual([["running", "running"], ["ok", "done"], ["bad", "error"]])
    expect(stored[2].output).toBe("EACCES")

    await send(server, "c1", { type: "turn_end", stopReason: "cancelled" })
    stored = await converged(server, "c1", () => client.events)
    expect(stored.map((a) => [a.toolCallId, a.status])).toEqual([["running", "cancelled"], ["ok", "done"], ["bad", "error"], [undefined, undefined]])
    expect(stored[3]).toMatchObject({ kind: "turn_stopped", stopReason: "cancelled" })
    expect(stored[0].output).toBeNull()
    // The cancellation reached the client as a status update of the running call only.
    const statusSets = client.events.filter((e) => e.event === "artifact_updated" && e.data.field === "status")
    expect(statusSets.map((e) => [e.data.seq, e.data.set])).toEqual([[2, "done"], [3, "error"], [1, "cancelled"]])
  })

  it("plan replaces within a turn and a new turn gets a new plan; usage adds within a turn", async () => {
    const server = await boot()
    await create(server, "p1")
    const client = await watch(server, "p1")
    await send(server, "p1", { type: "turn_start" })
    await send(server, "p1", { type: "plan", entries: [{ content: "a", status: "pending" }] })
    await send(server, "p1", { type: "usage", inputTokens: 1, outputTokens: 2 })
    await send(server, "p1", {
      type: "plan",
      entries: [{ content: "a", status: "completed" }, { content: "b", status: "in_progress" }]
    })
    await send(server, "p1", { type: "usage", inputTokens: 3, outputTokens: 4 })
    await send(server, "p1", { type: "usage", inputTokens: 10, outputTokens: 0, costUsd: 0.5 })
    await send(server, "p1", { type: "turn_end" })
    await send(server, "p1", { type: "turn_start" })
    await send(server, "p1", { type: "plan", entries: [{ content: "c", status: "pending" }] })
    await send(server, "p1", { type: "usage", inputTokens: 5, outputTokens: 5 })
    await send(server, "p1", { type: "turn_end" })

    const stored = await converged(server, "p1", () => client.events)
    expect(stored.map((a) => [a.seq, a.kind])).toEqual([[1, "plan"], [2, "usage"], [3, "plan"], [4, "usage"]])
    expect(stored[0].entries).toEqual([{ content: "a", status: "completed" }, { content: "b", status: "in_progress" }])
    expect(stored[1]).toMatchObject({ inputTokens: 14, outputTokens: 6, costUsd: 0.5 })
    expect(stored[2].entries).toEqual([{ content: "c", status: "pending" }])
    expect(stored[3]).toMatchObject({ inputTokens: 5, outputTokens: 5, costUsd: null })
    expect(client.events.filter((e) => e.event === "artifact_created")).toHaveLength(4)
  })
})

describe("artifacts: SSE framing", () => {
  it("snapshots in seq order with id = seq, snapshot_complete without id, then live events with id = seq", async () => {
    const server = await boot()
    await create(server, "f1")
    await send(server, "f1", [
      { type: "text_delta", delta: "one", partId: "p" },
      { type: "tool_call_start", toolCallId: "t", name: "bash" },
      { type: "custom", name: "c", data: 1 },
      { type: "reasoning_delta", delta: "hmm" }
    ])
    const client = await watch(server, "f1")
    expect(client.headers.get("content-type") ?? "").toMatch(/^text\/event-stream/)
    expect(client.headers.get("cache-control")).toBe("no-cache")
    const history = client.events.slice()
    expect(history.map((e) => [e.event, e.id])).toEqual([
      ["artifact_snapshot", "1"],
      ["artifact_snapshot", "2"],
      ["artifact_snapshot", "3"],
      ["artifact_snapshot", "4"],
      ["snapshot_complete", undefined]
    ])
    expect(sorted(foldArtifacts(history))).toEqual(await artifacts(server, "f1"))

    // Live: updates of an older artifact carry that artifact's seq, not the newest one.
    await send(server, "f1", { type: "text_delta", delta: " two", partId: "p" })
    await send(server, "f1", { type: "tool_call_end", toolCallId: "t", output: "out" })
    await send(server, "f1", { type: "file_change", path: "x", action: "create" })
    await client.waitFor((e) => e.event === "artifact_created" && e.data.artifact.seq === 5)
    const live = client.events.slice(history.length)
    expect(live.map((e) => [e.event, e.id])).toEqual([
      ["artifact_updated", "1"],
      ["artifact_updated", "2"],
      ["artifact_updated", "2"],
      ["artifact_created", "5"]
    ])
    expect(live[0]!.data).toEqual({ seq: 1, field: "text", append: " two", updatedAt: expect.any(Number) })
    expect(live[1]!.data).toEqual({ seq: 2, field: "output", set: "out", updatedAt: expect.any(Number) })
    expect(live[2]!.data).toEqual({ seq: 2, field: "status", set: "done", updatedAt: expect.any(Number) })
    expectIdsAreSeqs(client.events)
    await converged(server, "f1", () => client.events)
  })

  it("raw frames: optional id:, event:, exactly one data: line of JSON, a blank line", async () => {
    const server = await boot()
    await create(server, "f2")
    await send(server, "f2", [
      { type: "text_delta", delta: "line1\nline2\r\n\"quoted\"" },
      { type: "custom", name: "c", data: { s: "a\nb" } }
    ])
    const controller = new AbortController()
    const res = await fetch(`${server.url}/sessions/f2/stream`, { signal: controller.signal })
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type") ?? "").toMatch(/^text\/event-stream/)
    let raw = ""
    const decoder = new TextDecoder()
    const reader = res.body!.getReader()
    await within(
      (async () => {
        while (!raw.includes("event: snapshot_complete\ndata: {}\n\n")) {
          const { done, value } = await reader.read()
          if (done) throw new Error(`stream ended: ${raw}`)
          raw += decoder.decode(value, { stream: true })
        }
      })(),
      10_000,
      "snapshot_complete in the raw stream"
    )
    controller.abort()
    expect(raw.endsWith("\n\n")).toBe(true)
    const frames = raw.slice(0, -2).split("\n\n").filter((f) => !f.startsWith(":"))
    expect(frames).toHaveLength(3)
    for (const f of frames) {
      expect(f).toMatch(/^(id: \d+\n)?event: [a-z_]+\ndata: [^\n]*$/)
      expect(() => JSON.parse(f.slice(f.indexOf("data: ") + 6))).not.toThrow()
    }
    expect(frames[0]!.startsWith("id: 1\nevent: artifact_snapshot\ndata: ")).toBe(true)
    expect(frames[1]!.startsWith("id: 2\nevent: artifact_snapshot\ndata: ")).toBe(true)
    expect(frames[2]).toBe("event: snapshot_complete\ndata: {}")
    expect(JSON.parse(frames[0]!.split("data: ")[1]!).artifact.text).toBe("line1\nline2\r\n\"quoted\"")
  })

  it("sends `: keep-alive` comments while idle", async () => {
    const server = await boot({ keepAliveInterval: 50 })
    await create(server, "k1")
    const client = await watch(server, "k1")
    await eventually(() => client.comments.some((c) => c.trim() === "keep-alive"), 5_000, "a keep-alive comment")
  })

  it("GET /sessions/:id/stream of an unknown session is a 404 JSON error", async () => {
    const server = await boot()
    const res = await server.request("GET", "/sessions/nope/stream")
    expectError(res, 404, /nope/, "not_found")
    expectError(await server.request("GET", "/sessions/nope/artifacts"), 404, /nope/, "not_found")
  })
})

describe("artifacts: resume with Last-Event-ID", () => {
  it("resumed snapshots folded over the old copy equal GET /artifacts; no append applied twice", async () => {
    const server = await boot()
    await create(server, "r1")
    const a = await watch(server, "r1")
    await send(server, "r1", { type: "text_delta", delta: "Hello", partId: "p1" }) // 1
    await send(server, "r1", { type: "tool_call_start", toolCallId: "tc1", name: "bash", input: "{" }) // 2
    await send(server, "r1", { type: "file_change", path: "a.ts", action: "create" }) // 3
    await send(server, "r1", { type: "reasoning_delta", delta: "think" }) // 4
    await send(server, "r1", { type: "text_delta", delta: ",", partId: "p1" }) // update 1
    await send(server, "r1", { type: "custom", name: "mark", data: 5 }) // 5
    await a.waitFor((e) => e.event === "artifact_created" && e.data.artifact.seq === 5)
    a.close()
    await a.ended
    const seenByA = a.events.slice()
    expect(lastId(seenByA)).toBe("5")
    expect(sorted(foldArtifacts(seenByA))).toEqual(await artifacts(server, "r1"))

    // While A is away: appends to older artifacts, an older tool call ends, new artifacts appear.
    await send(server, "r1", { type: "text_delta", delta: " world", partId: "p1" })
    await send(server, "r1", [
      { type: "tool_call_input_delta", toolCallId: "tc1", delta: "\"x\":1}" },
      { type: "tool_call_end", toolCallId: "tc1", output: "ok" }
    ])
    await send(server, "r1", { type: "text_delta", delta: "new " }) // 6
    await send(server, "r1", { type: "text_delta", delta: "text" })
    await send(server, "r1", { type: "custom", name: "after", data: 7 }) // 7

    const b = await watch(server, "r1", { "last-event-id": lastId(seenByA)! })
    // Snapshots: every artifact with seq >= 5 and every older one changed since 5 was created, in seq order.
    expect(snapshotSeqs(b.events)).toEqual([1, 2, 5, 6, 7])
    expectIdsAreSeqs(b.events)
    const resumed = foldArtifacts(b.events, foldArtifacts(seenByA))
    const stored = await artifacts(server, "r1")
    expect(sorted(resumed)).toEqual(stored)
    expect(stored[0].text).toBe("Hello, world")
    expect(stored[1]).toMatchObject({ input: "{\"x\":1}", output: "ok", status: "done" })
    expect(stored[5].text).toBe("new text")

    // Live after the resume: still no gap and no duplicate.
    await send(server, "r1", { type: "text_delta", delta: "!", partId: "p1" })
    await send(server, "r1", { type: "custom", name: "live", data: 8 })
    await b.waitFor((e) => e.event === "artifact_created" && e.data.artifact.seq === 8)
    const final = await converged(server, "r1", () => b.events, () => foldArtifacts(seenByA))
    expect(final[0].text).toBe("Hello, world!")
  })

  it("resume snapshots include the artifact named by Last-Event-ID and everything newer", async () => {
    const server = await boot()
    await create(server, "r2")
    for (let i = 1; i <= 6; i++) await send(server, "r2", { type: "custom", name: `c${i}`, data: i })
    const b = await watch(server, "r2", { "last-event-id": "4" })
    expect(snapshotSeqs(b.events)).toEqual([4, 5, 6])
    expect(b.events.filter((e) => e.event === "artifact_snapshot").map((e) => e.data.artifact)).toEqual(
      (await artifacts(server, "r2")).slice(3)
    )
  })

  it.each(["9999", "abc", "0", "-1", "2.5"])("an unknown Last-Event-ID (%s) gives a full replay", async (header) => {
    const server = await boot()
    await create(server, "r3")
    await send(server, "r3", [
      { type: "text_delta", delta: "a", partId: "x" },
      { type: "custom", name: "c", data: null },
      { type: "file_change", path: "f", action: "delete" }
    ])
    await send(server, "r3", { type: "text_delta", delta: "b", partId: "x" })
    const client = await watch(server, "r3", { "last-event-id": header })
    const stored = await artifacts(server, "r3")
    expect(snapshotSeqs(client.events)).toEqual([1, 2, 3])
    expect(sorted(foldArtifacts(client.events))).toEqual(stored)
    expect(stored[0].text).toBe("ab")
  })
})

describe("artifacts: many clients during a burst", () => {
  it("eight clients joining during 400 concurrently posted events all converge exactly", async () => {
    const server = await boot()
    await create(server, "b1")
    const posters = 4
    const perPoster = 100
    let acked = 0
    const expectedText = new Map<string, string>()

    const eventOf = (p: number, i: number): any => {
      const tc = `p${p}-t${Math.floor(i / 10)}`
      switch (i % 10) {
        case 0:
          return { type: "tool_call_start", toolCallId: tc, name: "bash", input: `${p}:` }
        case 1:
          return { type: "tool_call_input_delta", toolCallId: tc, delta: `${i}` }
        case 2:
          return { type: "tool_call_end", toolCallId: tc, output: `out${p}.${i}`, isError: i % 20 === 2 }
        case 3:
          return { type: "custom", name: `p${p}`, data: { i } }
        case 9:
          return { type: "reasoning_delta", delta: `r${p}.${i};` }
        default: {
          const delta = `p${p}:${i};`
          expectedText.set(`p${p}`, (expectedText.get(`p${p}`) ?? "") + delta)
          return { type: "text_delta", delta, partId: `p${p}` }
        }
      }
    }
    const poster = async (p: number) => {
      for (let i = 0; i < perPoster; i++) {
        const res = await post(server, "b1", eventOf(p, i))
        if (res.status !== 202) throw new Error(`poster ${p} event ${i}: ${res.status} ${res.text}`)
        acked++
      }
    }
    const joiner = async (k: number) => {
      await eventually(() => acked >= k * 50, 30_000, `${k * 50} acknowledged events`)
      return stream(`${server.url}/sessions/b1/stream`)
    }

    const joined = Promise.all(Array.from({ length: 8 }, (_, k) => joiner(k)))
    await Promise.all(Array.from({ length: posters }, (_, p) => poster(p)))
    const readers = await joined
    expect(acked).toBe(posters * perPoster)

    const stored = await artifacts(server, "b1")
    for (const [k, reader] of readers.entries()) {
      expect(reader.status).toBe(200)
      await reader.waitFor((e) => e.event === "snapshot_complete", 15_000)
      const fold = () => sorted(foldArtifacts(reader.events)) // throws on "update for unknown artifact"
      await eventually(() => isDeepStrictEqual(fold(), stored), 15_000, `client ${k} to converge`).catch(() => undefined)
      expect(fold(), `client ${k}`).toEqual(stored)
      expectNoDuplicateArtifacts(reader.events)
      expectIdsAreSeqs(reader.events)
      // Snapshots first, in seq order, then snapshot_complete, then only live events.
      const complete = reader.events.findIndex((e) => e.event === "snapshot_complete")
      const snaps = reader.events.slice(0, complete)
      expect(snaps.every((e) => e.event === "artifact_snapshot")).toBe(true)
      expect(snapshotSeqs(snaps)).toEqual([...snapshotSeqs(snaps)].sort((x, y) => x - y))
      expect(reader.events.slice(complete + 1).some((e) => e.event === "artifact_snapshot")).toBe(false)
    }

    // Exact text per part: every delta once, in its poster's order.
    for (const [partId, text] of expectedText) {
      const part = stored.filter((a) => a.kind === "text" && a.partId === partId)
      expect(part, partId).toHaveLength(1)
      expect(part[0].text).toBe(text)
    }
    const tools = stored.filter((a) => a.kind === "tool_call")
    expect(tools).toHaveLength(posters * (perPoster / 10))
    for (const t of tools) {
      const [p, n] = (t.toolCallId as string).slice(1).split("-t").map(Number)
      expect(t.input).toBe(`${p}:${n! * 10 + 1}`)
      expect(t.status).toBe(n! % 2 === 0 ? "error" : "done")
    }
    expect(stored.filter((a) => a.kind === "custom")).toHaveLength(posters * (perPoster / 10))
    const reasoning = stored.filter((a) => a.kind === "reasoning").map((a) => a.text).join("")
    expect(reasoning.split(";").filter(Boolean).sort()).toEqual(
      Array.from({ length: posters }, (_, p) => Array.from({ length: 10 }, (_, j) => `r${p}.${j * 10 + 9}`)).flat().sort()
    )
    expect(stored.map((a) => a.seq)).toEqual(stored.map((_, i) => i + 1))
  })
})

describe("artifacts: batches, idempotency, limits, validation", () => {
  it("a batch is all or nothing: an invalid third event is 400 naming [2].<field>, nothing applied", async () => {
    const server = await boot()
    await create(server, "v1")
    const client = await watch(server, "v1")
    await send(server, "v1", { type: "text_delta", delta: "A" })
    const before = await artifacts(server, "v1")
    const record = await session(server, "v1")
    await eventually(() => Date.now() > record.lastHeartbeat + 2, 1_000, "the clock to move")

    const res = await post(server, "v1", [
      { type: "custom", name: "would close the open text", data: 1 },
      { type: "tool_call_start", toolCallId: "x", name: "bash" },
      { type: "file_change", path: "a", action: "explode" }
    ])
    expectError(res, 400, /\[2\]\.action/, "bad_request")
    expect(await artifacts(server, "v1")).toEqual(before)
    expect((await session(server, "v1")).lastHeartbeat).toBe(record.lastHeartbeat)

    // An unknown tool call id later in a batch: 400, nothing applied.
    const res2 = await post(server, "v1", [
      { type: "custom", name: "c", data: 2 },
      { type: "tool_call_end", toolCallId: "ghost" }
    ])
    expectError(res2, 400, /\[1\]\.toolCallId/, "bad_request")
    expect(await artifacts(server, "v1")).toEqual(before)
    expect((await session(server, "v1")).lastHeartbeat).toBe(record.lastHeartbeat)

    // The reducer state was untouched too: the text is still open and "x" was never started.
    await send(server, "v1", { type: "text_delta", delta: "B" })
    await send(server, "v1", { type: "tool_call_start", toolCallId: "x", name: "bash" })
    const after = await converged(server, "v1", () => client.events)
    expect(after.map((a) => [a.seq, a.kind])).toEqual([[1, "text"], [2, "tool_call"]])
    expect(after[0].text).toBe("AB")
    expect(client.events.some((e) => e.event === "artifact_created" && e.data.artifact.kind === "custom")).toBe(false)
  })

  it("Idempotency-Key: a retry with the same key is 202 and applied once; a different key applies again", async () => {
    const server = await boot()
    await create(server, "i1")
    const client = await watch(server, "i1")
    const body = [{ type: "text_delta", delta: "abc", partId: "p" }, { type: "custom", name: "c", data: 1 }]
    expect((await post(server, "i1", body, { "idempotency-key": "k1" })).status).toBe(202)
    expect((await post(server, "i1", body, { "idempotency-key": "k1" })).status).toBe(202)
    let stored = await artifacts(server, "i1")
    expect(stored.map((a) => a.kind)).toEqual(["text", "custom"])
    expect(stored[0].text).toBe("abc")

    expect((await post(server, "i1", body, { "idempotency-key": "k2" })).status).toBe(202)
    stored = await artifacts(server, "i1")
    expect(stored.map((a) => a.kind)).toEqual(["text", "custom", "custom"])
    expect(stored[0].text).toBe("abcabc")

    // Concurrent retries of one key: both 202, applied once.
    const one = { type: "text_delta", delta: "X", partId: "p" }
    const results = await Promise.all([1, 2, 3].map(() => post(server, "i1", one, { "idempotency-key": "k3" })))
    expect(results.map((r) => r.status)).toEqual([202, 202, 202])
    stored = await converged(server, "i1", () => client.events)
    expect(stored[0].text).toBe("abcabcX")

    // A rejected request does not use up its key.
    expectError(await post(server, "i1", { type: "text_delta", delta: 5 }, { "idempotency-key": "k4" }), 400)
    await send(server, "i1", { type: "text_delta", delta: "Y", partId: "p" }, { "idempotency-key": "k4" })
    expect((await artifacts(server, "i1"))[0].text).toBe("abcabcXY")

    // Keys are per session.
    await create(server, "i2")
    await send(server, "i2", { type: "text_delta", delta: "other" }, { "idempotency-key": "k1" })
    expect((await artifacts(server, "i2")).map((a) => a.text)).toEqual(["other"])
  })

  it("413 for a body over maxBodyBytes, nothing applied", async () => {
    const server = await boot({ maxBodyBytes: 1024 })
    await create(server, "l1")
    const big = { type: "text_delta", delta: "x".repeat(2048) }
    expectError(await post(server, "l1", big), 413, undefined, "payload_too_large")
    expect(await artifacts(server, "l1")).toEqual([])
    expect((await session(server, "l1")).lastHeartbeat).toBe((await session(server, "l1")).createdAt)

    // Without a content-length (chunked), the limit holds while reading.
    const chunks = [JSON.stringify(big).slice(0, 1000), JSON.stringify(big).slice(1000)]
    const res = await fetch(`${server.url}/sessions/l1/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          for (const c of chunks) controller.enqueue(new TextEncoder().encode(c))
          controller.close()
        }
      }),
      duplex: "half"
    } as RequestInit)
    expect(res.status).toBe(413)
    expect(((await res.json()) as any).error.code).toBe("payload_too_large")
    expect(await artifacts(server, "l1")).toEqual([])

    // Under the limit is fine.
    await send(server, "l1", { type: "text_delta", delta: "x".repeat(900) })
    expect((await artifacts(server, "l1"))[0].text).toHaveLength(900)
  })

  it("413 for a 1.5 MiB body with the default 1 MiB limit", async () => {
    const server = await boot()
    await create(server, "l2")
    const res = await post(server, "l2", { type: "text_delta", delta: "y".repeat(1.5 * 1024 * 1024) })
    expectError(res, 413, undefined, "payload_too_large")
    expect(await artifacts(server, "l2")).toEqual([])
    // Just under the default limit is accepted.
    await send(server, "l2", { type: "text_delta", delta: "y".repeat(1024 * 1024 - 100) })
    expect((await artifacts(server, "l2"))[0].text).toHaveLength(1024 * 1024 - 100)
  })

  it("400s name the problem: unknown type, wrong field type, unknown tool call, empty batch, bad JSON", async () => {
    const server = await boot()
    await create(server, "e1")
    const unknown = await post(server, "e1", { type: "telepathy" })
    expectError(unknown, 400, /telepathy/, "bad_request")
    for (
      const t of [
        "text_delta",
        "reasoning_delta",
        "tool_call_start",
        "tool_call_input_delta",
        "tool_call_end",
        "permission_request",
        "plan",
        "file_change",
        "error",
        "usage",
        "summary",
        "turn_start",
        "turn_end",
        "heartbeat",
        "custom"
      ]
    ) expect(unknown.body.error.message).toContain(t)

    expectError(await post(server, "e1", { type: "text_delta", delta: 5 }), 400, /\bdelta\b/, "bad_request")
    expectError(await post(server, "e1", { type: "tool_call_end", toolCallId: "nope" }), 400, /toolCallId/, "bad_request")
    expectError(await post(server, "e1", { type: "tool_call_input_delta", toolCallId: "nope", delta: "x" }), 400, /toolCallId/)
    expectError(await post(server, "e1", []), 400, undefined, "bad_request")
    expectError(await post(server, "e1", "{\"type\": \"text_delta\","), 400, /JSON/, "bad_request")
    expectError(await post(server, "e1", { type: "usage", inputTokens: -1, outputTokens: 0 }), 400, /inputTokens/)
    expectError(await post(server, "e1", { type: "plan", entries: [{ content: "a", status: "done" }] }), 400, /entries/)
    expectError(await post(server, "e1", { type: "turn_end", stopReason: "bored" }), 400, /stopReason/)
    expect(await artifacts(server, "e1")).toEqual([])
    expectError(await post(server, "ghost", { type: "heartbeat" }), 404, /ghost/, "not_found")
  })
})

describe("artifacts: commands", () => {
  it("an accepted prompt becomes a user_message artifact and reaches the sandbox; without a sandbox nothing is applied", async () => {
    const server = await boot()
    await create(server, "m1")
    const client = await watch(server, "m1")
    expectError(await command(server, "m1", { type: "prompt", text: "nobody home" }), 409)
    expect(await artifacts(server, "m1")).toEqual([])

    const box = await sandbox(server, "m1")
    await send(server, "m1", [{ type: "turn_start" }, { type: "text_delta", delta: "hi" }, { type: "turn_end" }])
    expect((await session(server, "m1")).status).toBe("idle")
    expect((await command(server, "m1", { type: "prompt", text: "fix the bug" })).status).toBe(202)
    const delivered = await box.waitFor((e) => e.event === "command")
    expect(delivered.data).toEqual({ type: "prompt", text: "fix the bug" })
    const stored = await converged(server, "m1", () => client.events)
    expect(stored.map((a) => [a.seq, a.kind, a.text])).toEqual([[1, "text", "hi"], [2, "user_message", "fix the bug"]])
    expect((await session(server, "m1")).status).toBe("live")
    // The prompt closed the open text artifact: the next delta starts a new one.
    await send(server, "m1", { type: "text_delta", delta: "ok" })
    expect((await artifacts(server, "m1")).map((a) => [a.kind, a.text])).toEqual([
      ["text", "hi"],
      ["user_message", "fix the bug"],
      ["text", "ok"]
    ])
  })

  it("permission_reply: first reply wins, the other is 409; the sandbox gets exactly one reply", async () => {
    const server = await boot()
    await create(server, "q1")
    const box = await sandbox(server, "q1")
    const client = await watch(server, "q1")
    await send(server, "q1", { type: "tool_call_start", toolCallId: "tc", name: "rm" })
    await send(server, "q1", { type: "permission_request", requestId: "r1", toolCallId: "tc", title: "Delete it?" })
    let stored = await artifacts(server, "q1")
    expect(stored[1]).toMatchObject({ kind: "permission", requestId: "r1", toolCallId: "tc", title: "Delete it?", decision: null })

    const decisions = ["allow_once", "reject"] as const
    const replies = await Promise.all(
      decisions.map((decision) => command(server, "q1", { type: "permission_reply", requestId: "r1", decision }))
    )
    expect(replies.map((r) => r.status).sort()).toEqual([202, 409])
    const winner = decisions[replies.findIndex((r) => r.status === 202)]!
    expectError(replies.find((r) => r.status === 409)!, 409, /r1/)

    stored = await converged(server, "q1", () => client.events)
    expect(stored[1].decision).toBe(winner)
    expect(client.events.filter((e) => e.event === "artifact_updated" && e.data.field === "decision")).toHaveLength(1)

    // A later reply, or one to an unknown request: 409, nothing changes.
    expectError(await command(server, "q1", { type: "permission_reply", requestId: "r1", decision: "allow_always" }), 409)
    expectError(await command(server, "q1", { type: "permission_reply", requestId: "unknown", decision: "allow_once" }), 409)
    expect((await artifacts(server, "q1"))[1].decision).toBe(winner)

    // Commands arrive in order: once the abort is there, any second reply would have been too.
    expect((await command(server, "q1", { type: "abort" })).status).toBe(202)
    await box.waitFor((e) => e.event === "command" && e.data.type === "abort")
    const delivered = box.events.filter((e) => e.event === "command" && e.data.type === "permission_reply")
    expect(delivered.map((e) => e.data)).toEqual([{ type: "permission_reply", requestId: "r1", decision: winner, optionId: null }])
  })
})

describe("artifacts: session removal", () => {
  it("deleting the session ends its artifact streams; GET /artifacts and /stream are then 404", async () => {
    const server = await boot()
    await create(server, "d1")
    await send(server, "d1", { type: "text_delta", delta: "bye" })
    const one = await watch(server, "d1")
    const two = await watch(server, "d1", { "last-event-id": "1" })
    const res = await server.request("DELETE", "/sessions/d1")
    expect(res.status).toBe(204)
    await within(Promise.all([one.ended, two.ended]), 10_000, "artifact streams to end")
    expect(one.isEnded() && two.isEnded()).toBe(true)
    expectError(await server.request("GET", "/sessions/d1/artifacts"), 404, /d1/, "not_found")
    expectError(await server.request("GET", "/sessions/d1/stream"), 404, /d1/, "not_found")
    expectError(await post(server, "d1", { type: "text_delta", delta: "x" }), 404)
  })
})

describe("artifacts: persistence across restart", () => {
  it("artifacts survive a restart exactly; partId deltas and tool calls continue; seq continues without a gap", async () => {
    const tmp = tempDir()
    cleanups.push(tmp.cleanup)
    const dbPath = join(tmp.dir, "rein.db")

    const first = await boot({ dbPath })
    await create(first, "s1")
    let long = ""
    // Single appends (one chunk update each) that cross the 2 048-character chunk boundary more than once.
    for (let i = 0; i < 220; i++) {
      const delta = `d${i}-é🙂|`
      long += delta
      await send(first, "s1", { type: "text_delta", delta, partId: "long" })
    }
    // Batches (coalesced appends) and one large delta.
    for (let b = 0; b < 4; b++) {
      const batch = Array.from({ length: 50 }, (_, j) => ({ type: "text_delta", delta: `b${b}.${j};`, partId: "long" }))
      long += batch.map((e) => e.delta).join("")
      await send(first, "s1", batch)
    }
    const huge = "H".repeat(3000)
    long += huge
    await send(first, "s1", { type: "text_delta", delta: huge, partId: "long" })
    expect(long.length).toBeGreaterThan(2048 * 2)

    await send(first, "s1", { type: "tool_call_start", toolCallId: "tc", name: "write", input: "{\"content\":\"" })
    let input = "{\"content\":\""
    for (let i = 0; i < 40; i++) {
      const delta = `line ${i}\\n`.repeat(8)
      input += delta
      await send(first, "s1", { type: "tool_call_input_delta", toolCallId: "tc", delta })
    }
    await send(first, "s1", { type: "text_delta", delta: "open text" })
    await send(first, "s1", { type: "custom", name: "c", data: { deep: [1, { two: 2 }] } })
    const before = await artifacts(first, "s1")
    expect(before.map((a) => [a.seq, a.kind])).toEqual([[1, "text"], [2, "tool_call"], [3, "text"], [4, "custom"]])
    expect(before[0].text).toBe(long)
    expect(before[1].input).toBe(input)
    await first.close()
    servers.splice(servers.indexOf(first), 1)

    const second = await boot({ dbPath })
    expect(await artifacts(second, "s1")).toEqual(before)
    const client = await watch(second, "s1")
    expect(sorted(foldArtifacts(client.events))).toEqual(before)

    await send(second, "s1", { type: "text_delta", delta: "<END>", partId: "long" })
    await send(second, "s1", { type: "tool_call_input_delta", toolCallId: "tc", delta: "\"}" })
    await send(second, "s1", { type: "tool_call_end", toolCallId: "tc", output: "written" })
    await send(second, "s1", { type: "custom", name: "after restart", data: null })
    expectError(await post(second, "s1", { type: "tool_call_start", toolCallId: "tc", name: "again" }), 400, /toolCallId/)

    const after = await converged(second, "s1", () => client.events)
    expect(after.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5])
    expect(after[0].text).toBe(long + "<END>")
    expect(after[1]).toMatchObject({ input: input + "\"}", output: "written", status: "done" })
    expect(after[4]).toMatchObject({ kind: "custom", name: "after restart" })
    expect(after.slice(2, 4)).toEqual(before.slice(2, 4))

    // And once more: what the second server wrote survives too.
    await second.close()
    servers.splice(servers.indexOf(second), 1)
    const third = await boot({ dbPath })
    expect(await artifacts(third, "s1")).toEqual(after)
  })
})
