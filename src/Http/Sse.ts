/**
 * Server-sent events: framing (`id:`, `event:`, one `data:` line, a blank
 * line), keep-alive comments, and the response with its headers.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { updatedPayload } from "../Domain/Artifact.js"
import type { Command } from "../Domain/Command.js"
import type { ArtifactStreamItem, SessionStreamItem } from "../Sessions.js"

const encoder = new TextEncoder()

/** One frame. JSON never contains a raw newline, so `data` is always one line. */
export const frame = (event: string, data: unknown, id?: number): string =>
  `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const complete = frame("snapshot_complete", {})
const keepAlive = encoder.encode(": keep-alive\n\n")

/**
 * A live change reaches every subscriber of its session as the same object,
 * so its frame is encoded once, not once per subscriber.
 */
const encoded = new WeakMap<object, string>()
const cached = (key: object, make: () => string) => {
  let s = encoded.get(key)
  if (s === undefined) {
    s = make()
    encoded.set(key, s)
  }
  return s
}

export const artifactFrame = (item: ArtifactStreamItem): string => {
  switch (item._tag) {
    case "snapshot":
      return frame("artifact_snapshot", { artifact: item.artifact }, item.artifact.seq)
    case "complete":
      return complete
    case "change": {
      const change = item.change
      return cached(change, () =>
        change._tag === "created"
          ? frame("artifact_created", { artifact: change.artifact }, change.artifact.seq)
          : frame("artifact_updated", updatedPayload(change), change.seq))
    }
  }
}

export const sessionFrame = (item: SessionStreamItem): string => {
  switch (item._tag) {
    case "snapshot":
      return frame("session_snapshot", { session: item.session })
    case "complete":
      return complete
    case "notice": {
      const n = item.notice
      return cached(n, () =>
        n._tag === "created"
          ? frame("session_created", { session: n.session })
          : n._tag === "updated"
          ? frame("session_updated", { id: n.id, fields: n.fields })
          : frame("session_removed", { id: n.id }))
    }
  }
}

export const commandFrame = (command: Command): string => frame("command", command)

/** The command stream has no history; it opens with `snapshot_complete` so a sandbox knows it is connected. */
export const commandStream = <E>(commands: Stream.Stream<Command, E>): Stream.Stream<string, E> =>
  Stream.succeed(complete).pipe(Stream.concat(Stream.map(commands, commandFrame)))

/**
 * The SSE response: frames grouped per chunk into one write, keep-alive
 * comments while idle, ending when the source ends. A source that fails
 * (the subscriber fell a whole buffer behind) runs `onSlow`, which drops the
 * connection so its socket buffers are freed too.
 */
export const response = <A, E>(
  items: Stream.Stream<A, E>,
  encode: (a: A) => string,
  keepAliveInterval: Duration.DurationInput,
  onSlow: Effect.Effect<void>
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.stream(
    items.pipe(
      Stream.mapChunks((chunk) => Chunk.of(encoder.encode(Chunk.join(Chunk.map(chunk, encode), "")))),
      Stream.catchAll(() => Stream.drain(Stream.fromEffect(onSlow))),
      Stream.merge(Stream.fromSchedule(Schedule.spaced(keepAliveInterval)).pipe(Stream.as(keepAlive)), {
        haltStrategy: "left"
      })
    ),
    {
      contentType: "text/event-stream",
      // A stream holds its connection for its whole life; closing it with the stream lets shutdown finish at once.
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no", connection: "close" }
    }
  )
