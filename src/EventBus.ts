/**
 * The EventBus: fan-out of committed changes, per session and for the
 * session list. Each subscriber owns a bounded queue; a subscriber that falls
 * that far behind is ended (its queue shut down) instead of slowing the
 * publisher or holding unbounded memory. It resumes with Last-Event-ID.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
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
    | { readonly _tag: "updated"; readonly id: string; readonly fields: SessionFields }
    | { readonly _tag: "removed"; readonly id: string }
  )

export interface EventBusOptions {
  /** Messages a subscriber may have unread before it is disconnected. */
  readonly subscriberBuffer: number
}

/** The subscriber fell a whole buffer behind and was cut off; it should resume. */
export class SlowConsumer extends Data.TaggedError("SlowConsumer")<{}> {}

/** One subscriber's bounded mailbox. */
export class Subscription<A> {
  /** Set when the buffer overflowed: the stream then fails with SlowConsumer instead of ending. */
  overflowed = false
  constructor(readonly queue: Queue.Queue<A>) {}

  /** The messages, ending when the topic ends, failing if this subscriber fell behind. */
  get stream(): Stream.Stream<A, SlowConsumer> {
    return Stream.fromQueue(this.queue).pipe(
      Stream.concat(Stream.suspend(() => this.overflowed ? Stream.fail(new SlowConsumer()) : Stream.empty))
    )
  }
}

export class EventBus extends Context.Tag("@rein-ai/server/EventBus")<EventBus, {
  readonly subscribeArtifacts: (id: string) => Effect.Effect<Subscription<ArtifactNotice>, never, Scope.Scope>
  readonly publishArtifacts: (id: string, notices: ReadonlyArray<ArtifactNotice>) => Effect.Effect<void>
  /** Ends every artifact subscriber of a session (it was removed). */
  readonly endArtifacts: (id: string) => Effect.Effect<void>
  readonly subscribeSessions: Effect.Effect<Subscription<SessionNotice>, never, Scope.Scope>
  readonly publishSessions: (notice: SessionNotice) => Effect.Effect<void>
}>() {}

class Topic<A> {
  readonly subscribers = new Set<Subscription<A>>()
  constructor(readonly capacity: number) {}

  subscribe(onEmpty?: () => void): Effect.Effect<Subscription<A>, never, Scope.Scope> {
    return Effect.acquireRelease(
      Queue.dropping<A>(this.capacity).pipe(
        Effect.map((q) => new Subscription(q)),
        Effect.tap((sub) => Effect.sync(() => this.subscribers.add(sub)))
      ),
      (sub) =>
        Effect.zipRight(
          Effect.sync(() => {
            this.subscribers.delete(sub)
            if (this.subscribers.size === 0) onEmpty?.()
          }),
          Queue.shutdown(sub.queue)
        )
    )
  }

  /** Offers never wait: a full queue means a stalled reader, which is cut off. */
  publish(messages: ReadonlyArray<A>): Effect.Effect<void> {
    return Effect.suspend(() => {
      let overflowed: Array<Subscription<A>> | undefined
      for (const sub of this.subscribers) {
        for (const m of messages) {
          if (!sub.queue.unsafeOffer(m)) {
            sub.overflowed = true
            ;(overflowed ??= []).push(sub)
            this.subscribers.delete(sub)
            break
          }
        }
      }
      return overflowed === undefined
        ? Effect.void
        : Effect.forEach(overflowed, (sub) => Queue.shutdown(sub.queue), { discard: true })
    })
  }

  end(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const all = Array.from(this.subscribers)
      this.subscribers.clear()
      return Effect.forEach(all, (sub) => Queue.shutdown(sub.queue), { discard: true })
    })
  }
}

export const make = (options: EventBusOptions): Effect.Effect<typeof EventBus.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sessions = new Topic<SessionNotice>(options.subscriberBuffer)
    const artifacts = new Map<string, Topic<ArtifactNotice>>()

    // Closing the bus ends every stream, so shutdown never waits on a client.
    yield* Effect.addFinalizer(() =>
      Effect.forEach([sessions, ...artifacts.values()], (t) => t.end(), { discard: true })
    )

    const topic = (id: string) => {
      let t = artifacts.get(id)
      if (t === undefined) {
        t = new Topic(options.subscriberBuffer)
        artifacts.set(id, t)
      }
      return t
    }

    return EventBus.of({
      subscribeArtifacts: (id) =>
        Effect.suspend(() => {
          const t = topic(id)
          // Drop the topic with its last subscriber, so ended sessions leave nothing behind.
          return t.subscribe(() => {
            if (artifacts.get(id) === t) artifacts.delete(id)
          })
        }),
      publishArtifacts: (id, notices) => Effect.suspend(() => artifacts.get(id)?.publish(notices) ?? Effect.void),
      endArtifacts: (id) =>
        Effect.suspend(() => {
          const t = artifacts.get(id)
          artifacts.delete(id)
          return t?.end() ?? Effect.void
        }),
      subscribeSessions: sessions.subscribe(),
      publishSessions: (notice) => sessions.publish([notice])
    })
  })

export const layer = (options: EventBusOptions): Layer.Layer<EventBus> => Layer.scoped(EventBus, make(options))
