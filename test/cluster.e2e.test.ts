/**
 * Several server instances over one PostgreSQL database, end to end over real
 * HTTP: whatever instance a request or a stream lands on, the behaviour is a
 * single server's. Create on A, sandbox on B, events through either, clients
 * streaming from both and resuming on the other, commands across instances,
 * one bootstrap timeout, delete anywhere, an instance killed while its sandbox
 * is connected, and an instance losing its database and coming back.
 *
 * Needs PostgreSQL: `DATABASE_URL`, or the throwaway cluster `npm test` starts
 * (test/globalSetup.ts) when PostgreSQL is installed; each
 * test gets its own schema.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { isDeepStrictEqual } from "node:util"
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from "node:net"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ServerOptions } from "../src/Server.js"
import {
  captureWarnings,
  eventually,
  foldArtifacts,
  pgSchema,
  type SseClient,
  type SseEvent,
  sorted,
  sse,
  start,
  type TestServer,
  until
} from "./helpers.js"
import { ensureBuilt, type ServerProcess, spawnServer } from "./process.js"
import { Runner } from "../src/runner/Runner.js"
import { cleanup as cleanupRunnerFiles, makeRepo, tempDir } from "./runner-helpers.js"
import { buildAgent } from "./sandboxBuild.js"

const databaseUrl = process.env.DATABASE_URL
const noPg = databaseUrl === undefined || databaseUrl === ""

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  // Last in, first out: clients, then servers, then the schema they used.
  for (const c of cleanups.splice(0).reverse()) await c()
})

const schema = async () => {
  const s = await pgSchema(databaseUrl!)
  cleanups.push(s.drop)
  return s.url
}

const boot = async (url: string, options: ServerOptions = {}) => {
  const server = await start({ pgUrl: url, leaseTtl: 1_000, ...options })
  cleanups.push(() => server.close())
  return server
}

/** Two instances sharing one fresh database. */
const pair = async (options: ServerOptions = {}) => {
  const url = await schema()
  return { url, a: await boot(url, options), b: await boot(url, options) }
}

const stream = async (url: string, headers?: Record<string, string>) => {
  const client = await sse(url, headers)
  cleanups.push(() => client.close())
  return client
}

const watch = async (server: TestServer, id: string, headers?: Record<string, string>) => {
  const client = await stream(`${server.url}/sessions/${id}/stream`, headers)
  expect(client.status).toBe(200)
  await client.waitFor((e) => e.event === "snapshot_complete")
  return client
}

const watchSessions = async (server: TestServer) => {
  const client = await stream(`${server.url}/sessions/stream`)
  expect(client.status).toBe(200)
  await client.waitFor((e) => e.event === "snapshot_complete")
  return client
}

const sandbox = async (server: { readonly url: string }, id: string) => {
  const s = await stream(`${server.url}/sessions/${id}/commands`)
  expect(s.status).toBe(200)
  await s.waitFor((e) => e.event === "snapshot_complete")
  return s
}

const create = async (server: TestServer, id: string) => {
  const res = await server.request("POST", `/sessions/${id}`)
  expect(res.status, res.text).toBe(201)
}

const send = async (server: TestServer, id: string, body: unknown) => {
  const res = await server.request("POST", `/sessions/${id}/events`, body)
  expect(res.status, res.text).toBe(202)
}

const artifacts = async (server: TestServer, id: string): Promise<Array<any>> => {
  const res = await server.request("GET", `/sessions/${id}/artifacts`)
  expect(res.status, res.text).toBe(200)
  return res.body
}

const statusOn = async (server: { readonly url: string }, id: string) => {
  const res = await fetch(`${server.url}/sessions/${id}`)
  return res.status === 200 ? ((await res.json()) as { status: string }).status : res.status
}

/** Waits until the folded stream equals GET /artifacts, then asserts it exactly. */
const converged = async (server: TestServer, id: string, events: () => ReadonlyArray<SseEvent>) => {
  const stored = await artifacts(server, id)
  const fold = () => sorted(foldArtifacts(events()))
  await eventually(() => isDeepStrictEqual(fold(), stored), 15_000, "the stream to converge").catch(() => undefined)
  expect(fold()).toEqual(stored)
  return stored
}

/** Live artifact events carry ids; each must be delivered once and in order. */
const expectNoDuplicates = (events: ReadonlyArray<SseEvent>) => {
  const created = events.filter((e) => e.event === "artifact_created").map((e) => e.data.artifact.seq)
  expect(new Set(created).size).toBe(created.length)
  const ids = events.filter((e) => e.id !== undefined && e.id !== "").map((e) => Number(e.id))
  expect(ids).toEqual([...ids].sort((x, y) => x - y))
}

const sessionEvents = (client: SseClient, event: string, id: string) =>
  client.events.filter((e) => e.event === event && (e.data.session?.id ?? e.data.id) === id)

describe.skipIf(noPg)("two instances on one PostgreSQL database", () => {
  it("create on A, sandbox on B, events through A: clients on B and on A see every artifact once, in order", async () => {
    const { a, b } = await pair()
    await create(a, "s1")
    // The other instance knows the session at once (it asks the store), not when told.
    expect(await statusOn(b, "s1")).toBe("bootstrapping")
    const onB = await watch(b, "s1")
    await sandbox(b, "s1")
    expect(await statusOn(a, "s1")).toBe("live")
    const onA = await watch(a, "s1")

    await send(a, "s1", { type: "turn_start" })
    for (let i = 0; i < 20; i++) await send(a, "s1", { type: "text_delta", delta: `a${i} ` })
    await send(b, "s1", { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "{" })
    await send(a, "s1", { type: "tool_call_input_delta", toolCallId: "t1", delta: "}" })
    await send(b, "s1", [{ type: "text_delta", delta: "from b" }, { type: "turn_end" }])

    const stored = await converged(b, "s1", () => onB.events)
    await converged(a, "s1", () => onA.events)
    expect(stored.find((x) => x.kind === "text")?.text).toContain("a19 ")
    expectNoDuplicates(onA.events)
    expectNoDuplicates(onB.events)
    // Both saw the same live events, event for event.
    const live = (c: SseClient) => c.events.filter((e) => e.event.startsWith("artifact_") && e.event !== "artifact_snapshot")
    expect(live(onA).map((e) => [e.id, e.data])).toEqual(live(onB).map((e) => [e.id, e.data]))
  })

  it("an event that refers to what the other instance just committed is never judged against the old state", async () => {
    const { a, b } = await pair()
    await create(a, "s1")
    await sandbox(b, "s1")
    expect(await statusOn(a, "s1")).toBe("live")
    await send(a, "s1", { type: "turn_start" })
    // Each start is acknowledged by B before A hears of it: A must catch up, not answer "unknown tool call".
    for (let i = 0; i < 40; i++) {
      await send(b, "s1", { type: "tool_call_start", toolCallId: `t${i}`, name: "bash" })
      await send(a, "s1", { type: "tool_call_end", toolCallId: `t${i}`, output: `${i}` })
    }
    const res = await a.request("GET", "/sessions/s1/artifacts")
    const calls = res.body.filter((x: any) => x.kind === "tool_call")
    expect(calls.map((c: any) => [c.toolCallId, c.status, c.output])).toEqual(
      Array.from({ length: 40 }, (_, i) => [`t${i}`, "done", `${i}`])
    )
  })

  it("a permission reply to a request the other instance just committed is never judged against the old state", async () => {
    const { a, b } = await pair()
    await create(a, "s1")
    await sandbox(b, "s1")
    await send(b, "s1", { type: "turn_start" })
    const options = [{ optionId: "y", name: "Yes", kind: "allow_once" }, { optionId: "n", name: "No", kind: "reject_once" }]
    // Each request is acknowledged by B before A hears of it: A must catch up, not answer "no permission request".
    for (let i = 0; i < 20; i++) {
      await send(b, "s1", { type: "permission_request", requestId: `r${i}`, title: "?", options })
      const reply = await a.request("POST", "/sessions/s1/commands", { type: "permission_reply", requestId: `r${i}`, optionId: "y" })
      expect(reply.status, reply.text).toBe(202)
    }
    const res = await a.request("GET", "/sessions/s1/artifacts")
    const asked = res.body.filter((x: any) => x.kind === "permission")
    expect(asked.map((p: any) => [p.requestId, p.decision, p.optionId])).toEqual(
      Array.from({ length: 20 }, (_, i) => [`r${i}`, "allow_once", "y"])
    )
  })

  it("events spread over both instances (a round-robin balancer) reduce exactly as on one server", async () => {
    const { a, b } = await pair()
    const single = await start({})
    cleanups.push(() => single.close())
    const long = (i: number) => `${i}:` + "x".repeat(297)
    const steps: Array<unknown> = [
      { type: "turn_start" },
      { type: "text_delta", delta: "Hello" },
      { type: "text_delta", delta: ", " },
      { type: "text_delta", delta: "world" },
      { type: "plan", entries: [{ content: "look", status: "pending" }] },
      { type: "usage", inputTokens: 10, outputTokens: 2, costUsd: 0.01 },
      { type: "reasoning_delta", delta: "hmm", partId: "r" },
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "{" },
      { type: "reasoning_delta", delta: " more", partId: "r" },
      { type: "tool_call_input_delta", toolCallId: "t1", delta: "}" },
      { type: "tool_call_end", toolCallId: "t1", output: "ok" },
      { type: "plan", entries: [{ content: "look", status: "completed" }] },
      { type: "usage", inputTokens: 5, outputTokens: 1 },
      // 20 deltas of 300 characters: the text crosses several storage chunks, from both sides.
      ...Array.from({ length: 20 }, (_, i) => ({ type: "text_delta", delta: long(i) })),
      // Answered below while the turn is open (a turn that ends cancels what is unanswered).
      { type: "permission_request", requestId: "p1", title: "run?" }
    ]
    await create(a, "rr")
    await create(single, "rr")
    await sandbox(b, "rr")
    await sandbox(single, "rr")
    const onA = await watch(a, "rr")
    for (const [i, step] of steps.entries()) {
      await send(i % 2 === 0 ? a : b, "rr", step)
      await send(single, "rr", step)
    }
    for (const s of [a, single]) {
      const res = await s.request("POST", "/sessions/rr/commands", { type: "permission_reply", requestId: "p1", decision: "allow_once" })
      expect(res.status, res.text).toBe(202)
    }
    // The answered request cannot be answered again, whichever instance is asked.
    expect((await b.request("POST", "/sessions/rr/commands", { type: "permission_reply", requestId: "p1", decision: "reject" })).status)
      .toBe(409)
    await send(b, "rr", { type: "turn_end" })
    await send(single, "rr", { type: "turn_end" })
    const strip = (xs: Array<any>) => xs.map(({ createdAt: _, updatedAt: __, ...rest }) => rest)
    const clustered = await artifacts(b, "rr")
    expect(strip(clustered)).toEqual(strip(await artifacts(single, "rr")))
    expect(clustered.find((x) => x.kind === "text" && x.text.startsWith("Hello"))?.text).toBe("Hello, world")
    expect(await statusOn(a, "rr")).toBe((await single.request("GET", "/sessions/rr")).body.status)
    await converged(a, "rr", () => onA.events)
  })

  it("resume with Last-Event-ID on the other instance gets exactly what was missed", async () => {
    const { a, b } = await pair()
    await create(a, "r1")
    await sandbox(a, "r1")
    const first = await watch(a, "r1")
    await send(a, "r1", [{ type: "turn_start" }, { type: "text_delta", delta: "one " }])
    await first.waitFor((e) => e.event === "artifact_created")
    const lastId = first.events.filter((e) => e.id).at(-1)!.id!
    const seen = [...first.events]
    first.close()
    await send(a, "r1", [{ type: "text_delta", delta: "two " }, { type: "tool_call_start", toolCallId: "x", name: "ls" }])
    const resumed = await watch(b, "r1", { "last-event-id": lastId })
    await send(b, "r1", { type: "text_delta", delta: "three" })
    await converged(b, "r1", () => [...seen, ...resumed.events])
    // The tool call splits the text in two artifacts.
    const texts = sorted(foldArtifacts([...seen, ...resumed.events])).filter((x) => x.kind === "text")
    expect(texts.map((x) => x.text)).toEqual(["one two ", "three"])
  })

  it("seq stays gap-free and ordered when both instances ingest for one session at once", async () => {
    const { a, b } = await pair()
    await create(a, "c1")
    await sandbox(b, "c1")
    const onA = await watch(a, "c1")
    const onB = await watch(b, "c1")
    const posts: Array<Promise<void>> = []
    for (let i = 0; i < 30; i++) {
      posts.push(send(i % 2 === 0 ? a : b, "c1", { type: "tool_call_start", toolCallId: `t${i}`, name: `n${i}` }))
    }
    await Promise.all(posts)
    const stored = await artifacts(a, "c1")
    expect(stored.map((x) => x.seq)).toEqual(Array.from({ length: stored.length }, (_, i) => i + 1))
    expect(stored.filter((x) => x.kind === "tool_call").map((x) => x.name).sort()).toEqual(
      Array.from({ length: 30 }, (_, i) => `n${i}`).sort()
    )
    await converged(a, "c1", () => onA.events)
    await converged(b, "c1", () => onB.events)
    expectNoDuplicates(onA.events)
    expectNoDuplicates(onB.events)
  })

  it("a retry with the same Idempotency-Key through the other instance applies once", async () => {
    const { a, b } = await pair()
    await create(a, "i1")
    const onB = await watch(b, "i1")
    const batch = [{ type: "turn_start" }, { type: "tool_call_start", toolCallId: "t1", name: "ls" }]
    // A sandbox that timed out retries; the balancer sends the retries to either instance, while
    // the first attempt is still in flight. Then one more, later.
    const attempts = await Promise.all([a, b, a, b].map((s) =>
      s.request("POST", "/sessions/i1/events", batch, { "idempotency-key": "k-1" })
    ))
    expect(attempts.map((r) => r.status)).toEqual([202, 202, 202, 202])
    expect((await b.request("POST", "/sessions/i1/events", batch, { "idempotency-key": "k-1" })).status).toBe(202)
    const stored = await converged(b, "i1", () => onB.events)
    expect(stored.filter((x) => x.kind === "tool_call")).toHaveLength(1)
    expectNoDuplicates(onB.events)
  })

  it("a command posted to A reaches the sandbox on B; 409 when no instance holds one", async () => {
    const { a, b } = await pair()
    await create(a, "k1")
    const none = await a.request("POST", "/sessions/k1/commands", { type: "abort" })
    expect(none.status, none.text).toBe(409)
    const box = await sandbox(b, "k1")
    const res = await a.request("POST", "/sessions/k1/commands", { type: "prompt", text: "hello from A" })
    expect(res.status, res.text).toBe(202)
    const got = await box.waitFor((e) => e.event === "command")
    expect(got.data).toMatchObject({ type: "prompt", text: "hello from A" })
    expect((await a.request("POST", "/sessions/k1/commands", { type: "abort" })).status).toBe(202)
    await box.waitFor((e) => e.event === "command" && e.data.type === "abort")
    // The prompt is an artifact on every instance.
    expect((await artifacts(b, "k1")).some((x) => x.kind === "user_message" && x.text === "hello from A")).toBe(true)
    // The sandbox leaves: the session is disconnected everywhere and commands are refused everywhere.
    box.close()
    await eventually(async () => (await statusOn(a, "k1")) === "disconnected", 10_000, "disconnected on A")
    expect((await a.request("POST", "/sessions/k1/commands", { type: "abort" })).status).toBe(409)
    expect((await b.request("POST", "/sessions/k1/commands", { type: "abort" })).status).toBe(409)
  })

  it("a sandbox connecting to B ends its older connection on A, which changes nothing", async () => {
    const { a, b } = await pair()
    await create(a, "m1")
    const list = await watchSessions(a)
    const old = await sandbox(a, "m1")
    await sandbox(b, "m1")
    await old.ended
    expect(await statusOn(a, "m1")).toBe("live")
    const res = await a.request("POST", "/sessions/m1/commands", { type: "abort" })
    expect(res.status, res.text).toBe(202)
    // Give a wrong "disconnected" time to show up; the session stays live.
    await send(b, "m1", { type: "turn_start" })
    await eventually(() => list.events.some((e) => e.event === "session_updated" && e.data.id === "m1" && e.data.fields.status === "live"))
    expect(sessionEvents(list, "session_updated", "m1").map((e) => e.data.fields.status)).not.toContain("disconnected")
  })

  it("a sandbox that reconnects through the other instance at once stays live (no late disconnect wins)", async () => {
    const { a, b } = await pair()
    await create(a, "hop")
    let box = await sandbox(a, "hop")
    for (let i = 0; i < 20; i++) {
      // Drop and reconnect at once, alternating instances: the old instance's disconnect races
      // the new connection's claim.
      box.close()
      box = await sandbox(i % 2 === 0 ? b : a, "hop")
    }
    // Let every leave finish, then the session must be live, and commands must reach the sandbox.
    await new Promise((r) => setTimeout(r, 500))
    expect(await statusOn(a, "hop")).toBe("live")
    expect(await statusOn(b, "hop")).toBe("live")
    expect((await b.request("POST", "/sessions/hop/commands", { type: "abort" })).status).toBe(202)
    await box.waitFor((e) => e.event === "command")
  })

  it("a bootstrap timeout fires once cluster-wide: exactly one session_removed per watcher", async () => {
    const { a, b } = await pair({ bootstrapTimeout: 600 })
    const onA = await watchSessions(a)
    const onB = await watchSessions(b)
    await create(a, "late")
    await onB.waitFor((e) => e.event === "session_created" && e.data.session.id === "late")
    await onA.waitFor((e) => e.event === "session_removed" && e.data.id === "late")
    await onB.waitFor((e) => e.event === "session_removed" && e.data.id === "late")
    // Every instance ran the timer: wait past the others' too, then count.
    await new Promise((r) => setTimeout(r, 1_000))
    expect(sessionEvents(onA, "session_removed", "late")).toHaveLength(1)
    expect(sessionEvents(onB, "session_removed", "late")).toHaveLength(1)
    expect(await statusOn(a, "late")).toBe(404)
    expect(await statusOn(b, "late")).toBe(404)
  })

  it("delete anywhere: removed on B, gone on A with its streams ended", async () => {
    const { a, b } = await pair()
    await create(a, "d1")
    const box = await sandbox(a, "d1")
    await send(a, "d1", { type: "turn_start" })
    const onA = await watch(a, "d1")
    const list = await watchSessions(a)
    expect((await b.request("DELETE", "/sessions/d1")).status).toBe(204)
    await list.waitFor((e) => e.event === "session_removed" && e.data.id === "d1")
    await onA.ended
    await box.ended
    expect(await statusOn(a, "d1")).toBe(404)
    expect((await a.request("POST", "/sessions/d1/events", { type: "turn_start" })).status).toBe(404)
    expect((await a.request("GET", "/sessions")).body.map((s: any) => s.id)).not.toContain("d1")
  })

  it("issue 13 across instances: a reply by optionId on A to B's request, set_mode through A, session_removed from a DELETE on A", async () => {
    const { a, b } = await pair()
    await create(a, "o1")
    const box = await sandbox(b, "o1")
    await send(b, "o1", [
      { type: "agent", name: "x", modes: [{ id: "ask", name: "Ask" }] },
      {
        type: "permission_request",
        requestId: "r1",
        title: "?",
        options: [{ optionId: "y", name: "Yes", kind: "allow_once" }, { optionId: "n", name: "No", kind: "reject_once" }]
      }
    ])
    // A learned the options from B's commit: a bad option is refused there, a good one completed.
    await eventually(async () => (await artifacts(a, "o1")).length === 2, 10_000, "A catching up")
    const bad = await a.request("POST", "/sessions/o1/commands", { type: "permission_reply", requestId: "r1", optionId: "maybe" })
    expect(bad.status, bad.text).toBe(400)
    expect((await a.request("POST", "/sessions/o1/commands", { type: "permission_reply", requestId: "r1", decision: "reject" })).status).toBe(202)
    expect((await a.request("POST", "/sessions/o1/commands", { type: "set_mode", modeId: "ask" })).status).toBe(202)
    await box.waitFor(() => box.events.filter((e) => e.event === "command").length === 2)
    expect(box.events.filter((e) => e.event === "command").map((e) => e.data)).toEqual([
      { type: "permission_reply", requestId: "r1", decision: "reject", optionId: "n" },
      { type: "set_mode", modeId: "ask" }
    ])
    // B's reducer follows A's answer: a second answer through B conflicts; the agent artifact stays the one.
    expect((await b.request("POST", "/sessions/o1/commands", { type: "permission_reply", requestId: "r1", optionId: "y" })).status).toBe(409)
    await send(b, "o1", { type: "agent", currentModeId: "ask" })
    const want = JSON.stringify([[1, "agent", "ask"], [2, "permission", "n"]])
    await eventually(
      async () => JSON.stringify((await artifacts(a, "o1")).map((x) => [x.seq, x.kind, x.currentModeId ?? x.optionId])) === want,
      10_000,
      "A showing the agent's mode and the chosen option"
    )
    expect((await a.request("DELETE", "/sessions/o1")).status).toBe(204)
    const removed = await box.waitFor((e) => e.event === "session_removed")
    expect(removed.data).toEqual({ id: "o1" })
    await box.ended
  })

  it("removed and created again under the same id on B: a fresh session on A too", async () => {
    const { a, b } = await pair()
    await create(a, "re")
    await send(a, "re", { type: "turn_start" })
    for (const d of ["old ", "text ", "here"]) await send(a, "re", { type: "text_delta", delta: d })
    expect((await b.request("DELETE", "/sessions/re")).status).toBe(204)
    await create(b, "re")
    await send(b, "re", { type: "turn_start" })
    await send(b, "re", { type: "text_delta", delta: "new" })
    // A may not have heard of any of it yet; what it writes must land in the new session.
    await send(a, "re", { type: "text_delta", delta: " one" })
    const onA = await watch(a, "re")
    const stored = await converged(a, "re", () => onA.events)
    expect(stored.map((x) => [x.seq, x.kind, x.text])).toEqual([[1, "text", "new one"]])
    expect(await artifacts(b, "re")).toEqual(stored)
  })

  it("sessions created on one instance appear in the other's list and session stream", async () => {
    const { a, b } = await pair()
    const onB = await watchSessions(b)
    await create(a, "l1")
    expect((await b.request("GET", "/sessions")).body.map((s: any) => s.id)).toContain("l1")
    await onB.waitFor((e) => e.event === "session_created" && e.data.session.id === "l1")
    await sandbox(a, "l1")
    await onB.waitFor((e) => e.event === "session_updated" && e.data.id === "l1" && e.data.fields.status === "live")
    expect(sessionEvents(onB, "session_created", "l1")).toHaveLength(1)
  })
})

describe.skipIf(noPg)("instance failure", () => {
  beforeAll(() => ensureBuilt(), 120_000)

  it("kill -9 of the instance holding a sandbox: the session turns disconnected cluster-wide", async () => {
    const url = await schema()
    const child: ServerProcess = await spawnServer(["--pg", url, "--lease-ttl", "1000"])
    cleanups.push(() => child.child.kill("SIGKILL"))
    const b = await boot(url)
    const res = await fetch(`${child.url}/sessions/k9`, { method: "POST" })
    expect(res.status).toBe(201)
    const box = await sandbox(child, "k9")
    expect(await statusOn(b, "k9")).toBe("live")
    const list = await watchSessions(b)
    child.child.kill("SIGKILL")
    await child.exited
    await box.ended
    await list.waitFor((e) => e.event === "session_updated" && e.data.id === "k9" && e.data.fields.status === "disconnected", 15_000)
    expect(await statusOn(b, "k9")).toBe("disconnected")
    expect((await b.request("POST", "/sessions/k9/commands", { type: "abort" })).status).toBe(409)
    // The sandbox reconnects through the surviving instance.
    await sandbox(b, "k9")
    expect(await statusOn(b, "k9")).toBe("live")
  })
})

/**
 * A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones, or
 * freeze: keep every connection open and pass nothing (a network path that died silently).
 */
const proxy = async (target: URL) => {
  const sockets = new Set<Socket>()
  let up = true
  let frozen = false
  const server: TcpServer = createTcpServer((client) => {
    if (!up) return client.destroy()
    if (frozen) return void sockets.add(client)
    const upstream = connect(Number(target.port || 5432), target.hostname)
    sockets.add(client).add(upstream)
    const close = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on("error", close).on("close", close)
    upstream.on("error", close).on("close", close)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as { port: number }).port
  const via = new URL(target)
  via.hostname = "127.0.0.1"
  via.port = String(port)
  return {
    url: via.toString(),
    cut: () => {
      up = false
      for (const s of sockets) s.destroy()
    },
    restore: () => {
      up = true
      frozen = false
    },
    freeze: () => {
      frozen = true
      for (const s of sockets) s.unpipe().pause()
    },
    close: () => new Promise<void>((r) => server.close(() => r()))
  }
}

describe.skipIf(noPg)("losing the database", () => {
  it("a listening connection that dies silently is noticed: streams end, health is 503, and it recovers", async () => {
    // Cut off, A's lease loops may warn that the database is unreachable; that is all they may say.
    const warnings = captureWarnings()
    cleanups.push(warnings.restore)
    const url = await schema()
    const db = await proxy(new URL(url))
    cleanups.push(db.close)
    const a = await boot(db.url)
    const b = await boot(url)
    await create(b, "f1")
    const onA = await watch(a, "f1")
    db.freeze()
    // Nothing is closed or refused: only the missing self-notifications tell.
    await onA.ended
    expect((await fetch(`${a.url}/healthz`)).status).toBe(503)
    expect((await fetch(`${a.url}/sessions/f1/stream`)).status).toBe(503)
    // The path comes back (the frozen connections are reset, as a NAT finally does).
    db.cut()
    db.restore()
    await eventually(async () => (await fetch(`${a.url}/healthz`)).status === 200, 20_000, "A healthy again")
    const again = await watch(a, "f1")
    await sandbox(b, "f1")
    await send(b, "f1", { type: "turn_start" })
    await send(b, "f1", { type: "text_delta", delta: "hi" })
    await converged(a, "f1", () => again.events)
    for (const line of warnings.lines) expect(line).toMatch(/the session store is unavailable/)
  })

  it("requests answer 503 and streams end; once it is back, the instance catches up with what happened meanwhile", async () => {
    const url = await schema()
    const db = await proxy(new URL(url))
    cleanups.push(db.close)
    const a = await boot(db.url)
    const b = await boot(url)
    await create(b, "o1")
    await sandbox(b, "o1")
    await send(b, "o1", [{ type: "turn_start" }, { type: "text_delta", delta: "before " }])
    const onA = await watch(a, "o1")
    const listA = await watchSessions(a)

    db.cut()
    await onA.ended
    await listA.ended
    await eventually(async () => (await a.request("POST", "/sessions/o1/events", { type: "text_delta", delta: "x" })).status === 503, 10_000, "503 from A")
    const refused = await a.request("GET", "/sessions/o1/stream")
    expect(refused.status).toBe(503)
    expect(refused.body.error.code).toBe("store_unavailable")
    // Meanwhile life goes on through B.
    await send(b, "o1", { type: "text_delta", delta: "during " })
    await create(b, "o2")

    db.restore()
    await eventually(async () => (await fetch(`${a.url}/healthz`)).status === 200, 15_000, "A healthy again")
    const lastId = onA.events.filter((e) => e.id).at(-1)!.id!
    const resumed = await watch(a, "o1", { "last-event-id": lastId })
    await send(b, "o1", { type: "text_delta", delta: "after" })
    await converged(a, "o1", () => [...onA.events, ...resumed.events])
    const text = sorted(foldArtifacts([...onA.events, ...resumed.events])).find((x) => x.kind === "text")?.text
    expect(text).toBe("before during after")
    // The session created during the outage is known to A, live updates included.
    expect(await statusOn(a, "o2")).toBe("bootstrapping")
    const listAgain = await watchSessions(a)
    expect(listAgain.events.some((e) => e.event === "session_snapshot" && e.data.session.id === "o2")).toBe(true)
    await sandbox(b, "o2")
    await listAgain.waitFor((e) => e.event === "session_updated" && e.data.id === "o2" && e.data.fields.status === "live")
  })
})

describe.skipIf(noPg)("runners across instances (issue 20)", () => {
  it("a runner connected to one instance serves a session created on another; stop and revoke from there reach it", async () => {
    cleanups.push(cleanupRunnerFiles)
    const { a, b } = await pair()
    const repo = makeRepo()
    const dir = tempDir()
    const { id, token } = (await a.request("POST", "/runners", { name: "shared" })).body
    const runner = new Runner({
      url: a.url,
      id,
      token,
      profiles: { scripted: { id: "scripted", name: "Scripted", command: process.execPath, args: [buildAgent("acp-agent")], env: {}, passEnv: [] } },
      repos: [repo],
      worktrees: join(dir, "worktrees"),
      minFreeDisk: 0
    })
    cleanups.push(() => runner.close())
    await runner.start()
    // B knows the runner though A registered it and holds its stream.
    await until(() => b.request("GET", "/runners"), (r) =>
      expect(r.body).toEqual([expect.objectContaining({ id, online: true, agents: [{ id: "scripted", name: "Scripted" }], repos: [repo] })]))

    const created = await b.request("POST", "/sessions/across", { agent: "scripted", prompt: "write notes.txt from B" })
    expect(created.status, created.text).toBe(201)
    expect(created.body).toMatchObject({ agent: "scripted", runner: id })
    const done = await until(() => b.request("GET", "/sessions/across"), (r) =>
      expect(r.body).toMatchObject({ status: "idle", workspace: { path: expect.any(String) } }))
    expect(readFileSync(join(done.body.workspace.path, "notes.txt"), "utf8")).toBe("from B\n")
    expect((await artifacts(b, "across")).some((x) => x.kind === "text" && x.text === "wrote notes.txt")).toBe(true)

    expect((await b.request("POST", "/sessions/across/stop")).status).toBe(202)
    await until(() => b.request("GET", "/sessions/across"), (r) => expect(r.body.status).toBe("disconnected"))

    expect((await b.request("DELETE", `/runners/${id}`)).status).toBe(204)
    expect(await Promise.race([runner.ended, new Promise((r) => setTimeout(() => r("still running"), 10_000))])).toBe("this runner was revoked")
    await until(() => a.request("GET", "/runners"), (r) => expect(r.body).toEqual([]))
  })
})
