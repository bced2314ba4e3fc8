/**
 * The EventBus: fan-out of committed changes, per session and for the
 * session list. Subscribers are sinks that take each message synchronously
 * and answer whether they can keep up; one that cannot is dropped and ended,
 * so a stalled reader never slows the publisher or holds unbounded memory.
 * It resumes with Last-Event-ID.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { CommittedChange } from "./Domain/Artifact.js"
import type { Session, SessionFields } from "./Domain/Session.js"

/** A committed artifact change, tagged with the session revision it produced. */
export interface ArtifactNotice {
  readonly rev: number
  readonly change: CommittedChange
}

/** A change to the session list; `rev` orders them bus-wide. */
export type SessionNotice =
  & { readonly rev: number; readonly project: string | null }
  & (
    | { readonly _tag: "created"; readonly session: Session }
    /** `session`: the record after the change, for views that filter on it (not sent). */
    | { readonly _tag: "updated"; readonly id: string; readonly fields: SessionFields; readonly session: Session }
    | { readonly _tag: "removed"; readonly id: string }
  )

/** Why a sink was ended: its topic ended, or it fell a whole buffer behind. */
export type EndReason = "ended" | "overflow"

/**
 * A subscriber. `offer` must not block: it returns false when the sink's
 * bounded buffer is full, and the bus then ends it with "overflow".
 */
export interface Sink<A> {
  readonly offer: (message: A) => boolean
  readonly end: (reason: EndReason) => Effect.Effect<void>
}

/**
 * Subscribe first, deliver later: a Gate is subscribed before a snapshot is
 * read, holds what arrives meanwhile, and on `open` forwards it (minus what
 * the snapshot already holds) and everything after. No gap, no duplicate.
 */
export class Gate<A> implements Sink<A> {
  private pending: Array<A> = []
  private target: Sink<A> | undefined
  private accept: (a: A) => boolean = () => true
  private ended: EndReason | undefined

  constructor(private readonly capacity: number) {}

  offer(a: A): boolean {
    if (this.target !== undefined) return !this.accept(a) || this.target.offer(a)
    if (this.pending.length >= this.capacity) return false
    this.pending.push(a)
    return true
  }

  end(reason: EndReason): Effect.Effect<void> {
    if (this.target !== undefined) return this.target.end(reason)
    this.ended ??= reason
    return Effect.void
  }

  open(target: Sink<A>, accept: (a: A) => boolean): Effect.Effect<void> {
    return Effect.suspend(() => {
      const pending = this.pending
      this.pending = []
      this.accept = accept
      this.target = target
      for (const a of pending) {
        if (accept(a) && !target.offer(a)) return target.end("overflow")
      }
      return this.ended === undefined ? Effect.void : target.end(this.ended)
    })
  }
}

/** The subscriber fell a whole buffer behind and was cut off; it should resume. */
export class SlowConsumer extends Data.TaggedError("SlowConsumer")<{}> {}

/**
 * A sink over a bounded queue, read as a Stream: for Effect programs that
 * want changes as a Stream rather than pushed.
 */
export const queueSink = <A>(capacity: number): Effect.Effect<{
  readonly sink: Sink<A>
  readonly stream: Stream.Stream<A, SlowConsumer>
}> =>
  Effect.map(Queue.dropping<A>(capacity), (queue) => {
    let overflowed = false
    return {
      sink: {
        offer: (a) => queue.unsafeOffer(a),
        end: (reason) => Effect.suspend(() => {
          overflowed = reason === "overflow"
          return Queue.shutdown(queue)
        })
      },
      stream: Stream.fromQueue(queue).pipe(
        Stream.concat(Stream.suspend(() => overflowed ? Stream.fail(new SlowConsumer()) : Stream.empty))
      )
    }
  })

export class EventBus extends Context.Tag("@rein-ai/server/EventBus")<EventBus, {
  /** Adds the sink to the session's subscribers for the scope's life. */
  readonly subscribeArtifacts: (id: string, sink: Sink<ArtifactNotice>) => Effect.Effect<void, never, Scope.Scope>
  readonly publishArtifacts: (id: string, notices: ReadonlyArray<ArtifactNotice>) => Effect.Effect<void>
  /** Ends every artifact subscriber of a session (it was removed). */
  readonly endArtifacts: (id: string) => Effect.Effect<void>
  readonly subscribeSessions: (sink: Sink<SessionNotice>) => Effect.Effect<void, never, Scope.Scope>
  readonly publishSessions: (notice: SessionNotice) => Effect.Effect<void>
  /** Ends every subscriber of every topic: what they were promised can no longer be kept. */
  readonly endAll: Effect.Effect<void>
}>() {}

class Topic<A> {
  readonly sinks = new Set<Sink<A>>()

  subscribe(sink: Sink<A>, onEmpty?: () => void): Effect.Effect<void, never, Scope.Scope> {
    // On the scope itself rather than with acquireRelease, which would keep the subscribing fiber's
    // refs (and through them its context) for the subscription's life: KiBs per open stream.
    return Effect.scopeWith((scope) =>
      Effect.suspend(() => {
        this.sinks.add(sink)
        return Scope.addFinalizer(
          scope,
          Effect.sync(() => {
            this.sinks.delete(sink)
            if (this.sinks.size === 0) onEmpty?.()
          })
        )
      })
    )
  }

  publish(messages: ReadonlyArray<A>): Effect.Effect<void> {
    return Effect.suspend(() => {
      let overflowed: Array<Sink<A>> | undefined
      for (const sink of this.sinks) {
        for (const m of messages) {
          if (!sink.offer(m)) {
            ;(overflowed ??= []).push(sink)
            this.sinks.delete(sink)
            break
          }
        }
      }
      return overflowed === undefined
        ? Effect.void
        : Effect.forEach(overflowed, (sink) => sink.end("overflow"), { discard: true })
    })
  }

  end(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const all = Array.from(this.sinks)
      this.sinks.clear()
      return Effect.forEach(all, (sink) => sink.end("ended"), { discard: true })
    })
  }
}

export const make: Effect.Effect<typeof EventBus.Service, never, Scope.Scope> = Effect.gen(function*() {
  const sessions = new Topic<SessionNotice>()
  const artifacts = new Map<string, Topic<ArtifactNotice>>()

  const endAll = Effect.suspend(() => Effect.forEach([sessions, ...artifacts.values()], (t) => t.end(), { discard: true }))
  // Closing the bus ends every stream, so shutdown never waits on a client.
  yield* Effect.addFinalizer(() => endAll)

  return EventBus.of({
    subscribeArtifacts: (id, sink) =>
      Effect.suspend(() => {
        let t = artifacts.get(id)
        if (t === undefined) {
          t = new Topic()
          artifacts.set(id, t)
        }
        const topic = t
        // Drop the topic with its last subscriber, so ended sessions leave nothing behind.
        return topic.subscribe(sink, () => {
          if (artifacts.get(id) === topic) artifacts.delete(id)
        })
      }),
    publishArtifacts: (id, notices) => Effect.suspend(() => artifacts.get(id)?.publish(notices) ?? Effect.void),
    endArtifacts: (id) =>
      Effect.suspend(() => {
        const t = artifacts.get(id)
        artifacts.delete(id)
        return t?.end() ?? Effect.void
      }),
    subscribeSessions: (sink) => sessions.subscribe(sink),
    publishSessions: (notice) => sessions.publish([notice]),
    endAll
  })
})

export const layer: Layer.Layer<EventBus> = Layer.scoped(EventBus, make)
