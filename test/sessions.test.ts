/**
 * The Sessions service over the in-memory store, the EventBus and the
 * Reducer, on the TestClock: bootstrap timers, restart, ingest, streams,
 * idempotency, commands and sandbox connections (docs/protocol.md).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { type Artifact, applyChange } from "../src/Domain/Artifact.js"
import { InvalidInput, NoSandbox, PermissionConflict, SessionExists, SessionNotFound } from "../src/Domain/Errors.js"
import { noUsage, type Session } from "../src/Domain/Session.js"
import * as EventBus from "../src/EventBus.js"
import type { ArtifactNotice } from "../src/EventBus.js"
import * as Reducer from "../src/Reducer.js"
import { type ArtifactStreamItem, Sessions, type SessionStreamItem } from "../src/Sessions.js"
import * as SessionsLayer from "../src/Sessions.js"
import { layerMemory, makeMemory, SessionStore } from "../src/SessionStore.js"

const bootstrapTimeout = 1000
const subscriberBuffer = 64

/**
 * A fresh Sessions (with its store, bus and reducer exposed), and a logger
 * that records warnings, so "nothing goes wrong later" is checkable.
 */
const harness = (store: Layer.Layer<SessionStore> = layerMemory) => {
  const logs: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    logs.push(`${logLevel.label}: ${JSON.stringify(message)}`)
  })
  const layer = SessionsLayer.layer({ bootstrapTimeout, subscriberBuffer }).pipe(
    Layer.provideMerge(Layer.mergeAll(store, EventBus.layer, Reducer.layer)),
    Layer.provideMerge(Logger.replace(Logger.defaultLogger, logger))
  )
  return { layer, logs }
}

/** Let forked fibers (stream readers, timers) run. */
const settle = Effect.forEach(Array.from({ length: 25 }), () => Effect.yieldNow(), { discard: true })

/** Reads a stream in the background into an array, for the rest of the test. */
const collect = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function*() {
    const items: Array<A> = []
    const fiber = yield* stream.pipe(
      Stream.runForEach((a) => Effect.sync(() => void items.push(a))),
      Effect.forkScoped
    )
    yield* settle
    return { items, fiber }
  })

const notices = (items: ReadonlyArray<SessionStreamItem>) =>
  items.flatMap((i) => i._tag === "notice" ? [i.notice] : [])
const changes = (items: ReadonlyArray<ArtifactStreamItem>) =>
  items.flatMap((i) => i._tag === "change" ? [i.change] : [])

/** A client's copy: snapshots replace, changes fold. */
const clientFold = (items: ReadonlyArray<ArtifactStreamItem>) => {
  const m = new Map<number, Artifact>()
  for (const i of items) {
    if (i._tag === "snapshot") m.set(i.artifact.seq, i.artifact)
    else if (i._tag === "change") {
      const seq = i.change._tag === "created" ? i.change.artifact.seq : i.change.seq
      m.set(seq, applyChange(m.get(seq), i.change))
    }
  }
  return [...m.values()].sort((a, b) => a.seq - b.seq)
}

const statusOf = (id: string) => Effect.flatMap(Sessions, (s) => s.get(id)).pipe(Effect.map((s) => s.status))
const storedSession = (id: string) =>
  Effect.flatMap(SessionStore, (s) => s.list).pipe(Effect.map((all) => all.find((s) => s.session.id === id)?.session))

describe("Sessions: bootstrap timeout", () => {
  it.scoped("a new session is bootstrapping and is removed after bootstrapTimeout, with a removed notice", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      const watch = yield* collect(yield* sessions.watchSessions())
      yield* TestClock.adjust(100)
      const created = yield* sessions.create("a1", "web")
      expect(created).toEqual({
        id: "a1",
        status: "bootstrapping",
        summary: null,
        project: "web",
        createdAt: 100,
        lastHeartbeat: 100,
        pendingPermissions: 0,
        usage: { inputTokens: 0, outputTokens: 0, costUsd: null },
        lastStopReason: null,
        agent: null,
        runner: null,
        workspace: null
      })
      expect(yield* sessions.get("a1")).toEqual(created)
      expect(yield* storedSession("a1")).toEqual(created)
      expect(yield* Effect.flip(sessions.create("a1", null))).toEqual(new SessionExists({ id: "a1" }))

      yield* TestClock.adjust(bootstrapTimeout - 1)
      yield* settle
      expect(yield* statusOf("a1")).toBe("bootstrapping")

      yield* TestClock.adjust(1)
      yield* settle
      expect(yield* Effect.flip(sessions.get("a1"))).toEqual(new SessionNotFound({ id: "a1" }))
      expect(yield* storedSession("a1")).toBeUndefined()
      expect(yield* sessions.list()).toEqual([])
      expect(watch.items[0]).toEqual({ _tag: "complete" })
      expect(notices(watch.items).map((n) => n._tag)).toEqual(["created", "removed"])
      expect(notices(watch.items)[1]).toMatchObject({ _tag: "removed", id: "a1", project: "web" })
      expect(h.logs).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a session whose sandbox connected before the timeout is not removed", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* TestClock.adjust(500)
      yield* sessions.connectSandbox("a1")
      expect(yield* statusOf("a1")).toBe("live")
      yield* TestClock.adjust(bootstrapTimeout * 3)
      yield* settle
      expect(yield* statusOf("a1")).toBe("live")
      expect(yield* storedSession("a1")).toMatchObject({ status: "live" })
      expect(h.logs).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a session whose sandbox came and went before the timeout stays, disconnected", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* Effect.scoped(sessions.connectSandbox("a1"))
      expect(yield* statusOf("a1")).toBe("disconnected")
      yield* TestClock.adjust(bootstrapTimeout * 3)
      yield* settle
      expect(yield* statusOf("a1")).toBe("disconnected")
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a session deleted before its timeout: nothing fires later", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      const watch = yield* collect(yield* sessions.watchSessions())
      yield* sessions.create("a1", null)
      yield* TestClock.adjust(300)
      yield* sessions.remove("a1")
      yield* settle
      expect(notices(watch.items).map((n) => n._tag)).toEqual(["created", "removed"])
      expect(yield* Effect.flip(sessions.remove("a1"))).toEqual(new SessionNotFound({ id: "a1" }))

      yield* TestClock.adjust(bootstrapTimeout * 3)
      yield* settle
      expect(notices(watch.items).map((n) => n._tag)).toEqual(["created", "removed"])
      expect(h.logs).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a session re-created after deletion gets a full timeout of its own", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* TestClock.adjust(600)
      yield* sessions.remove("a1")
      const again = yield* sessions.create("a1", null)
      expect(again.createdAt).toBe(600)
      // the first session's timer would have fired at 1000
      yield* TestClock.adjust(bootstrapTimeout - 1)
      yield* settle
      expect(yield* statusOf("a1")).toBe("bootstrapping")
      yield* TestClock.adjust(1)
      yield* settle
      expect(yield* Effect.flip(sessions.get("a1"))).toEqual(new SessionNotFound({ id: "a1" }))
    }).pipe(Effect.provide(h.layer))
  })
})

describe("Sessions: restart over an existing store", () => {
  const record = (id: string, status: Session["status"], createdAt: number): Session => ({
    id,
    status,
    summary: null,
    project: null,
    createdAt,
    lastHeartbeat: createdAt,
    pendingPermissions: 0,
    usage: noUsage,
    lastStopReason: null,
    agent: null,
    runner: null,
    workspace: null
  })

  it.scoped("live/idle become disconnected; bootstrapping ones get the time they have left", () =>
    Effect.gen(function*() {
      const store = yield* makeMemory
      yield* store.create(record("live1", "live", 0))
      yield* store.create(record("idle1", "idle", 0))
      yield* store.create(record("gone1", "disconnected", 0))
      yield* store.create(record("boot1", "bootstrapping", 0))
      yield* store.create(record("late1", "bootstrapping", -5000))
      // live1 holds a running tool call and a text, from before the restart
      yield* store.commit("live1", {
        rev: 2,
        lastHeartbeat: 0,
        changes: [
          {
            _tag: "created",
            rev: 1,
            artifact: {
              seq: 1,
              kind: "tool_call",
              toolCallId: "t1",
              name: "bash",
              input: "",
              output: null,
              status: "running",
              createdAt: 0,
              updatedAt: 0
            }
          },
          { _tag: "created", rev: 2, artifact: { seq: 2, kind: "text", text: "hi", createdAt: 0, updatedAt: 0 } }
        ]
      })
      yield* TestClock.adjust(400)

      const h = harness(Layer.succeed(SessionStore, store))
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions
        yield* settle
        expect(yield* statusOf("live1")).toBe("disconnected")
        expect(yield* statusOf("idle1")).toBe("disconnected")
        expect(yield* statusOf("gone1")).toBe("disconnected")
        expect(yield* storedSession("live1")).toMatchObject({ status: "disconnected" })
        expect(yield* storedSession("idle1")).toMatchObject({ status: "disconnected" })
        // its time ran out while the server was down
        expect(yield* Effect.flip(sessions.get("late1"))).toEqual(new SessionNotFound({ id: "late1" }))
        expect(yield* storedSession("late1")).toBeUndefined()

        // boot1 was created at 0: 600 ms are left at 400
        yield* TestClock.adjust(599)
        yield* settle
        expect(yield* statusOf("boot1")).toBe("bootstrapping")
        yield* TestClock.adjust(1)
        yield* settle
        expect(yield* Effect.flip(sessions.get("boot1"))).toEqual(new SessionNotFound({ id: "boot1" }))
        expect(yield* storedSession("boot1")).toBeUndefined()
        expect((yield* sessions.list()).map((s) => s.id)).toEqual(["live1", "idle1", "gone1"])
        expect(h.logs).toEqual([])
      }).pipe(Effect.provide(h.layer))
    }))

  it.scoped("ingest after a restart continues seq and rev, and routes to stored tool calls", () =>
    Effect.gen(function*() {
      const store = yield* makeMemory
      yield* store.create(record("live1", "live", 0))
      yield* store.commit("live1", {
        rev: 3,
        lastHeartbeat: 0,
        changes: [
          {
            _tag: "created",
            rev: 1,
            artifact: {
              seq: 1,
              kind: "tool_call",
              toolCallId: "t1",
              name: "bash",
              input: "",
              output: null,
              status: "running",
              createdAt: 0,
              updatedAt: 0
            }
          },
          { _tag: "created", rev: 2, artifact: { seq: 2, kind: "text", text: "hi", createdAt: 0, updatedAt: 0 } },
          { _tag: "updated", rev: 3, seq: 2, field: "text", append: "!", at: 0 }
        ]
      })
      const h = harness(Layer.succeed(SessionStore, store))
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions
        const watch = yield* collect(yield* sessions.watchArtifacts("live1"))
        yield* TestClock.adjust(10)
        yield* sessions.ingest("live1", [
          { type: "tool_call_end", toolCallId: "t1", output: "ok" },
          { type: "text_delta", delta: "new" }
        ])
        yield* settle
        expect(changes(watch.items).map((c) => c.rev)).toEqual([4, 5, 6])
        const all = yield* sessions.artifacts("live1")
        expect(all.map((a) => [a.seq, a.kind, a.text ?? a.status])).toEqual([
          [1, "tool_call", "done"],
          [2, "text", "hi!"],
          [3, "text", "new"]
        ])
        expect(clientFold(watch.items)).toEqual(all)
      }).pipe(Effect.provide(h.layer))
    }))
})

describe("Sessions: ingest", () => {
  it.scoped("commits and publishes changes in order, with revs, and moves lastHeartbeat", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", "web")
      yield* sessions.connectSandbox("a1")
      const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
      const list = yield* collect(yield* sessions.watchSessions())
      yield* TestClock.adjust(50)
      yield* sessions.ingest("a1", [
        { type: "text_delta", delta: "Hel" },
        { type: "text_delta", delta: "lo" },
        { type: "tool_call_start", toolCallId: "t1", name: "bash" },
        { type: "tool_call_end", toolCallId: "t1", output: "x" }
      ])
      yield* TestClock.adjust(50)
      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "again" }, { type: "turn_end" }])
      yield* settle

      expect(watch.items[0]).toEqual({ _tag: "complete" })
      const got = changes(watch.items)
      expect(got.map((c) => c.rev)).toEqual([1, 2, 3, 4, 5, 6])
      expect(got.map((c) => c._tag === "created" ? `+${c.artifact.seq}` : `${c.seq}.${c.field}`)).toEqual([
        "+1",
        "1.text",
        "+2",
        "2.output",
        "2.status",
        "+3"
      ])
      const stored = yield* sessions.artifacts("a1")
      expect(clientFold(watch.items)).toEqual(stored)
      expect(stored.map((a) => a.text ?? a.status)).toEqual(["Hello", "done", "again"])

      const session = yield* sessions.get("a1")
      expect(session).toMatchObject({ status: "idle", lastHeartbeat: 100 })
      expect(yield* storedSession("a1")).toEqual(session)
      expect(notices(list.items)).toEqual([
        expect.objectContaining({ _tag: "updated", id: "a1", project: "web", fields: { status: "idle" } })
      ])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a heartbeat moves lastHeartbeat only, and is not broadcast", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const list = yield* collect(yield* sessions.watchSessions())
      yield* TestClock.adjust(70)
      yield* sessions.ingest("a1", [{ type: "heartbeat" }])
      yield* settle
      expect(yield* sessions.get("a1")).toMatchObject({ lastHeartbeat: 70, status: "bootstrapping" })
      expect(yield* storedSession("a1")).toMatchObject({ lastHeartbeat: 70 })
      expect(notices(list.items)).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("summary is broadcast when it changes, and only then", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const list = yield* collect(yield* sessions.watchSessions())
      yield* sessions.ingest("a1", [{ type: "summary", text: "fixing" }])
      yield* sessions.ingest("a1", [{ type: "summary", text: "fixing" }])
      yield* settle
      expect(notices(list.items)).toEqual([
        expect.objectContaining({ _tag: "updated", id: "a1", fields: { summary: "fixing" } })
      ])
      expect(yield* sessions.get("a1")).toMatchObject({ summary: "fixing" })
      expect(yield* storedSession("a1")).toMatchObject({ summary: "fixing" })
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a rejected batch applies nothing: no artifact, no notice, no heartbeat, no seq used", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* sessions.connectSandbox("a1")
      const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
      const list = yield* collect(yield* sessions.watchSessions())
      yield* TestClock.adjust(10)
      const error = yield* Effect.flip(sessions.ingest("a1", [
        { type: "text_delta", delta: "lost" },
        { type: "summary", text: "lost" },
        { type: "turn_end" },
        { type: "tool_call_end", toolCallId: "ghost" }
      ]))
      expect(error).toBeInstanceOf(InvalidInput)
      expect(error.message).toContain("ghost")
      yield* settle
      expect(yield* sessions.artifacts("a1")).toEqual([])
      expect(changes(watch.items)).toEqual([])
      expect(notices(list.items)).toEqual([])
      expect(yield* sessions.get("a1")).toMatchObject({ status: "live", summary: null, lastHeartbeat: 0 })

      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "kept" }])
      expect(yield* sessions.artifacts("a1")).toEqual([
        { seq: 1, kind: "text", text: "kept", createdAt: 10, updatedAt: 10 }
      ])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("ingest into an unknown session is SessionNotFound", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions
      expect(yield* Effect.flip(sessions.ingest("nope", [{ type: "heartbeat" }]))).toEqual(
        new SessionNotFound({ id: "nope" })
      )
    }).pipe(Effect.provide(harness().layer)))

  it.scoped("an idempotency key is applied once; a rejected request does not use up its key", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      const store = yield* SessionStore
      yield* sessions.create("a1", null)
      const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "a" }], "k1")
      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "a" }], "k1")
      expect((yield* sessions.artifacts("a1")).map((a) => a.text)).toEqual(["a"])
      expect(yield* store.hasIdempotencyKey("a1", "k1")).toBe(true)

      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "b" }], "k2")
      expect((yield* sessions.artifacts("a1")).map((a) => a.text)).toEqual(["ab"])

      expect(yield* Effect.flip(sessions.ingest("a1", [{ type: "tool_call_end", toolCallId: "x" }], "k3")))
        .toBeInstanceOf(InvalidInput)
      expect(yield* store.hasIdempotencyKey("a1", "k3")).toBe(false)
      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "c" }], "k3")
      expect((yield* sessions.artifacts("a1")).map((a) => a.text)).toEqual(["abc"])

      yield* settle
      expect(changes(watch.items).map((c) => c.rev)).toEqual([1, 2, 3])
    }).pipe(Effect.provide(h.layer))
  })
})

describe("Sessions: watchArtifacts", () => {
  /** The memory store, with a hook that runs once around the next artifacts() read. */
  const hookedStore = Effect.gen(function*() {
    const base = yield* makeMemory
    const hook: { before?: Effect.Effect<void>; after?: Effect.Effect<void> } = {}
    const store = SessionStore.of({
      ...base,
      artifacts: (id, from) =>
        Effect.gen(function*() {
          const { after, before } = hook
          delete hook.before
          delete hook.after
          if (before !== undefined) yield* before
          const snapshot = yield* base.artifacts(id, from)
          if (after !== undefined) yield* after
          return snapshot
        })
    })
    return { store, hook }
  })

  it.scoped("snapshot, complete, then live changes", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* sessions.ingest("a1", [{ type: "text_delta", delta: "Hel" }, { type: "error", message: "e" }])
      const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
      yield* sessions.ingest("a1", [{ type: "custom", name: "c" }])
      yield* settle
      expect(watch.items.map((i) => i._tag)).toEqual(["snapshot", "snapshot", "complete", "change"])
      expect(clientFold(watch.items)).toEqual(yield* sessions.artifacts("a1"))
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("events ingested after subscribing but before the snapshot is read are not delivered twice", () =>
    Effect.gen(function*() {
      const { hook, store } = yield* hookedStore
      const h = harness(Layer.succeed(SessionStore, store))
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions
        yield* sessions.create("a1", null)
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "Hello" }])
        hook.before = sessions.ingest("a1", [{ type: "text_delta", delta: " world" }]).pipe(Effect.orDie)
        const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "!" }])
        yield* settle
        expect(watch.items.map((i) => i._tag)).toEqual(["snapshot", "complete", "change"])
        expect(watch.items[0]).toMatchObject({ artifact: { text: "Hello world" } })
        expect(changes(watch.items)).toEqual([expect.objectContaining({ seq: 1, append: "!", rev: 3 })])
        expect(clientFold(watch.items)).toEqual(yield* sessions.artifacts("a1"))
        expect(clientFold(watch.items)[0]!.text).toBe("Hello world!")
      }).pipe(Effect.provide(h.layer))
    }))

  it.scoped("events ingested right after the snapshot is read are delivered live (no gap)", () =>
    Effect.gen(function*() {
      const { hook, store } = yield* hookedStore
      const h = harness(Layer.succeed(SessionStore, store))
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions
        yield* sessions.create("a1", null)
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "Hello" }])
        hook.after = sessions.ingest("a1", [{ type: "text_delta", delta: " world" }, { type: "error", message: "e" }])
          .pipe(Effect.orDie)
        const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
        yield* settle
        expect(watch.items.map((i) => i._tag)).toEqual(["snapshot", "complete", "change", "change"])
        expect(watch.items[0]).toMatchObject({ artifact: { text: "Hello" } })
        expect(clientFold(watch.items)).toEqual(yield* sessions.artifacts("a1"))
      }).pipe(Effect.provide(h.layer))
    }))

  it.scoped("openArtifacts holds changes made before attach and delivers only those the snapshot lacks", () =>
    Effect.gen(function*() {
      const { hook, store } = yield* hookedStore
      const h = harness(Layer.succeed(SessionStore, store))
      yield* Effect.gen(function*() {
        const sessions = yield* Sessions
        yield* sessions.create("a1", null)
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "Hello" }])
        // committed after the gate subscribed, before the snapshot was read: in the snapshot
        hook.before = sessions.ingest("a1", [{ type: "text_delta", delta: " world" }]).pipe(Effect.orDie)
        const feed = yield* sessions.openArtifacts("a1")
        expect(feed.snapshot).toEqual([expect.objectContaining({ seq: 1, text: "Hello world" })])
        // committed after the snapshot, before anyone attached: held by the gate
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "!" }])
        const got: Array<ArtifactNotice> = []
        const ended: Array<EventBus.EndReason> = []
        yield* feed.attach({
          offer: (n) => (got.push(n), true),
          end: (reason) => Effect.sync(() => void ended.push(reason))
        })
        expect(got.map((n) => n.rev)).toEqual([3])
        yield* sessions.ingest("a1", [{ type: "text_delta", delta: "?" }])
        expect(got.map((n) => n.rev)).toEqual([3, 4])
        const client = new Map(feed.snapshot.map((a) => [a.seq, a]))
        for (const n of got) {
          const seq = n.change._tag === "created" ? n.change.artifact.seq : n.change.seq
          client.set(seq, applyChange(client.get(seq), n.change))
        }
        expect([...client.values()]).toEqual(yield* sessions.artifacts("a1"))
        expect(ended).toEqual([])
        yield* sessions.remove("a1")
        expect(ended).toEqual(["ended"])
      }).pipe(Effect.provide(h.layer))
    }))

  it.scoped("a feed that falls a whole buffer behind before attaching is ended with overflow", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const feed = yield* sessions.openArtifacts("a1")
      for (let i = 0; i <= subscriberBuffer; i++) yield* sessions.ingest("a1", [{ type: "error", message: `${i}` }])
      const ended: Array<EventBus.EndReason> = []
      yield* feed.attach({ offer: () => true, end: (reason) => Effect.sync(() => void ended.push(reason)) })
      expect(ended).toEqual(["overflow"])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a stream whose reader falls a whole buffer behind fails with SlowConsumer", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const stream = yield* sessions.watchArtifacts("a1")
      // nobody reads: the live buffer fills up
      for (let i = 0; i <= subscriberBuffer; i++) yield* sessions.ingest("a1", [{ type: "error", message: `${i}` }])
      const exit = yield* Stream.runDrain(stream).pipe(Effect.exit)
      expect(exit).toEqual(Exit.fail(new EventBus.SlowConsumer()))
      // other work is unaffected
      yield* sessions.ingest("a1", [{ type: "heartbeat" }])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("resume with lastEventId sends the resume set as snapshots", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* sessions.ingest("a1", [{ type: "tool_call_start", toolCallId: "t1", name: "bash" }])
      yield* sessions.ingest("a1", [{ type: "error", message: "e1" }])
      yield* sessions.ingest("a1", [{ type: "error", message: "e2" }])
      yield* sessions.ingest("a1", [{ type: "tool_call_end", toolCallId: "t1" }])
      const watch = yield* collect(yield* sessions.watchArtifacts("a1", 3))
      expect(watch.items.flatMap((i) => i._tag === "snapshot" ? [i.artifact.seq] : [])).toEqual([1, 3])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("the stream ends when the session is removed", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const watch = yield* collect(yield* sessions.watchArtifacts("a1"))
      yield* sessions.remove("a1")
      const exit = yield* Fiber.await(watch.fiber).pipe(Effect.timeoutOption(10), TestClock.adjustWith(10))
      expect(exit._tag).toBe("Some")
      expect(exit._tag === "Some" && Exit.isSuccess(exit.value)).toBe(true)
      expect(yield* Effect.flip(sessions.watchArtifacts("a1"))).toEqual(new SessionNotFound({ id: "a1" }))
    }).pipe(Effect.provide(h.layer))
  })
})

describe("Sessions: watchSessions", () => {
  it.scoped("snapshots, complete, then notices; with a project, only that project's", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("w1", "web")
      yield* sessions.create("c1", "cli")
      const all = yield* collect(yield* sessions.watchSessions())
      const web = yield* collect(yield* sessions.watchSessions({ project: "web" }))
      yield* sessions.create("w2", "web")
      yield* sessions.create("c2", "cli")
      yield* sessions.ingest("c1", [{ type: "summary", text: "s" }])
      yield* sessions.remove("w1")
      yield* settle
      expect(all.items.slice(0, 3)).toEqual([
        { _tag: "snapshot", session: expect.objectContaining({ id: "w1" }) },
        { _tag: "snapshot", session: expect.objectContaining({ id: "c1" }) },
        { _tag: "complete" }
      ])
      expect(notices(all.items).map((n) => `${n._tag}:${n._tag === "created" ? n.session.id : n.id}`)).toEqual([
        "created:w2",
        "created:c2",
        "updated:c1",
        "removed:w1"
      ])
      expect(web.items.slice(0, 2)).toEqual([
        { _tag: "snapshot", session: expect.objectContaining({ id: "w1" }) },
        { _tag: "complete" }
      ])
      expect(notices(web.items).map((n) => `${n._tag}:${n._tag === "created" ? n.session.id : n.id}`)).toEqual([
        "created:w2",
        "removed:w1"
      ])
      // revs order the notices bus-wide
      const revs = notices(all.items).map((n) => n.rev)
      expect(revs).toEqual([...revs].sort((a, b) => a - b))
    }).pipe(Effect.provide(h.layer))
  })
})

describe("Sessions: commands and sandboxes", () => {
  it.scoped("a command with no sandbox connected is NoSandbox; an unknown session is SessionNotFound", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      expect(yield* Effect.flip(sessions.command("a1", { type: "prompt", text: "hi" }))).toEqual(new NoSandbox({ id: "a1" }))
      // a refused prompt is not recorded
      expect(yield* sessions.artifacts("a1")).toEqual([])
      expect(yield* Effect.flip(sessions.command("zz", { type: "abort" }))).toEqual(new SessionNotFound({ id: "zz" }))
      yield* Effect.scoped(sessions.connectSandbox("a1"))
      expect(yield* Effect.flip(sessions.command("a1", { type: "abort" }))).toEqual(new NoSandbox({ id: "a1" }))
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a prompt is delivered, recorded as user_message, and makes an idle session live", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const { commands: queue } = yield* sessions.connectSandbox("a1")
      yield* sessions.ingest("a1", [{ type: "turn_end" }])
      expect(yield* statusOf("a1")).toBe("idle")
      const list = yield* collect(yield* sessions.watchSessions())
      yield* TestClock.adjust(5)
      yield* sessions.command("a1", { type: "prompt", text: "fix the bug" })
      yield* sessions.command("a1", { type: "abort" })
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(queue))).toEqual([
        { type: "prompt", text: "fix the bug" },
        { type: "abort" }
      ])
      expect(yield* sessions.artifacts("a1")).toEqual([
        { seq: 1, kind: "user_message", text: "fix the bug", createdAt: 5, updatedAt: 5 }
      ])
      // a command is not an event: lastHeartbeat stays where the last event put it
      expect(yield* sessions.get("a1")).toMatchObject({ status: "live", lastHeartbeat: 0 })
      expect(yield* storedSession("a1")).toMatchObject({ status: "live", lastHeartbeat: 0 })
      yield* settle
      // The first prompt also stands in for the summary the agent has not given (issue 21).
      expect(notices(list.items)).toEqual([
        expect.objectContaining({ _tag: "updated", fields: { status: "live", summary: "fix the bug" } })
      ])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("permission_reply: the first reply wins; a second or unknown one is PermissionConflict and not delivered", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const { commands: queue } = yield* sessions.connectSandbox("a1")
      yield* sessions.ingest("a1", [{ type: "permission_request", requestId: "r1", title: "rm -rf?" }])
      yield* sessions.command("a1", { type: "permission_reply", requestId: "r1", decision: "reject" })
      expect(yield* Effect.flip(sessions.command("a1", { type: "permission_reply", requestId: "r1", decision: "allow_once" })))
        .toEqual(new PermissionConflict({ requestId: "r1", reason: "answered" }))
      expect(yield* Effect.flip(sessions.command("a1", { type: "permission_reply", requestId: "r9", decision: "allow_once" })))
        .toEqual(new PermissionConflict({ requestId: "r9", reason: "unknown" }))
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(queue))).toEqual([
        { type: "permission_reply", requestId: "r1", decision: "reject", optionId: null }
      ])
      expect(yield* sessions.artifacts("a1")).toEqual([expect.objectContaining({ seq: 1, decision: "reject" })])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("permission_reply by optionId is completed before delivery; a bad optionId is InvalidInput, applied and sent nowhere; removal marks the feed removed", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const feed = yield* sessions.connectSandbox("a1")
      yield* sessions.ingest("a1", [{
        type: "permission_request",
        requestId: "r1",
        title: "write?",
        options: [{ optionId: "ok", name: "OK", kind: "allow_always" }]
      }])
      const bad = yield* Effect.flip(sessions.command("a1", { type: "permission_reply", requestId: "r1", optionId: "nope" }))
      expect(bad._tag).toBe("InvalidInput")
      expect(bad.message).toMatch(/^optionId: "nope" is not an option of permission request r1/)
      expect(yield* sessions.artifacts("a1")).toEqual([expect.objectContaining({ decision: null, optionId: null })])
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(feed.commands))).toEqual([])
      yield* sessions.command("a1", { type: "permission_reply", requestId: "r1", optionId: "ok" })
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(feed.commands))).toEqual([
        { type: "permission_reply", requestId: "r1", decision: "allow_always", optionId: "ok" }
      ])
      expect(yield* sessions.artifacts("a1")).toEqual([expect.objectContaining({ decision: "allow_always", optionId: "ok" })])
      expect(feed.removed()).toBe(false)
      yield* sessions.remove("a1")
      expect(feed.removed()).toBe(true)
      expect(yield* Queue.isShutdown(feed.commands)).toBe(true)
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a newer sandbox ends the older one's feed without marking it removed", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const older = yield* sessions.connectSandbox("a1")
      const newer = yield* sessions.connectSandbox("a1")
      expect(yield* Queue.isShutdown(older.commands)).toBe(true)
      expect(older.removed()).toBe(false)
      yield* sessions.remove("a1")
      expect(older.removed()).toBe(false)
      expect(newer.removed()).toBe(true)
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a sandbox that does not read its commands is treated as absent once its buffer is full", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* sessions.connectSandbox("a1")
      for (let i = 0; i < subscriberBuffer; i++) yield* sessions.command("a1", { type: "abort" })
      expect(yield* Effect.flip(sessions.command("a1", { type: "abort" }))).toEqual(new NoSandbox({ id: "a1" }))
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a second sandbox ends the first; the first's close does not disconnect; the current one's does", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const list = yield* collect(yield* sessions.watchSessions())
      const scope1 = yield* Scope.make()
      const scope2 = yield* Scope.make()
      const { commands: q1 } = yield* sessions.connectSandbox("a1").pipe(Scope.extend(scope1))
      const { commands: q2 } = yield* sessions.connectSandbox("a1").pipe(Scope.extend(scope2))
      expect(yield* Queue.isShutdown(q1)).toBe(true)
      expect(yield* Queue.isShutdown(q2)).toBe(false)
      expect(yield* statusOf("a1")).toBe("live")

      yield* Scope.close(scope1, Exit.void)
      expect(yield* statusOf("a1")).toBe("live")
      yield* sessions.command("a1", { type: "abort" })
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(q2))).toEqual([{ type: "abort" }])

      yield* Scope.close(scope2, Exit.void)
      expect(yield* Queue.isShutdown(q2)).toBe(true)
      expect(yield* statusOf("a1")).toBe("disconnected")
      expect(yield* storedSession("a1")).toMatchObject({ status: "disconnected" })
      expect(yield* Effect.flip(sessions.command("a1", { type: "abort" }))).toEqual(new NoSandbox({ id: "a1" }))
      yield* settle
      expect(notices(list.items).map((n) => n._tag === "updated" ? n.fields.status : n._tag)).toEqual([
        "live",
        "disconnected"
      ])
      expect(h.logs).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("a disconnected session goes live again when a sandbox reconnects", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      yield* Effect.scoped(sessions.connectSandbox("a1"))
      expect(yield* statusOf("a1")).toBe("disconnected")
      yield* sessions.connectSandbox("a1")
      expect(yield* statusOf("a1")).toBe("live")
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("deleting a session ends its sandbox's queue, and the later close changes nothing", () => {
    const h = harness()
    return Effect.gen(function*() {
      const sessions = yield* Sessions
      yield* sessions.create("a1", null)
      const scope = yield* Scope.make()
      const { commands: queue } = yield* sessions.connectSandbox("a1").pipe(Scope.extend(scope))
      yield* sessions.remove("a1")
      expect(yield* Queue.isShutdown(queue)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(yield* storedSession("a1")).toBeUndefined()
      expect(h.logs).toEqual([])
    }).pipe(Effect.provide(h.layer))
  })

  it.scoped("connectSandbox of an unknown session is SessionNotFound", () =>
    Effect.gen(function*() {
      const sessions = yield* Sessions
      expect(yield* Effect.flip(sessions.connectSandbox("zz"))).toEqual(new SessionNotFound({ id: "zz" }))
    }).pipe(Effect.provide(harness().layer)))
})
