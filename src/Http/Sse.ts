/**
 * Server-sent events: framing (`id:`, `event:`, one `data:` line, a blank
 * line), and the response body. A body is a channel that writes frames to the
 * node:http response itself as changes are published (Http/Serve hands it the
 * response): no fiber, queue or stream pipe per open stream, so thousands of
 * idle streams stay cheap, and a published frame is encoded once for all
 * subscribers.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import type { ServerResponse } from "node:http"
import { type Artifact, updatedPayload } from "../Domain/Artifact.js"
import type { SandboxCommand } from "../Domain/Command.js"
import type { Job } from "../Domain/Runner.js"
import type { Session } from "../Domain/Session.js"
import type { ArtifactNotice, EndReason, SessionNotice, Sink } from "../EventBus.js"
import { type Direct, writeTo } from "./Serve.js"

/** One frame. JSON never contains a raw newline, so `data` is always one line. */
export const frame = (event: string, data: unknown, id?: number): Buffer =>
  Buffer.from(`${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)

export const complete = frame("snapshot_complete", {})
export const keepAlive = Buffer.from(": keep-alive\n\n")

/** A notice reaches every subscriber as the same object: its frame is encoded once. */
const encoded = new WeakMap<object, Buffer>()
const cached = <A extends object>(make: (a: A) => Buffer) => (a: A): Buffer => {
  let b = encoded.get(a)
  if (b === undefined) {
    b = make(a)
    encoded.set(a, b)
  }
  return b
}

/** Snapshots are shared too when many readers resume one session at once (the store keeps its history). */
export const artifactSnapshot = cached<Artifact>((artifact) => frame("artifact_snapshot", { artifact }, artifact.seq))

export const artifactNotice = cached<ArtifactNotice>(({ change }) =>
  change._tag === "created"
    ? frame("artifact_created", { artifact: change.artifact }, change.artifact.seq)
    : frame("artifact_updated", updatedPayload(change), change.seq)
)

export const sessionSnapshot = (session: Session) => frame("session_snapshot", { session })

export const sessionNotice = cached<SessionNotice>((n) =>
  n._tag === "created"
    ? frame("session_created", { session: n.session })
    : n._tag === "updated"
    ? frame("session_updated", { id: n.id, fields: n.fields })
    : frame("session_removed", { id: n.id })
)

export const command = (c: SandboxCommand) => frame("command", c)

/** The command stream's last frame when its session was deleted or expired. */
export const sessionRemoved = (id: string) => frame("session_removed", { id })

/** The command stream's last frame when a newer sandbox took the session over: do not reconnect. */
export const superseded = (id: string) => frame("superseded", { id })

/** A job for a runner, on its job stream. */
export const job = (j: Job) => frame("job", j)

/** The job stream's last frame when its runner was revoked: its token no longer works. */
export const runnerRevoked = (id: string) => frame("runner_revoked", { id })

export interface Limits {
  /** Live events a subscriber may have unread before it is cut off. */
  readonly maxEvents: number
  /** Bytes a subscriber may have unread before it is cut off. */
  readonly maxBytes: number
}

const chunkBytes = 64 * 1024

/**
 * One open stream. Snapshot frames are written unconditionally; live frames
 * count against the limits, measured by what the socket has not taken yet.
 *
 * Live frames wait for the registry's next flush (`flushDelay`) and go out
 * together, one write per stream per flush: with hundreds of subscribers, a
 * write (a syscall) per frame per subscriber is what fills the core.
 */
export class Channel implements Direct {
  /** The response, once the server hands it over; what is written before waits in `early`. */
  private res: ServerResponse | undefined
  private early: Array<Buffer> = []
  private earlyBytes = 0
  /** Bytes accepted so far: written to the response (or `early`), or waiting in `pending`. */
  private pushed = 0
  /** Live frames not yet pushed, and their size. */
  private pending: Array<Buffer> = []
  private pendingBytes = 0
  /** Byte offsets where unread live frames end, oldest first (from `head`). */
  private ends: Array<number> = []
  private head = 0
  private done = false
  /** Where live frames start: unread snapshot bytes do not count against the limits. */
  private liveFrom = 0

  constructor(
    private readonly limits: Limits,
    private readonly onSlow: () => void,
    private readonly dirty: (c: Channel) => void = () => {}
  ) {}

  write(bytes: Buffer): void {
    if (this.done) return
    this.flush()
    this.pushed += bytes.length
    this.out(bytes)
  }

  private out(bytes: Buffer): void {
    if (this.res !== undefined) this.res.write(bytes)
    else {
      this.early.push(bytes)
      this.earlyBytes += bytes.length
    }
  }

  /** Frames in chunks of up to `chunkBytes`: a snapshot of thousands of frames is a few pushes and writes. */
  writeAll(frames: Iterable<Buffer>): void {
    let batch: Array<Buffer> = []
    let bytes = 0
    for (const f of frames) {
      batch.push(f)
      bytes += f.length
      if (bytes >= chunkBytes) {
        this.write(Buffer.concat(batch, bytes))
        batch = []
        bytes = 0
      }
    }
    if (batch.length > 0) this.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes))
  }

  /** False when the subscriber is a whole buffer behind. */
  offer(bytes: Buffer): boolean {
    if (this.done) return true
    const unreadLive = Math.min(this.unread(), this.pushed - this.liveFrom)
    if (this.backlog() >= this.limits.maxEvents || unreadLive + bytes.length > this.limits.maxBytes) return false
    if (this.pending.length === 0) this.dirty(this)
    this.pending.push(bytes)
    this.pendingBytes += bytes.length
    this.pushed += bytes.length
    this.ends.push(this.pushed)
    return true
  }

  /** Pushes the live frames waiting, as one chunk. */
  flush(): void {
    if (this.pending.length === 0) return
    const bytes = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    if (!this.done) this.out(bytes)
  }

  /** What the client has not taken yet: buffered by the response (or not handed to it yet), or pending. */
  private unread(): number {
    return (this.res === undefined ? this.earlyBytes : this.res.writableLength) + this.pendingBytes
  }

  private backlog(): number {
    const consumed = this.pushed - this.unread()
    while (this.head < this.ends.length && this.ends[this.head]! <= consumed) this.head++
    if (this.head === this.ends.length) {
      this.ends = []
      this.head = 0
    } else if (this.head > 1024) {
      this.ends = this.ends.slice(this.head)
      this.head = 0
    }
    return this.ends.length - this.head
  }

  /** "ended" finishes the response (after what waits); "overflow" drops the connection so its buffers are freed. */
  end(reason: EndReason): void {
    if (this.done) return
    if (reason === "overflow") {
      this.done = true
      this.pending = []
      this.early = []
      this.onSlow()
    } else {
      this.flush()
      this.done = true
      this.res?.end()
    }
  }

  /** Takes the response (its head written): what waits goes out at once, then every frame as it comes. */
  [writeTo](res: ServerResponse): void {
    // No listener for the client leaving: the request's scope closes then, which unsubscribes the
    // channel from everything that writes to it (and a write to a closed response is dropped).
    this.res = res
    const early = this.early
    this.early = []
    this.earlyBytes = 0
    // Corked: the snapshot's frames leave in as few writes as the socket takes.
    res.cork()
    for (const bytes of early) res.write(bytes)
    res.uncork()
    // Ended before the response was handed over.
    if (this.done) res.end()
  }

  /** The sink for live notices; everything written before it is history. */
  sink<N>(encode: (n: N) => Buffer): Sink<N> {
    this.flush()
    this.liveFrom = this.pushed
    return { offer: (n) => this.offer(encode(n)), end: (reason) => Effect.sync(() => this.end(reason)) }
  }

  response(): HttpServerResponse.HttpServerResponse {
    return HttpServerResponse.raw(this, {
      contentType: "text/event-stream",
      // A stream holds its connection for its whole life; closing it with the stream lets shutdown finish at once.
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no", connection: "close" }
    })
  }
}

/**
 * How long a live frame waits for others bound for the same stream. 5 ms took a third off the
 * server's CPU per event with 500 subscribers at 200 events/s (bench/RESULTS.md); flushing once per
 * event loop turn instead saved nothing there, since each event arrives in a turn of its own.
 */
const flushDelay = 5

/**
 * The open channels, sent a keep-alive comment every interval by one timer,
 * rather than a timer per stream.
 */
export const makeRegistry = (interval: number) =>
  Effect.gen(function*() {
    const channels = new Set<Channel>()
    // Channels with live frames waiting, flushed together `flushDelay` after the first.
    let dirty: Array<Channel> = []
    const flushAll = () => {
      const now = dirty
      dirty = []
      for (const c of now) c.flush()
    }
    const markDirty = (c: Channel) => {
      if (dirty.push(c) === 1) setTimeout(flushAll, flushDelay)
    }
    yield* Effect.sleep(interval).pipe(
      Effect.zipRight(Effect.sync(() => channels.forEach((c) => c.write(keepAlive)))),
      Effect.forever,
      Effect.forkScoped
    )
    // Channels still open at shutdown are ended, so the server never waits on a client.
    yield* Effect.addFinalizer(() => Effect.sync(() => channels.forEach((c) => c.end("ended"))))
    return {
      /** A channel registered for the scope's life (the request's). */
      open: (limits: Limits, onSlow: () => void): Effect.Effect<Channel, never, Scope.Scope> =>
        // On the scope itself, as EventBus subscriptions are: acquireRelease would keep the fiber's refs.
        Effect.scopeWith((scope) =>
          Effect.suspend(() => {
            const c = new Channel(limits, onSlow, markDirty)
            channels.add(c)
            return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => channels.delete(c))), c)
          })
        ),
      size: () => channels.size
    }
  })
