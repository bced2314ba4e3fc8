/**
 * The typed client (`@rein-ai/server/client`) against a real server over
 * real sockets: requests and their errors, converging watches of the
 * session list and of a session's artifacts, reconnects with Last-Event-ID
 * across a server restart, and the sandbox side (commands, batching,
 * Idempotency-Key retries, auth).
 */
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import {
  type ArtifactsWatch,
  type SandboxCommand,
  type Event,
  type Fetch,
  mergeDeltas,
  ReinClient,
  ReinError,
  SandboxConnection,
  type Session,
  type SessionsWatch
} from "../src/client/index.js"
import { eventually, start, type TestServer, tempDir } from "./helpers.js"

const servers: Array<TestServer> = []
const watches: Array<SessionsWatch | ArtifactsWatch> = []
const sandboxes: Array<SandboxConnection> = []
const cleanups: Array<() => void> = []

const open = async (options?: Parameters<typeof start>[0]) => {
  const server = await start(options)
  servers.push(server)
  return server
}

/** Quick reconnects: the tests restart servers. */
const retry = { initialDelay: 30, maxDelay: 300 }

const clientFor = (server: { url: string }, options: { token?: string; fetch?: Fetch } = {}) =>
  new ReinClient({ baseUrl: server.url, retry, ...options })

const sandboxFor = (url: string, sessionId: string, options: Partial<ConstructorParameters<typeof SandboxConnection>[0]> = {}) => {
  const s = new SandboxConnection({ baseUrl: url, sessionId, retry: { ...retry, maxAttempts: 20 }, ...options })
  sandboxes.push(s)
  return s
}

const track = <W extends SessionsWatch | ArtifactsWatch>(w: W): W => {
  watches.push(w)
  return w
}

afterEach(async () => {
  for (const w of watches.splice(0)) w.close()
  await Promise.all(sandboxes.splice(0).map((s) => s.close().catch(() => {})))
  await Promise.all(servers.splice(0).map((s) => s.close()))
  for (const c of cleanups.splice(0)) c()
})

/** A fetch that records every request's method, path and headers. */
const recordingFetch = () => {
  const calls: Array<{ method: string; path: string; headers: Record<string, string> }> = []
  const f: Fetch = (input, init) => {
    calls.push({
      method: init?.method ?? "GET",
      path: new URL(input).pathname,
      headers: Object.fromEntries(new Headers(init?.headers).entries())
    })
    return fetch(input, init)
  }
  return { fetch: f, calls }
}

const rejection = async (p: Promise<unknown>): Promise<ReinError> => {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(ReinError)
    return e as ReinError
  }
  throw new Error("expected a rejection")
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)

describe("ReinClient requests", () => {
  it("create, get, list, delete and commands, with errors as ReinError {status, code, message}", async () => {
    const server = await open()
    const client = clientFor(server)

    const created = await client.createSession("a1", { project: "web" })
    expect(created).toMatchObject({ id: "a1", status: "bootstrapping", project: "web", summary: null })
    await client.createSession("b:2")
    expect(await client.getSession("a1")).toEqual(created)
    expect(await client.getSession("nope")).toBeUndefined()
    expect((await client.listSessions()).map((s) => s.id)).toEqual(["a1", "b:2"])
    expect((await client.listSessions({ project: "web" })).map((s) => s.id)).toEqual(["a1"])
    expect(await client.artifacts("a1")).toEqual([])

    const exists = await rejection(client.createSession("a1"))
    expect(exists).toMatchObject({ status: 409, code: "conflict", message: "session a1 already exists" })
    expect((await rejection(client.createSession("bad id"))).status).toBe(400)
    const noSandbox = await rejection(client.prompt("a1", "hi"))
    expect(noSandbox).toMatchObject({ status: 409, code: "no_sandbox" })
    expect(noSandbox.transient).toBe(false)

    await client.deleteSession("a1")
    expect(await client.getSession("a1")).toBeUndefined()
    expect(await rejection(client.deleteSession("a1"))).toMatchObject({ status: 404, code: "not_found" })

    // No server at all: a network error, status 0, worth retrying.
    await server.close()
    const down = await rejection(client.listSessions())
    expect(down).toMatchObject({ status: 0, code: "network_error" })
    expect(down.transient).toBe(true)
  })
})

describe("ReinClient.watchSessions", () => {
  it("converges on snapshots, created, updated and removed, and iterates states", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("s1", { project: "web" })
    const watch = track(client.watchSessions())
    const webOnly = track(client.watchSessions({ project: "web" }))
    await watch.until((s) => s.synced && s.sessions.length === 1)
    expect(watch.state.connection.status).toBe("open")

    // The iterator yields the current state first, then changes.
    const seen: Array<ReadonlyArray<string>> = []
    const iterated = (async () => {
      for await (const state of watch) {
        seen.push(state.sessions.map((s) => s.id))
        if (state.sessions.some((s) => s.id === "s2")) break
      }
    })()
    await client.createSession("s2", { project: "api" })
    await iterated
    expect(seen[0]).toEqual(["s1"])
    expect(seen[seen.length - 1]).toEqual(["s1", "s2"])

    // Status (a sandbox connects) and summary changes arrive as session_updated.
    const sandbox = sandboxFor(server.url, "s2")
    await sandbox.connect()
    await watch.until((s) => s.sessions.find((x) => x.id === "s2")?.status === "live")
    await sandbox.send([{ type: "summary", text: "Fixing the login bug" }, { type: "turn_end" }])
    await watch.until((s) => {
      const s2 = s.sessions.find((x) => x.id === "s2")
      return s2?.summary === "Fixing the login bug" && s2.status === "idle"
    })

    await client.deleteSession("s1")
    await watch.until((s) => !s.sessions.some((x) => x.id === "s1"))
    await webOnly.until((s) => s.synced && s.sessions.length === 0)

    // What the watch holds is what the server lists, field for field (lastHeartbeat is not streamed).
    const listed = await client.listSessions()
    const strip = (list: ReadonlyArray<Session>) => list.map(({ lastHeartbeat: _, ...rest }) => rest)
    expect(strip(watch.state.sessions)).toEqual(strip(listed))
    expect(webOnly.state.sessions).toEqual([])

    watch.close()
    expect((await watch.done).connection.status).toBe("closed")
  })

  it("reports a refused token as a final 'failed' state", async () => {
    const server = await open({ token: "s3cret" })
    const watch = track(clientFor(server).watchSessions())
    const final = await watch.done
    expect(final.connection.status).toBe("failed")
    expect(final.connection.error).toMatchObject({ status: 401, code: "unauthorized" })
    const wrong = track(clientFor(server, { token: "nope" }).watchSessions())
    expect((await wrong.done).connection.error?.status).toBe(403)
  })
})

describe("ReinClient.watchSession", () => {
  it("converges to GET /artifacts while a turn streams, and ends as 'gone' when the session is deleted", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("t1")
    const sandbox = sandboxFor(server.url, "t1")
    await sandbox.connect()
    const watch = track(client.watchSession("t1"))
    await watch.until((s) => s.synced)

    await client.prompt("t1", "fix the bug")
    const words = "Looking at the failing test, the bug is an off-by-one in the pager.".split(" ")
    void sandbox.send({ type: "turn_start" })
    for (const w of words) void sandbox.send({ type: "text_delta", delta: `${w} ` })
    void sandbox.send({ type: "tool_call_start", toolCallId: "t1", name: "read_file" })
    for (const c of ['{"path":', '"src/pager.ts"}']) void sandbox.send({ type: "tool_call_input_delta", toolCallId: "t1", delta: c })
    void sandbox.send({ type: "tool_call_end", toolCallId: "t1", output: "export const pages = (n) => n + 1" })
    void sandbox.send({ type: "plan", entries: [{ content: "fix", status: "in_progress" }] })
    void sandbox.send({ type: "plan", entries: [{ content: "fix", status: "completed" }] })
    void sandbox.send({ type: "usage", inputTokens: 10, outputTokens: 5 })
    void sandbox.send({ type: "usage", inputTokens: 1, outputTokens: 2, costUsd: 0.01 })
    await sandbox.send({ type: "turn_end", stopReason: "end_turn" })

    const stored = await client.artifacts("t1")
    expect(stored.map((a) => a.kind)).toEqual(["user_message", "text", "tool_call", "plan", "usage"])
    expect(stored[1]!.text).toBe(words.map((w) => `${w} `).join(""))
    const converged = await watch.until((s) => same(s.artifacts, stored), { timeoutMs: 10_000 })
    expect(converged.artifacts).toEqual(stored)
    expect(watch.lastEventId).toBe(String(stored[stored.length - 1]!.seq))

    // Deleting the session ends the stream; the reconnect finds a 404: final state "gone".
    const commands = sandbox.commands()
    await client.deleteSession("t1")
    const final = await watch.done
    expect(final.connection.status).toBe("gone")
    expect(final.artifacts).toEqual(stored)
    // The sandbox's command stream is told (session_removed): final as "removed", and its iterator ends.
    expect((await commands.next()).done).toBe(true)
    expect(sandbox.state.status).toBe("removed")
  })

  it("resumes with Last-Event-ID after a server restart and converges, nothing lost or doubled", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const dbPath = join(dir, "rein.db")
    const first = await start({ dbPath })
    const port = first.port
    const recorder = recordingFetch()
    const client = clientFor(first, { fetch: recorder.fetch })
    await client.createSession("r1")
    const sandbox = sandboxFor(first.url, "r1")
    await sandbox.connect()
    const watch = track(client.watchSession("r1"))
    const list = track(client.watchSessions())
    await watch.until((s) => s.synced)
    await sandbox.send([
      { type: "turn_start" },
      { type: "text_delta", delta: "before " },
      { type: "tool_call_start", toolCallId: "c1", name: "ls" },
      { type: "text_delta", delta: "the restart" }
    ])
    await watch.until((s) => s.artifacts.length === 3 && s.artifacts[2]!.text === "the restart")
    const lastSeen = watch.lastEventId
    expect(lastSeen).toBe("3")

    await first.close()
    await watch.until((s) => s.connection.status === "reconnecting")
    const second = await start({ dbPath, port })
    servers.push(second)

    // The watch reconnects by itself, sending the last id it saw.
    await watch.until((s) => s.connection.status === "open" && s.synced)
    const resumed = recorder.calls.filter((c) => c.path === "/sessions/r1/stream")
    expect(resumed.length).toBeGreaterThanOrEqual(2)
    expect(resumed[0]!.headers["last-event-id"]).toBeUndefined()
    expect(resumed[resumed.length - 1]!.headers["last-event-id"]).toBe(lastSeen)

    // Live changes after the restart: an append to an old artifact, a new one.
    await sandbox.connect()
    await list.until((s) => s.synced && s.sessions[0]?.status === "live", { timeoutMs: 15_000 })
    await sandbox.send([
      { type: "tool_call_end", toolCallId: "c1", output: "a b c" },
      { type: "text_delta", delta: "after." },
      { type: "turn_end" }
    ])
    const stored = await client.artifacts("r1")
    expect(stored.map((a) => [a.kind, a.text ?? a.status])).toEqual([
      ["text", "before "],
      ["tool_call", "done"],
      ["text", "the restart"],
      ["text", "after."]
    ])
    const converged = await watch.until((s) => same(s.artifacts, stored))
    expect(converged.artifacts).toEqual(stored)
  })
})

describe("ReinClient paging (issue 23)", () => {
  it("artifactsPage: the newest page, before, after, more; a bad limit is a ReinError 400", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("p1")
    const sandbox = sandboxFor(server.url, "p1")
    await sandbox.connect()
    await sandbox.send(Array.from({ length: 30 }, (_, i) => ({ type: "file_change", path: `f${i}`, action: "modify" }) as Event))
    const all = await client.artifacts("p1")
    expect(all.length).toBe(30)
    expect(await client.artifactsPage("p1", { limit: 10 })).toEqual({ artifacts: all.slice(20), more: true })
    expect(await client.artifactsPage("p1", { before: 21, limit: 10 })).toEqual({ artifacts: all.slice(10, 20), more: true })
    expect(await client.artifactsPage("p1", { before: 11, limit: 10 })).toEqual({ artifacts: all.slice(0, 10), more: false })
    expect(await client.artifactsPage("p1", { after: 25, limit: 10 })).toEqual({ artifacts: all.slice(25), more: false })
    expect(await client.artifactsPage("p1")).toEqual({ artifacts: all, more: false })
    const bad = await rejection(client.artifactsPage("p1", { limit: 5000 }))
    expect([bad.status, bad.code]).toEqual([400, "bad_request"])
    expect(bad.message).toMatch(/^limit: /)
    expect((await rejection(client.artifactsPage("nobody"))).status).toBe(404)
  })

  it("watchSession({ tail }): ?tail= on the first connection, then resumes by Last-Event-ID after a restart and converges", async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const dbPath = join(dir, "rein.db")
    const first = await open({ dbPath })
    const urls: Array<{ url: string; lastEventId: string | undefined }> = []
    const client = clientFor(first, {
      fetch: (input, init) => {
        urls.push({ url: String(input), lastEventId: new Headers(init?.headers).get("last-event-id") ?? undefined })
        return fetch(input, init)
      }
    })
    await client.createSession("w1")
    const sandbox = sandboxFor(first.url, "w1")
    await sandbox.connect()
    await sandbox.send([
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "old", name: "build" },
      ...Array.from({ length: 20 }, (_, i) => ({ type: "file_change", path: `f${i}`, action: "modify" }) as Event)
    ])
    const all = await client.artifacts("w1")
    const watch = track(client.watchSession("w1", { tail: 3 }))
    const synced = await watch.until((s) => s.synced)
    expect(synced.artifacts).toEqual([all[0], ...all.slice(-3)])
    const streams = () => urls.filter((u) => new URL(u.url).pathname === "/sessions/w1/stream")
    expect(streams()).toEqual([{ url: `${first.url}/sessions/w1/stream?tail=3`, lastEventId: undefined }])

    await first.close()
    servers.splice(servers.indexOf(first), 1)
    await watch.until((s) => s.connection.status === "reconnecting")
    const second = await open({ dbPath, port: first.port })
    await watch.until((s) => s.connection.status === "open" && s.synced)
    expect(streams().at(-1)).toEqual({ url: `${second.url}/sessions/w1/stream`, lastEventId: String(all.length) })

    await sandbox.connect()
    await eventually(async () => (await client.getSession("w1"))?.status === "live", 15_000, "the sandbox back")
    await sandbox.send([{ type: "tool_call_end", toolCallId: "old", output: "built" }, { type: "text_delta", delta: "done" }])
    const stored = await client.artifacts("w1")
    const converged = await watch.until((s) => same(s.artifacts, stored.filter((a) => a.seq === 1 || a.seq > all.length - 3)))
    expect(converged.artifacts.at(-1)).toMatchObject({ kind: "text", text: "done" })
    expect(converged.artifacts[0]).toMatchObject({ kind: "tool_call", status: "done", output: "built" })
  })
})

describe("SandboxConnection", () => {
  it("a newer sandbox takes the session over: the older ends superseded and never reconnects (issue 20)", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("two1")
    const older = sandboxFor(server.url, "two1")
    await older.connect()
    const states: Array<string> = []
    older.onState((s) => states.push(s.status))
    const newer = sandboxFor(server.url, "two1")
    await newer.connect()
    await eventually(() => older.state.status === "superseded", 10_000, "the older connection superseded")
    // Given time to (wrongly) come back, it stays out: the newer one keeps the session.
    await new Promise((r) => setTimeout(r, 500))
    expect(states).toEqual(["superseded"])
    expect(newer.state.status).toBe("open")
    const got: Array<string> = []
    newer.onCommand((c) => got.push(c.type))
    await client.prompt("two1", "for the newer")
    await eventually(() => got.length === 1, 10_000, "the newer sandbox gets the prompt")
    expect((await client.getSession("two1"))?.status).toBe("live")
  })

  it("sends awaited one after another all arrive (the next send lands while the pump is finishing)", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("seq1")
    const sandbox = sandboxFor(server.url, "seq1")
    await sandbox.connect()
    const sent = async () => {
      for (let i = 0; i < 20; i++) await sandbox.send({ type: "custom", name: `n${i}` })
    }
    await Promise.race([sent(), new Promise((_, reject) => setTimeout(() => reject(new Error("a send never resolved")), 10_000))])
    expect((await client.artifacts("seq1")).map((a) => a.name)).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`))
  })

  it("postRefusedSingly: a batch refused for one bad event is posted again event by event, in place, before what was queued after it", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("split1")
    const refused: Array<string> = []
    const sandbox = sandboxFor(server.url, "split1", { postRefusedSingly: true, onError: (e, events) => refused.push(`${e.status} ${events.map((x) => x.type).join(",")}`) })
    const first = sandbox.send([
      { type: "custom", name: "a" },
      { type: "tool_call_end", toolCallId: "nope" },
      { type: "custom", name: "b" }
    ])
    const after = sandbox.send({ type: "custom", name: "c" })
    expect((await rejection(first)).status).toBe(400)
    await after
    expect((await client.artifacts("split1")).map((a) => a.name)).toEqual(["a", "b", "c"])
    expect(refused).toEqual(["400 tool_call_end"])
  })

  it("receives commands in order (iterator and callback) and makes the session live", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("c1")
    const viaCallback: Array<SandboxCommand> = []
    const sandbox = sandboxFor(server.url, "c1", { onCommand: (c) => viaCallback.push(c) })
    const iterator = sandbox.commands()
    await sandbox.connect()
    expect(sandbox.state.status).toBe("open")
    expect((await client.getSession("c1"))?.status).toBe("live")

    await client.prompt("c1", "one")
    await client.prompt("c1", "two")
    await sandbox.send({ type: "permission_request", requestId: "p1", title: "Write?" })
    await client.replyPermission("c1", "p1", "allow_once")
    await client.abort("c1")
    const got: Array<SandboxCommand> = []
    for await (const c of iterator) {
      got.push(c)
      if (got.length === 4) break
    }
    const expected = [
      { type: "prompt", text: "one" },
      { type: "prompt", text: "two" },
      { type: "permission_reply", requestId: "p1", decision: "allow_once", optionId: null },
      { type: "abort" }
    ]
    expect(got).toEqual(expected)
    expect(viaCallback).toEqual(expected)
    // The first answer wins; a second is a 409 for the client.
    expect(await rejection(client.replyPermission("c1", "p1", "reject"))).toMatchObject({ status: 409, code: "conflict" })
  })

  it("rejects connect() with 404 for an unknown session", async () => {
    const server = await open()
    const sandbox = sandboxFor(server.url, "missing")
    expect(await rejection(sandbox.connect())).toMatchObject({ status: 404, code: "not_found" })
    expect(sandbox.state.status).toBe("gone")
  })

  it("batches deltas that arrive together into one request, merged, in order", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("b1")
    const recorder = recordingFetch()
    const sandbox = sandboxFor(server.url, "b1", { fetch: recorder.fetch, batchDelay: 50 })
    await sandbox.connect()
    const pieces = Array.from({ length: 300 }, (_, i) => `w${i} `)
    const sends = pieces.map((delta) => sandbox.send({ type: "text_delta", delta }))
    sends.push(sandbox.send({ type: "reasoning_delta", delta: "hmm" }))
    sends.push(sandbox.send({ type: "text_delta", delta: "end" }))
    await Promise.all(sends)
    const posts = recorder.calls.filter((c) => c.method === "POST" && c.path === "/sessions/b1/events")
    expect(posts.length).toBe(1)
    const stored = await client.artifacts("b1")
    expect(stored.map((a) => [a.kind, a.text])).toEqual([
      ["text", pieces.join("")],
      ["reasoning", "hmm"],
      ["text", "end"]
    ])

    // Merging only joins adjacent deltas to the same artifact.
    const events: Array<Event> = [
      { type: "text_delta", delta: "a" },
      { type: "text_delta", delta: "b" },
      { type: "text_delta", delta: "c", partId: "p" },
      { type: "tool_call_input_delta", toolCallId: "x", delta: "{" },
      { type: "tool_call_input_delta", toolCallId: "x", delta: "}" },
      { type: "tool_call_input_delta", toolCallId: "y", delta: "[" },
      { type: "heartbeat" },
      { type: "text_delta", delta: "d" }
    ]
    expect(mergeDeltas(events)).toEqual([
      { type: "text_delta", delta: "ab" },
      { type: "text_delta", delta: "c", partId: "p" },
      { type: "tool_call_input_delta", toolCallId: "x", delta: "{}" },
      { type: "tool_call_input_delta", toolCallId: "y", delta: "[" },
      { type: "heartbeat" },
      { type: "text_delta", delta: "d" }
    ])
  })

  it("retries a batch whose response was lost with the same Idempotency-Key, and the server applies it once", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("i1")
    const posts: Array<{ key: string | null; outcome: string }> = []
    let failures = ["lost", "503"]
    const flaky: Fetch = async (input, init) => {
      if (init?.method !== "POST" || !input.endsWith("/events")) return fetch(input, init)
      const key = new Headers(init.headers).get("idempotency-key")
      const outcome = failures.shift() ?? "ok"
      posts.push({ key, outcome })
      if (outcome === "503") {
        return new Response(JSON.stringify({ error: { code: "store_unavailable", message: "busy" } }), {
          status: 503,
          headers: { "retry-after": "0", "content-type": "application/json" }
        })
      }
      const res = await fetch(input, init)
      if (outcome === "lost") throw new TypeError("fetch failed: socket hang up") // applied, but the answer never came
      return res
    }
    const sandbox = sandboxFor(server.url, "i1", { fetch: flaky })
    await sandbox.send([{ type: "text_delta", delta: "once" }, { type: "usage", inputTokens: 5, outputTokens: 7 }])
    expect(posts.map((p) => p.outcome)).toEqual(["lost", "503", "ok"])
    expect(new Set(posts.map((p) => p.key)).size).toBe(1)
    expect(posts[0]!.key).toMatch(/.{8,}/)

    // The next batch has a new key (usage is metadata: the reply goes on in the same text, issue 21).
    failures = []
    await sandbox.send({ type: "text_delta", delta: " more" })
    expect(posts[3]!.key).not.toBe(posts[0]!.key)
    const stored = await client.artifacts("i1")
    expect(stored.map((a) => [a.kind, a.text ?? a.inputTokens])).toEqual([
      ["text", "once more"],
      ["usage", 5]
    ])
  })

  it("rejects a batch the server refuses (400) without retrying it, reports it, and carries on", async () => {
    const server = await open()
    const client = clientFor(server)
    await client.createSession("e1")
    const errors: Array<ReinError> = []
    const recorder = recordingFetch()
    const sandbox = sandboxFor(server.url, "e1", { fetch: recorder.fetch, onError: (e) => errors.push(e) })
    const bad = sandbox.send({ type: "tool_call_end", toolCallId: "nope" })
    const error = await rejection(bad)
    expect(error).toMatchObject({ status: 400, code: "bad_request" })
    expect(error.message).toMatch(/unknown tool call nope/)
    expect(errors).toEqual([error])
    expect(recorder.calls.filter((c) => c.method === "POST").length).toBe(1)
    await sandbox.send({ type: "text_delta", delta: "still fine" })
    expect((await client.artifacts("e1")).map((a) => a.text)).toEqual(["still fine"])
  })

  it("works with auth: the client token, or the session's own sandbox token", async () => {
    const server = await open({ token: "s3cret" })
    const client = clientFor(server, { token: "s3cret" })
    expect(await rejection(clientFor(server).listSessions())).toMatchObject({ status: 401 })
    const created = await client.createSession("k1")
    expect(created.sandboxToken).toMatch(/^rst_/)
    const sandbox = sandboxFor(server.url, "k1", { token: created.sandboxToken })
    await sandbox.connect()
    const watch = track(client.watchSession("k1"))
    await watch.until((s) => s.synced)
    await client.prompt("k1", "hello")
    await sandbox.send({ type: "text_delta", delta: "hi there" })
    await watch.until((s) => s.artifacts.length === 2 && s.artifacts[1]!.text === "hi there")
    // The sandbox token opens that session's sandbox routes only.
    const other = sandboxFor(server.url, "k1", { token: "wrong" })
    expect(await rejection(other.connect())).toMatchObject({ status: 403 })
  })
})
