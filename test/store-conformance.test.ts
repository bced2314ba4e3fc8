/**
 * The SessionStore contract, written once and run against every store:
 * memory, SQLite (`:memory:` and a file) and PostgreSQL. The PostgreSQL runs
 * need `DATABASE_URL` (set by test/globalSetup.ts, which starts a throwaway cluster
 * when PostgreSQL is installed)
 * and are skipped without it; each test gets its own schema.
 *
 * Plus one end-to-end smoke over HTTP with `createServer({ pgUrl })`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { join } from "node:path"
import { isDeepStrictEqual } from "node:util"
import { afterEach, describe, expect, it } from "vitest"
import type { Artifact, CommittedChange } from "../src/Domain/Artifact.js"
import { newSession, type Session } from "../src/Domain/Session.js"
import type { ServerOptions } from "../src/Server.js"
import { type Commit, idempotencyWindow, layerMemory, type Page, SessionStore, tailOf } from "../src/SessionStore.js"
import * as Pg from "../src/SessionStore/Pg.js"
import * as Sqlite from "../src/SessionStore/Sqlite.js"
import { foldArtifacts, pgSchema, type SseClient, type SseEvent, sse, sorted, start, type TestServer, tempDir } from "./helpers.js"

const databaseUrl = process.env.DATABASE_URL
const noPg = databaseUrl === undefined || databaseUrl === ""

type Store = typeof SessionStore.Service

/** A place a store lives: `open` may be called again (after the last one closed) to reopen it. */
interface Place {
  readonly open: () => Layer.Layer<SessionStore, unknown>
  readonly persistent: boolean
  readonly cleanup: () => Promise<void>
}

/** Runs `f` against the store, closing it afterwards. */
const use = <A>(layer: Layer.Layer<SessionStore, unknown>, f: (store: Store) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(Layer.build(layer), (ctx) => f(Context.get(ctx, SessionStore)))))

const places: ReadonlyArray<readonly [string, boolean, () => Promise<Place>]> = [
  ["memory", false, async () => {
    // One store for the whole test: "reopening" hands back the same one.
    const shared = await Effect.runPromise(Effect.scoped(Layer.build(Layer.fresh(layerMemory))))
    return { open: () => Layer.succeedContext(shared), persistent: false, cleanup: async () => {} }
  }],
  ["sqlite :memory:", false, async () => ({
    open: () => Sqlite.layer({ filename: ":memory:" }),
    persistent: false,
    cleanup: async () => {}
  })],
  ["sqlite file", false, async () => {
    const tmp = tempDir()
    const filename = join(tmp.dir, "rein.db")
    return { open: () => Sqlite.layer({ filename }), persistent: true, cleanup: async () => tmp.cleanup() }
  }],
  ["postgresql", noPg, async () => {
    const db = await pgSchema(databaseUrl!)
    return { open: () => Pg.layer({ url: db.url }), persistent: true, cleanup: db.drop }
  }]
]

const NOW = 1_764_000_000_000

const session = (id: string, createdAt = NOW, project: string | null = null): Session => newSession(id, project, createdAt)

const textArtifact = (seq: number, text: string, at = NOW): Artifact => ({ seq, kind: "text", text, createdAt: at, updatedAt: at })

const created = (artifact: Artifact, rev: number): CommittedChange => ({ _tag: "created", artifact, rev })
const append = (seq: number, field: string, text: string, rev: number, at = NOW + rev): CommittedChange => ({
  _tag: "updated",
  seq,
  field,
  append: text,
  at,
  rev
})
const set = (seq: number, field: string, value: unknown, rev: number, at = NOW + rev): CommittedChange => ({
  _tag: "updated",
  seq,
  field,
  set: value,
  at,
  rev
})

/**
 * Commits changes one revision at a time, expecting the rev the store has, as Sessions does (so
 * PostgreSQL takes its one-statement path wherever it can).
 */
const commit = (store: Store, id: string, rev: number, changes: ReadonlyArray<CommittedChange>, extra: Partial<Commit> = {}) =>
  Effect.flatMap(store.get(id), (stored) =>
    store.commit(id, { rev, expectedRev: stored?.rev, lastHeartbeat: NOW + rev, changes, ...extra }))

/** Text that stresses the chunked, escaped appends. */
const tricky = "plain \"quoted\" back\\slash\nnew line\ttab \u0000 nul é ü 中文 🙂 \u2028 end"

describe.each(places)("SessionStore conformance (%s)", (_name, skip, makePlace) => {
  let place: Place | undefined
  afterEach(async () => {
    await place?.cleanup()
    place = undefined
  })
  const run = async <A>(f: (store: Store) => Effect.Effect<A, unknown>) => {
    place ??= await makePlace()
    return use(place.open(), f)
  }

  it.skipIf(skip)("create, then create again: SessionExists; the first one is unchanged", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("a1", NOW, "web"), "hash-a1")
        const again = yield* Effect.flip(store.create({ ...session("a1", NOW + 5), summary: "other" }))
        expect(again._tag).toBe("SessionExists")
        expect(yield* store.list).toEqual([{ session: session("a1", NOW, "web"), rev: 0, sandboxTokenHash: "hash-a1" }])
        yield* store.create(session("a2"))
        expect((yield* store.list)[1]).toEqual({ session: session("a2"), rev: 0, sandboxTokenHash: null })
      })
    ))

  it.skipIf(skip)("list: oldest first, ties in creation order", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("b", NOW + 2))
        yield* store.create(session("a", NOW + 1))
        yield* store.create(session("d", NOW + 2))
        yield* store.create(session("c", NOW + 2))
        yield* store.create(session("e", NOW))
        expect((yield* store.list).map((s) => s.session.id)).toEqual(["e", "a", "b", "d", "c"])
      })
    ))

  it.skipIf(skip)("update patches status, summary and lastHeartbeat; an empty patch or unknown id is a no-op", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("u1"))
        yield* store.update("u1", { status: "live" })
        yield* store.update("u1", { summary: "doing things", lastHeartbeat: NOW + 100 })
        yield* store.update("u1", {})
        yield* store.update("nobody", { status: "idle" })
        expect(yield* store.list).toEqual([{
          session: { ...session("u1"), status: "live", summary: "doing things", lastHeartbeat: NOW + 100 },
          rev: 0,
          sandboxTokenHash: null
        }])
        yield* store.update("u1", { summary: null })
        expect((yield* store.list)[0]!.session.summary).toBeNull()
      })
    ))

  it.skipIf(skip)("commit: pendingPermissions, usage and lastStopReason, with or without changes; others' fields untouched", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("f1"))
        yield* store.create(session("f2"))
        const usage = { inputTokens: 2 ** 40, outputTokens: 7, costUsd: 0.1 + 0.2 }
        yield* commit(store, "f1", 1, [created(textArtifact(1, "x"), 1)], { pendingPermissions: 3, usage, lastStopReason: "error" })
        expect((yield* store.get("f1"))!.session).toEqual({ ...session("f1"), lastHeartbeat: NOW + 1, pendingPermissions: 3, usage, lastStopReason: "error" })
        // A commit that states some of them leaves the others as they were.
        yield* commit(store, "f1", 2, [], { pendingPermissions: 0, lastStopReason: null })
        yield* commit(store, "f1", 3, [append(1, "text", "y", 3)], { usage: { inputTokens: 1, outputTokens: 0, costUsd: null } })
        const listed = (yield* store.list).map((x) => x.session)
        expect(listed).toEqual([
          { ...session("f1"), lastHeartbeat: NOW + 3, pendingPermissions: 0, usage: { inputTokens: 1, outputTokens: 0, costUsd: null }, lastStopReason: null },
          session("f2")
        ])
      })
    ))

  it.skipIf(skip)("commit: created, append and set changes, with the session's rev, heartbeat, status and summary", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("c1"))
        yield* store.create(session("other"))
        yield* commit(store, "c1", 1, [created(textArtifact(1, "Hel"), 1)], { status: "live" })
        yield* commit(store, "c1", 3, [
          append(1, "text", "lo", 2),
          created({ seq: 2, kind: "tool_call", toolCallId: "t1", name: "bash", input: "", status: "running", createdAt: NOW + 3, updatedAt: NOW + 3 }, 3)
        ], { summary: "s" })
        yield* commit(store, "c1", 7, [
          append(2, "input", "{\"cmd\":", 4),
          append(2, "input", "\"ls\"}", 5),
          set(2, "status", "done", 6),
          set(2, "output", { lines: ["a", "b"], code: 0, note: tricky }, 7)
        ])
        yield* commit(store, "c1", 8, [
          created({ seq: 3, kind: "custom", name: "empty", data: null, createdAt: NOW + 8, updatedAt: NOW + 8 }, 8)
        ], { status: "idle", summary: null })

        const stored = (yield* store.list).find((s) => s.session.id === "c1")!
        expect(stored.rev).toBe(8)
        expect(stored.session).toMatchObject({ status: "idle", summary: null, lastHeartbeat: NOW + 8 })
        const snapshot = yield* store.artifacts("c1")
        expect(snapshot.rev).toBe(8)
        expect(snapshot.artifacts).toEqual([
          { seq: 1, kind: "text", text: "Hello", createdAt: NOW, updatedAt: NOW + 2 },
          {
            seq: 2,
            kind: "tool_call",
            toolCallId: "t1",
            name: "bash",
            input: "{\"cmd\":\"ls\"}",
            status: "done",
            output: { lines: ["a", "b"], code: 0, note: tricky },
            createdAt: NOW + 3,
            updatedAt: NOW + 7
          },
          { seq: 3, kind: "custom", name: "empty", data: null, createdAt: NOW + 8, updatedAt: NOW + 8 }
        ])
        expect(yield* store.artifacts("other")).toEqual({ rev: 0, artifacts: [] })
        expect(yield* store.artifacts("unknown")).toEqual({ rev: 0, artifacts: [] })
      })
    ))

  it.skipIf(skip)("long appends over the chunk size, escapes and unicode come back exactly; a set of an appendable field replaces it", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("l1"))
        const initial = "I".repeat(5000) + tricky
        yield* commit(store, "l1", 1, [created(textArtifact(1, initial), 1)])
        let text = initial
        let rev = 1
        // Small appends crossing chunk boundaries, single commits.
        for (let i = 0; i < 300; i++) {
          const delta = `${i}:${tricky.slice(i % tricky.length)}|`
          text += delta
          rev++
          yield* commit(store, "l1", rev, [append(1, "text", delta, rev)])
        }
        // A run of appends in one commit (a store may coalesce it), and one larger than two chunks.
        const run = Array.from({ length: 100 }, (_, i) => append(1, "text", `r${i}🙂`, rev + 1 + i))
        text += run.map((c) => (c as { append: string }).append).join("")
        rev += 100
        yield* commit(store, "l1", rev, run)
        const huge = "H\"\\".repeat(3000)
        text += huge
        rev++
        yield* commit(store, "l1", rev, [append(1, "text", huge, rev)])
        expect(text.length).toBeGreaterThan(4 * 2048)
        expect((yield* store.artifacts("l1")).artifacts[0]!.text).toBe(text)

        // Setting an appendable field replaces all of it; appends continue from the new value.
        rev++
        yield* commit(store, "l1", rev, [set(1, "text", "fresh", rev), append(1, "text", "+1", rev + 1)])
        rev++
        yield* commit(store, "l1", rev, [append(1, "text", "+2", rev)])
        expect((yield* store.artifacts("l1")).artifacts).toEqual([
          { seq: 1, kind: "text", text: "fresh+1+2", createdAt: NOW, updatedAt: NOW + rev }
        ])
      })
    ))

  it.skipIf(skip)("a tool call's input set by tool_call_update replaces it on every path: same commit, after appends, long, empty", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("i1"))
        const tool = (seq: number, input: string): Artifact => ({
          seq,
          kind: "tool_call",
          toolCallId: `t${seq}`,
          name: "edit",
          title: null,
          toolKind: null,
          locations: null,
          input,
          output: null,
          status: "running",
          createdAt: NOW,
          updatedAt: NOW
        })
        const long = "L\"".repeat(1500) + tricky
        // Created and set in one commit; created long, appended to, then set short.
        yield* commit(store, "i1", 2, [created(tool(1, "{\"a\":1}"), 1), set(1, "input", "{\"b\":2}", 2)])
        yield* commit(store, "i1", 3, [created(tool(2, long), 3)])
        yield* commit(store, "i1", 4, [append(2, "input", "+more", 4)])
        yield* commit(store, "i1", 5, [set(2, "input", "short", 5)])
        // Appends continue from the value set, also on the next commit (a cached tail must not survive a set).
        yield* commit(store, "i1", 6, [append(2, "input", "+6", 6)])
        // Set long (over a chunk), then append in the same commit; then set empty and append.
        yield* commit(store, "i1", 8, [set(1, "input", long, 7), append(1, "input", "!", 8)])
        yield* commit(store, "i1", 9, [append(1, "input", "?", 9)])
        yield* commit(store, "i1", 10, [set(2, "input", "", 10)])
        const mid = yield* store.artifacts("i1")
        expect(mid.artifacts.map((a) => a.input)).toEqual([long + "!?", ""])
        yield* commit(store, "i1", 11, [append(2, "input", "after empty", 11)])
        yield* commit(store, "i1", 12, [set(2, "title", "Edit", 12), set(2, "toolKind", "edit", 12)])
        const { artifacts, rev } = yield* store.artifacts("i1")
        expect(rev).toBe(12)
        expect(artifacts).toEqual([
          { ...tool(1, long + "!?"), updatedAt: NOW + 9 },
          { ...tool(2, "after empty"), title: "Edit", toolKind: "edit", updatedAt: NOW + 12 }
        ])
        // A resume from seq 2 also carries seq 1, set after seq 2 was created: with the same values.
        expect((yield* store.artifacts("i1", 2)).artifacts).toEqual(artifacts)
      })
    ))

  it.skipIf(skip)("a surrogate pair split across two commits survives", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("p1"))
        yield* commit(store, "p1", 1, [created(textArtifact(1, "a\uD83D"), 1)])
        yield* commit(store, "p1", 2, [append(1, "text", "\uDE00b", 2)])
        yield* commit(store, "p1", 3, [created(textArtifact(2, "x"), 3), append(2, "text", "\uD83D", 4)])
        yield* commit(store, "p1", 5, [append(2, "text", "\uDE01", 5)])
        const artifacts = (yield* store.artifacts("p1")).artifacts
        expect(artifacts[0]!.text).toBe("a\u{1F600}b")
        expect(artifacts[1]!.text).toBe("x\u{1F601}")
      })
    ))

  it.skipIf(skip)("artifacts(id, N): seq >= N or changed after N was created; unknown N (0, past the end) gives all", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("r1"))
        for (let seq = 1; seq <= 5; seq++) yield* commit(store, "r1", seq, [created(textArtifact(seq, `t${seq}`, NOW + seq), seq)])
        // After artifact 3 was created (rev 3): artifact 1 changes; artifact 2 does not.
        yield* commit(store, "r1", 6, [append(1, "text", "!", 6)])
        const all = (yield* store.artifacts("r1")).artifacts
        expect(all.map((a) => a.seq)).toEqual([1, 2, 3, 4, 5])

        const from3 = yield* store.artifacts("r1", 3)
        expect(from3.rev).toBe(6)
        expect(from3.artifacts).toEqual([all[0], all[2], all[3], all[4]])
        expect((yield* store.artifacts("r1", 1)).artifacts).toEqual(all)
        expect((yield* store.artifacts("r1", 5)).artifacts).toEqual([all[0], all[4]])
        // Changed at a rev after 5's creation: 2 now qualifies too.
        yield* commit(store, "r1", 7, [set(2, "text", "two", 7)])
        const all2 = (yield* store.artifacts("r1")).artifacts
        expect((yield* store.artifacts("r1", 5)).artifacts).toEqual([all2[0], all2[1], all2[4]])
        for (const unknown of [0, 6, 99]) expect((yield* store.artifacts("r1", unknown))).toEqual({ rev: 7, artifacts: all2 })
        expect(yield* store.artifacts("unknown", 1)).toEqual({ rev: 0, artifacts: [] })
      })
    ))

  it.skipIf(skip)("artifacts(id, N): the same answer first at a rev, again, and after a whole read (a store may keep histories)", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("h1"))
        let rev = 0
        for (let seq = 1; seq <= 12; seq++) yield* commit(store, "h1", ++rev, [created(textArtifact(seq, `t${seq}`, NOW + seq), rev)])
        // Early artifacts change after later ones were created.
        yield* commit(store, "h1", ++rev, [append(2, "text", "+2", rev)])
        yield* commit(store, "h1", ++rev, [set(7, "text", "seven", rev)])
        yield* commit(store, "h1", ++rev, [append(2, "text", tricky, rev)])
        const createdRev = new Map<number, number>(Array.from({ length: 12 }, (_, i) => [i + 1, i + 1]))
        const updatedRev = new Map<number, number>([[2, 15], [7, 14]])
        for (const from of [undefined, 0, 1, 2, 3, 5, 6, 7, 8, 11, 12, 13, 99]) {
          // A commit first, so no read at this rev is kept yet.
          yield* commit(store, "h1", ++rev, [])
          const all = (yield* store.artifacts("h1")).artifacts
          yield* commit(store, "h1", ++rev, [])
          const expected = from === undefined || !createdRev.has(from)
            ? all
            : all.filter((a) => a.seq >= from || (updatedRev.get(a.seq) ?? 0) > createdRev.get(from)!)
          const first = yield* store.artifacts("h1", from)
          const again = yield* store.artifacts("h1", from)
          yield* store.artifacts("h1")
          const afterWhole = yield* store.artifacts("h1", from)
          for (const read of [first, again, afterWhole]) expect(read).toEqual({ rev, artifacts: expected })
        }
        // A commit after a kept read is in the next one.
        yield* store.artifacts("h1")
        yield* commit(store, "h1", ++rev, [append(12, "text", "!", rev)])
        const last = yield* store.artifacts("h1", 12)
        expect(last.rev).toBe(rev)
        expect(last.artifacts.find((a) => a.seq === 12)?.text).toBe("t12!")
      })
    ))

  it.skipIf(skip)("idempotency keys: per session, and only the last 10 000 are remembered", { timeout: 120_000 }, () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("k1"))
        yield* store.create(session("k2"))
        expect(yield* store.hasIdempotencyKey("k1", "key-0")).toBe(false)
        yield* commit(store, "k1", 1, [], { idempotencyKey: "key-0" })
        expect(yield* store.hasIdempotencyKey("k1", "key-0")).toBe(true)
        expect(yield* store.hasIdempotencyKey("k2", "key-0")).toBe(false)
        for (let i = 1; i < idempotencyWindow; i++) yield* commit(store, "k1", i + 1, [], { idempotencyKey: `key-${i}` })
        // Exactly the window: all remembered.
        expect(yield* store.hasIdempotencyKey("k1", "key-0")).toBe(true)
        yield* commit(store, "k1", idempotencyWindow + 1, [], { idempotencyKey: `key-${idempotencyWindow}` })
        expect(yield* store.hasIdempotencyKey("k1", "key-0")).toBe(false)
        expect(yield* store.hasIdempotencyKey("k1", "key-1")).toBe(true)
        expect(yield* store.hasIdempotencyKey("k1", `key-${idempotencyWindow}`)).toBe(true)
        expect((yield* store.list).find((s) => s.session.id === "k1")!.rev).toBe(idempotencyWindow + 1)
      })
    ))

  it.skipIf(skip)("idempotency keys of commits that change no artifact (same rev) keep the window exact", { timeout: 120_000 }, () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("h1"))
        // Heartbeats with keys: the session's rev does not move.
        for (let i = 0; i <= idempotencyWindow + 50; i++) yield* commit(store, "h1", 0, [], { idempotencyKey: `hb-${i}` })
        expect(yield* store.hasIdempotencyKey("h1", "hb-50")).toBe(false)
        expect(yield* store.hasIdempotencyKey("h1", "hb-51")).toBe(true)
        expect(yield* store.hasIdempotencyKey("h1", "hb-1000")).toBe(true)
        expect(yield* store.hasIdempotencyKey("h1", `hb-${idempotencyWindow + 50}`)).toBe(true)
      })
    ))

  it.skipIf(skip)("remove drops the session, its artifacts and keys; the id can be created afresh", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("x1"))
        yield* store.create(session("x2"))
        yield* commit(store, "x1", 1, [created(textArtifact(1, "A".repeat(3000)), 1)], { idempotencyKey: "k" })
        yield* commit(store, "x1", 2, [append(1, "text", "tail", 2)])
        yield* commit(store, "x2", 1, [created(textArtifact(1, "keep"), 1)], { idempotencyKey: "k" })
        yield* store.remove("x1")
        yield* store.remove("nobody")
        expect((yield* store.list).map((s) => s.session.id)).toEqual(["x2"])
        expect(yield* store.artifacts("x1")).toEqual({ rev: 0, artifacts: [] })
        expect(yield* store.hasIdempotencyKey("x1", "k")).toBe(false)
        expect(yield* store.hasIdempotencyKey("x2", "k")).toBe(true)
        expect((yield* store.artifacts("x2")).artifacts[0]!.text).toBe("keep")

        // Afresh: nothing of the old session leaks into the new one (appends included).
        yield* store.create(session("x1", NOW + 10))
        yield* commit(store, "x1", 1, [created(textArtifact(1, "new"), 1)])
        yield* commit(store, "x1", 2, [append(1, "text", "+", 2)])
        expect(yield* store.artifacts("x1")).toEqual({
          rev: 2,
          artifacts: [{ seq: 1, kind: "text", text: "new+", createdAt: NOW, updatedAt: NOW + 2 }]
        })
      })
    ))

  it.skipIf(skip)("get: the session as stored, with its rev and token hash; undefined when unknown", () =>
    run((store) =>
      Effect.gen(function*() {
        expect(yield* store.get("g1")).toBeUndefined()
        yield* store.create(session("g1", NOW, "p"), "hash-g1")
        yield* commit(store, "g1", 2, [created(textArtifact(1, "a"), 1), append(1, "text", "b", 2)], { status: "live" })
        expect(yield* store.get("g1")).toEqual({
          session: { ...session("g1", NOW, "p"), status: "live", lastHeartbeat: NOW + 2 },
          rev: 2,
          sandboxTokenHash: "hash-g1"
        })
      })
    ))

  it.skipIf(skip)("expectedRev: a commit or remove at another rev is StaleSession and writes nothing", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("v1"))
        yield* commit(store, "v1", 1, [created(textArtifact(1, "one"), 1)], { expectedRev: 0 })
        // Another writer committed rev 1 first: this one still expects 0.
        const stale = yield* Effect.flip(commit(store, "v1", 1, [created(textArtifact(1, "other"), 1)], { expectedRev: 0 }))
        expect(stale._tag).toBe("StaleSession")
        expect((yield* store.artifacts("v1")).artifacts).toEqual([textArtifact(1, "one")])
        expect((yield* store.get("v1"))?.rev).toBe(1)
        // Appends after a refused commit still land on the right text (no stale tail is used).
        yield* commit(store, "v1", 2, [append(1, "text", " two", 2)], { expectedRev: 1 })
        expect((yield* store.artifacts("v1")).artifacts[0]?.text).toBe("one two")
        expect((yield* Effect.flip(store.remove("v1", { rev: 1, createdAt: NOW })))._tag).toBe("StaleSession")
        // Another session under the same id (created at another time) is not this one.
        expect((yield* Effect.flip(store.remove("v1", { rev: 2, createdAt: NOW + 1 })))._tag).toBe("StaleSession")
        expect((yield* Effect.flip(commit(store, "v1", 3, [append(1, "text", "!", 3)], { createdAt: NOW + 1 })))._tag)
          .toBe("StaleSession")
        expect(yield* store.get("v1")).toBeDefined()
        yield* store.remove("v1", { rev: 2, createdAt: NOW })
        expect(yield* store.get("v1")).toBeUndefined()
        // A session that is gone is stale too: nothing is written for it.
        expect((yield* Effect.flip(commit(store, "v1", 3, [created(textArtifact(2, "x"), 3)], { expectedRev: 2 })))._tag)
          .toBe("StaleSession")
        expect((yield* store.artifacts("v1")).artifacts).toEqual([])
      })
    ))

  /** A session of `n` text artifacts whose text is long (chunked), escaped and appended to across commits. */
  const longSession = (store: Store, id: string, n: number) =>
    Effect.gen(function*() {
      yield* store.create(session(id))
      let rev = 0
      for (let seq = 1; seq <= n; seq++) {
        yield* commit(store, id, ++rev, [created(textArtifact(seq, seq % 3 === 0 ? "L".repeat(2100 + seq) : `t${seq} ${tricky}`, NOW + seq), rev)])
        if (seq % 4 === 0) yield* commit(store, id, ++rev, [append(seq, "text", tricky + "🙂".repeat(seq), rev)])
      }
      // Early artifacts grow after later ones exist.
      yield* commit(store, id, ++rev, [append(2, "text", "+two", rev), append(9, "text", "Z".repeat(3000), rev + 1)])
      return (yield* store.artifacts(id)).artifacts
    })

  it.skipIf(skip)("page: before, after, the newest; boundaries; more; text assembled right on every page", () =>
    run((store) =>
      Effect.gen(function*() {
        const all = yield* longSession(store, "pg1", 25)
        expect(all.map((a) => a.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1))
        const expectPage = (page: Page, seqs: ReadonlyArray<number>, more: boolean) =>
          expect(page).toEqual({ artifacts: seqs.map((seq) => all[seq - 1]), more })
        const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)

        // The newest page.
        expectPage(yield* store.page("pg1", { limit: 10 }), range(16, 25), true)
        expectPage(yield* store.page("pg1", { limit: 24 }), range(2, 25), true)
        expectPage(yield* store.page("pg1", { limit: 25 }), range(1, 25), false)
        expectPage(yield* store.page("pg1", { limit: 1000 }), range(1, 25), false)
        // Before: the page just before, ascending.
        for (const before of [1, 2, 5, 10, 11, 12, 25, 26, 27, 1000, 2 ** 40]) {
          const below = Math.min(before - 1, 25)
          expectPage(yield* store.page("pg1", { before, limit: 10 }), range(Math.max(1, below - 9), below), below > 10)
        }
        expectPage(yield* store.page("pg1", { before: 3, limit: 1 }), [2], true)
        // After: the page just after, ascending.
        for (const after of [1, 5, 14, 15, 16, 24, 25, 26, 2 ** 40]) {
          expectPage(yield* store.page("pg1", { after, limit: 10 }), range(after + 1, Math.min(25, after + 10)), after + 10 < 25)
        }
        expectPage(yield* store.page("pg1", { after: 24, limit: 1 }), [25], false)
        // Paging back from the newest, and forward from the first, gives the whole transcript.
        const back: Array<unknown> = []
        let page = yield* store.page("pg1", { limit: 7 })
        back.unshift(...page.artifacts)
        while (page.more) {
          page = yield* store.page("pg1", { before: page.artifacts[0]!.seq, limit: 7 })
          back.unshift(...page.artifacts)
        }
        expect(back).toEqual(all)
        const forward: Array<unknown> = [all[0]]
        for (let after = 1, more = true; more;) {
          const p = yield* store.page("pg1", { after, limit: 6 })
          forward.push(...p.artifacts)
          more = p.more
          after = p.artifacts.at(-1)?.seq ?? after
        }
        expect(forward).toEqual(all)
        // An append after a read shows on the next page read.
        yield* commit(store, "pg1", 100, [append(25, "text", "!", 100)])
        expect((yield* store.page("pg1", { limit: 1 })).artifacts[0]!.text).toBe(`${all[24]!.text}!`)
        // Nothing to page: an empty session, an unknown one.
        yield* store.create(session("pg2"))
        for (const id of ["pg2", "nobody"]) {
          for (const q of [{ limit: 10 }, { before: 5, limit: 10 }, { after: 1, limit: 10 }]) {
            expect(yield* store.page(id, q)).toEqual({ artifacts: [], more: false })
          }
        }
      })
    ))

  it.skipIf(skip)("tail(n): the last n, and before them what still changes: unfinished tool calls and permissions, the last of text, reasoning, plan, usage, agent", () =>
    run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("t1"))
        const at = (seq: number) => ({ seq, createdAt: NOW + seq, updatedAt: NOW + seq })
        const tool = (seq: number, status: string) =>
          ({ ...at(seq), kind: "tool_call", toolCallId: `c${seq}`, name: "bash", title: null, toolKind: null, locations: null, input: `{"n":${seq}} ${tricky}`, output: status === "done" ? tricky : null, status }) as Artifact
        const permission = (seq: number, decision: string | null) =>
          ({ ...at(seq), kind: "permission", requestId: `r${seq}`, toolCallId: null, title: `may I ${tricky}`, options: null, diff: null, decision, optionId: null }) as Artifact
        const artifacts: Array<Artifact> = [
          { ...at(1), kind: "user_message", text: "go" },
          { ...at(2), kind: "text", text: `hello ${tricky}` },
          tool(3, "running"),
          tool(4, "done"),
          permission(5, null),
          permission(6, "allow_once"),
          { ...at(7), kind: "plan", entries: [] },
          { ...at(8), kind: "reasoning", text: "hmm" },
          { ...at(9), kind: "text", text: "L".repeat(5000) },
          { ...at(10), kind: "usage", inputTokens: 1, outputTokens: 2, costUsd: null, context: null },
          { ...at(11), kind: "agent", name: "a", version: null, commands: [], modes: [], currentModeId: null },
          tool(12, "pending"),
          ...Array.from({ length: 8 }, (_, i) => textArtifact(13 + i, `t${13 + i}`, NOW + 13 + i))
        ]
        let rev = 0
        for (const a of artifacts) yield* commit(store, "t1", ++rev, [created(a, rev)])
        yield* commit(store, "t1", rev + 2, [append(3, "input", "+more", rev + 1), append(9, "text", "!", rev + 2)])
        rev += 2
        const all = (yield* store.artifacts("t1")).artifacts
        const tail = (seqs: ReadonlyArray<number>) => ({ rev, artifacts: seqs.map((seq) => all[seq - 1]) })
        expect(yield* store.tail("t1", 5)).toEqual(tail([3, 5, 7, 8, 10, 11, 12, 15, 16, 17, 18, 19, 20]))
        expect(yield* store.tail("t1", 1)).toEqual(tail([3, 5, 7, 8, 10, 11, 12, 19, 20]))
        expect(yield* store.tail("t1", 11)).toEqual(tail([3, 5, 7, 8, 9, ...Array.from({ length: 11 }, (_, i) => 10 + i)]))
        for (const n of [20, 21, 1000]) expect(yield* store.tail("t1", n)).toEqual(tail(all.map((a) => a.seq)))
        // Finished: the tool call and the permission are no longer carried.
        yield* commit(store, "t1", rev + 3, [set(3, "status", "done", rev + 1), set(5, "decision", "reject", rev + 2), set(12, "status", "running", rev + 3)])
        rev += 3
        const after = (yield* store.artifacts("t1")).artifacts
        expect(yield* store.tail("t1", 5)).toEqual({ rev, artifacts: [7, 8, 10, 11, 12, 15, 16, 17, 18, 19, 20].map((seq) => after[seq - 1]) })
        expect(yield* store.tail("nobody", 5)).toEqual({ rev: 0, artifacts: [] })
        yield* store.create(session("t2"))
        expect(yield* store.tail("t2", 5)).toEqual({ rev: 0, artifacts: [] })
      })
    ))

  it.skipIf(skip)("ping answers", () => run((store) => store.ping))

  it.skipIf(skip)("a persistent store keeps everything across a reopen, and appends continue", async () => {
    const text = "T".repeat(2040)
    await run((store) =>
      Effect.gen(function*() {
        yield* store.create(session("d1", NOW, "proj"), "h")
        yield* commit(store, "d1", 1, [created(textArtifact(1, text), 1)], { status: "live", idempotencyKey: "k1" })
        yield* commit(store, "d1", 2, [append(1, "text", "🙂🙂🙂🙂🙂", 2)])
      })
    )
    if (!place!.persistent) return
    await run((store) =>
      Effect.gen(function*() {
        expect(yield* store.list).toEqual([{
          session: { ...session("d1", NOW, "proj"), status: "live", lastHeartbeat: NOW + 2 },
          rev: 2,
          sandboxTokenHash: "h"
        }])
        expect(yield* store.hasIdempotencyKey("d1", "k1")).toBe(true)
        yield* commit(store, "d1", 3, [append(1, "text", "\uD83D", 3)])
        yield* commit(store, "d1", 4, [append(1, "text", "\uDE00!", 4)])
        expect((yield* store.artifacts("d1")).artifacts[0]!.text).toBe(text + "🙂🙂🙂🙂🙂😀!")
      })
    )
    await run((store) =>
      Effect.gen(function*() {
        expect((yield* store.artifacts("d1")).artifacts[0]!.text).toBe(text + "🙂🙂🙂🙂🙂😀!")
      })
    )
  })
})

describe("createServer({ pgUrl }): end to end", () => {
  const servers: Array<TestServer> = []
  const clients: Array<SseClient> = []
  const drops: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await Promise.all(servers.splice(0).map((s) => s.close()))
    for (const d of drops.splice(0)) await d()
  })

  it.skipIf(noPg)("sessions, sandbox stream, events and artifacts over HTTP; all of it survives a restart", async () => {
    const db = await pgSchema(databaseUrl!)
    drops.push(db.drop)
    const first = await start({ pgUrl: db.url, bootstrapTimeout: 600_000 })
    servers.push(first)
    expect((await first.request("POST", "/sessions/e1", { project: "web" })).status).toBe(201)
    expect((await first.request("POST", "/sessions/e1")).status).toBe(409)

    const sandbox = await sse(`${first.url}/sessions/e1/commands`)
    clients.push(sandbox)
    expect(sandbox.status).toBe(200)
    const watcher = await sse(`${first.url}/sessions/e1/stream`)
    clients.push(watcher)
    await watcher.waitFor((e) => e.event === "snapshot_complete")

    const events = [
      { type: "turn_start" },
      ...Array.from({ length: 120 }, (_, i) => ({ type: "text_delta", delta: `chunk ${i} é🙂 "q" \\ ` })),
      { type: "tool_call_start", toolCallId: "t1", name: "bash", input: "{" },
      { type: "tool_call_input_delta", toolCallId: "t1", delta: "\"cmd\":\"ls\"}" },
      { type: "tool_call_end", toolCallId: "t1", output: "a\nb" },
      { type: "summary", text: "listing files" }
    ]
    for (let i = 0; i < events.length; i += 10) {
      const res = await first.request("POST", "/sessions/e1/events", events.slice(i, i + 10))
      expect(res.status, res.text).toBe(202)
    }
    const keyed = await first.request("POST", "/sessions/e1/events", { type: "turn_end" }, { "idempotency-key": "once" })
    expect(keyed.status, keyed.text).toBe(202)

    const artifacts = (await first.request("GET", "/sessions/e1/artifacts")).body as Array<any>
    expect(artifacts.map((a) => a.kind)).toEqual(["text", "tool_call"])
    expect(artifacts[0].text).toBe(events.slice(1, 121).map((e) => (e as { delta: string }).delta).join(""))
    expect(artifacts[1]).toMatchObject({ input: "{\"cmd\":\"ls\"}", output: "a\nb" })
    const deadline = Date.now() + 10_000
    while (!isDeepStrictEqual(sorted(foldArtifacts(watcher.events)), artifacts) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(sorted(foldArtifacts(watcher.events))).toEqual(artifacts)
    const before = (await first.request("GET", "/sessions/e1")).body
    expect(before).toMatchObject({ id: "e1", project: "web", status: "idle", summary: "listing files" })

    sandbox.close()
    watcher.close()
    await first.close()
    servers.splice(0)

    const second = await start({ pgUrl: db.url, bootstrapTimeout: 600_000 })
    servers.push(second)
    expect((await second.request("GET", "/sessions")).body.map((s: Session) => s.id)).toEqual(["e1"])
    expect((await second.request("GET", "/sessions/e1")).body).toMatchObject({ ...before, status: "disconnected" })
    expect((await second.request("GET", "/sessions/e1/artifacts")).body).toEqual(artifacts)
    // The idempotency key survived too: a replay is accepted and applies nothing.
    expect((await second.request("POST", "/sessions/e1/events", { type: "turn_end" }, { "idempotency-key": "once" })).status)
      .toBe(202)
    expect((await second.request("GET", "/sessions/e1/artifacts")).body).toEqual(artifacts)
  })
})

/** The stores a server runs on, for the HTTP tests of paging and tails. */
const servedBy: ReadonlyArray<readonly [string, boolean, () => Promise<{ options: ServerOptions; cleanup: () => Promise<void> }>]> = [
  ["memory", false, async () => ({ options: {}, cleanup: async () => {} })],
  ["sqlite file", false, async () => {
    const tmp = tempDir()
    return { options: { dbPath: join(tmp.dir, "rein.db") }, cleanup: async () => tmp.cleanup() }
  }],
  ["postgresql", noPg, async () => {
    const db = await pgSchema(databaseUrl!)
    return { options: { pgUrl: db.url }, cleanup: db.drop }
  }]
]

/** A client's fold of a stream that may hold only part of the artifacts: updates of others are counted, not applied. */
const foldHeld = (events: ReadonlyArray<SseEvent>, into = new Map<number, any>()) => {
  let strays = 0
  for (const e of events) {
    if (e.event === "artifact_updated" && !into.has(e.data.seq)) strays++
    else foldArtifacts([e], into)
  }
  return { held: into, strays }
}

describe.each(servedBy)("paged transcripts over HTTP (%s)", (_name, skip, makeOptions) => {
  const servers: Array<TestServer> = []
  const clients: Array<SseClient> = []
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await Promise.all(servers.splice(0).map((s) => s.close()))
    for (const c of cleanups.splice(0)) await c()
  })

  /** A server with session `id` whose sandbox is connected. */
  const serve = async (id: string) => {
    const { cleanup, options } = await makeOptions()
    cleanups.push(cleanup)
    const server = await start({ ...options, bootstrapTimeout: 600_000 })
    servers.push(server)
    expect((await server.request("POST", `/sessions/${id}`)).status).toBe(201)
    const sandbox = await sse(`${server.url}/sessions/${id}/commands`)
    clients.push(sandbox)
    await sandbox.waitFor((e) => e.event === "snapshot_complete")
    const post = async (events: ReadonlyArray<unknown>) => {
      for (let i = 0; i < events.length; i += 500) {
        const res = await server.request("POST", `/sessions/${id}/events`, events.slice(i, i + 500))
        expect(res.status, res.text).toBe(202)
      }
    }
    return { server, post }
  }

  /** Events that make `n` artifacts (each a tool call, done, or a text with a long, escaped text). */
  const history = (n: number, from = 0) =>
    Array.from({ length: n }, (_, i) =>
      (from + i) % 2 === 0
        ? [{ type: "tool_call_start", toolCallId: `h${from + i}`, name: "bash", input: `{"i":${from + i}}` }, {
          type: "tool_call_end",
          toolCallId: `h${from + i}`,
          output: `out ${from + i} ${tricky}`
        }]
        : [{ type: "text_delta", delta: `text ${from + i} ${tricky} ` }, { type: "text_delta", delta: "L".repeat(2100) }, {
          type: "file_change",
          path: `f${from + i}`,
          action: "modify"
        }]).flat()

  it.skipIf(skip)("GET /artifacts?before=&after=&limit=: pages in seq order, x-rein-more; bad parameters are 400s naming them", async () => {
    const { post, server } = await serve("p1")
    await post(history(60))
    const all = (await server.request("GET", "/sessions/p1/artifacts")).body as Array<Artifact>
    expect(all.length).toBeGreaterThan(60)
    const whole = await server.request("GET", "/sessions/p1/artifacts")
    expect(whole.headers.get("x-rein-more")).toBeNull()
    const last = all.length
    const get = async (q: string) => {
      const res = await server.request("GET", `/sessions/p1/artifacts?${q}`)
      expect(res.status, res.text).toBe(200)
      return { seqs: (res.body as Array<Artifact>).map((a) => a.seq), body: res.body, more: res.headers.get("x-rein-more") }
    }
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)
    expect(await get("limit=10")).toMatchObject({ seqs: range(last - 9, last), more: "1" })
    expect((await get("limit=10")).body).toEqual(all.slice(-10))
    expect(await get(`limit=${last}`)).toMatchObject({ seqs: range(1, last), more: "0" })
    expect(await get("before=21&limit=5")).toMatchObject({ seqs: range(16, 20), more: "1" })
    expect(await get("before=6&limit=5")).toMatchObject({ seqs: range(1, 5), more: "0" })
    expect(await get("before=1")).toMatchObject({ seqs: [], more: "0" })
    expect(await get("after=20&limit=5")).toMatchObject({ seqs: range(21, 25), more: "1" })
    expect(await get(`after=${last - 5}&limit=5`)).toMatchObject({ seqs: range(last - 4, last), more: "0" })
    expect(await get(`after=${last}`)).toMatchObject({ seqs: [], more: "0" })
    // limit defaults to 200.
    await post(history(200, 60))
    const total = ((await server.request("GET", "/sessions/p1/artifacts")).body as Array<Artifact>).length
    expect(await get("after=1")).toMatchObject({ seqs: range(2, 201), more: "1" })
    expect(await get("before=999999999999")).toMatchObject({ seqs: range(total - 199, total), more: "1" })
    expect((await get("limit=1000")).seqs).toEqual(range(1, total))

    for (
      const [q, name] of [
        ["limit=0", "limit"],
        ["limit=1001", "limit"],
        ["limit=abc", "limit"],
        ["limit=1.5", "limit"],
        ["before=0", "before"],
        ["before=-3", "before"],
        ["before=x", "before"],
        ["after=0", "after"],
        ["after=1e3", "after"],
        ["before=5&after=2", "before, after"]
      ]
    ) {
      const res = await server.request("GET", `/sessions/p1/artifacts?${q}`)
      expect(res.status, q).toBe(400)
      expect(res.body.error.message.startsWith(`${name}: `), res.body.error.message).toBe(true)
    }
    expect((await server.request("GET", "/sessions/nobody/artifacts?limit=5")).status).toBe(404)
    for (const q of ["tail=0", "tail=1001", "tail=x"]) {
      const res = await server.request("GET", `/sessions/p1/stream?${q}`)
      expect(res.status, q).toBe(400)
      expect(res.body.error.message).toMatch(/^tail: /)
    }
  })

  it.skipIf(skip)("GET /stream?tail=n: the last n and what still changes; converges with a full read; pages before it; resumes across a page boundary", async () => {
    const { post, server } = await serve("s1")
    // Early: a tool call that keeps running, a permission nobody answered, a plan.
    await post([
      { type: "turn_start" },
      { type: "tool_call_start", toolCallId: "slow", name: "build", input: "{" },
      { type: "permission_request", requestId: "r1", title: `may I ${tricky}`, options: [{ optionId: "ok", name: "Allow", kind: "allow_once" }] },
      { type: "plan", entries: [{ content: "one", status: "in_progress" }] },
      ...history(40),
      { type: "text_delta", delta: "the open delta" }
    ])
    const all = (await server.request("GET", "/sessions/s1/artifacts")).body as Array<Artifact>
    const watcher = await sse(`${server.url}/sessions/s1/stream?tail=5`)
    clients.push(watcher)
    await watcher.waitFor((e) => e.event === "snapshot_complete")
    const snapshot = watcher.events.filter((e) => e.event === "artifact_snapshot").map((e) => e.data.artifact as Artifact)
    expect(snapshot).toEqual(tailOf(all, 5))
    const seqs = snapshot.map((a) => a.seq)
    expect(seqs.slice(-5)).toEqual(all.slice(-5).map((a) => a.seq))
    const [slow, r1, plan] = ["slow", "r1"].map((id) => all.find((a) => a.toolCallId === id || a.requestId === id)!.seq)
      .concat(all.find((a) => a.kind === "plan")!.seq)
    expect(seqs).toEqual(expect.arrayContaining([slow, r1, plan]))
    expect(seqs.length).toBeLessThan(12)

    // Live: what still changed long ago changes again; new artifacts come.
    await post([
      { type: "tool_call_input_delta", toolCallId: "slow", delta: "\"target\":\"all\"}" },
      { type: "text_delta", delta: " goes on" },
      { type: "plan", entries: [{ content: "one", status: "completed" }] },
      ...history(6, 100),
      { type: "tool_call_end", toolCallId: "slow", output: tricky }
    ])
    const res = await server.request("POST", "/sessions/s1/commands", { type: "permission_reply", requestId: "r1", decision: "allow_once" })
    expect(res.status, res.text).toBe(202)
    const full = async () => (await server.request("GET", "/sessions/s1/artifacts")).body as Array<Artifact>
    const converged = async (events: ReadonlyArray<SseEvent>) => {
      const server = await full()
      const { held, strays } = foldHeld(events)
      expect(strays).toBe(0)
      return isDeepStrictEqual(sorted(held), server.filter((a) => held.has(a.seq)))
        && server.slice(-5).every((a) => held.has(a.seq)) && held.has(server.at(-1)!.seq)
    }
    const deadline = Date.now() + 10_000
    while (!(await converged(watcher.events)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(await converged(watcher.events)).toBe(true)
    const now = await full()
    const { held } = foldHeld(watcher.events)
    expect(held.get(slow)).toEqual(now[slow - 1])
    expect(held.get(r1)).toMatchObject({ decision: "allow_once" })

    // What lies before the tail's first contiguous seq, page by page: with it, the whole transcript.
    let first = Math.min(...[...held.keys()].filter((seq) => [...Array(now.length - seq + 1)].every((_, i) => held.has(seq + i))))
    const pages = new Map(held)
    for (let more = "1"; more === "1";) {
      const page = await server.request("GET", `/sessions/s1/artifacts?before=${first}&limit=7`)
      for (const a of page.body as Array<Artifact>) if (!pages.has(a.seq)) pages.set(a.seq, a)
      first = (page.body as Array<Artifact>)[0]?.seq ?? first
      more = page.headers.get("x-rein-more")!
    }
    expect(sorted(pages)).toEqual(now)

    // Resume after a drop, from the last id seen (an update of the old tool call: below the tail's
    // pages): the resume set, not a tail, and the client converges.
    const lastId = watcher.events.filter((e) => e.id !== undefined).at(-1)!.id!
    watcher.close()
    await post([{ type: "text_delta", delta: "after the drop" }, ...history(3, 200)])
    const resumed = await sse(`${server.url}/sessions/s1/stream?tail=2`, { "last-event-id": lastId })
    clients.push(resumed)
    await resumed.waitFor((e) => e.event === "snapshot_complete")
    const latest = await full()
    const resumedSeqs = resumed.events.filter((e) => e.event === "artifact_snapshot").map((e) => e.data.artifact.seq as number)
    expect(resumedSeqs.slice(-(latest.length - Number(lastId) + 1))).toEqual(latest.slice(Number(lastId) - 1).map((a) => a.seq))
    const mine = new Map(held)
    const folded = foldHeld(resumed.events, mine)
    expect(folded.strays).toBe(0)
    expect(sorted(mine)).toEqual(latest.filter((a) => mine.has(a.seq)))
    expect(latest.slice(-5).every((a) => mine.has(a.seq))).toBe(true)

    // A resume from an old seq of the first page replays from there; ?tail does not cut it.
    const old = await sse(`${server.url}/sessions/s1/stream?tail=1`, { "last-event-id": String(slow) })
    clients.push(old)
    await old.waitFor((e) => e.event === "snapshot_complete")
    expect(old.events.filter((e) => e.event === "artifact_snapshot").map((e) => e.data.artifact)).toEqual(latest.slice(slow - 1))
  })
})
