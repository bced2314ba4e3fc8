/**
 * A server-sent-events stream over fetch that keeps itself open: it
 * reconnects with `Last-Event-ID` when the server ends the stream or the
 * connection drops, backs off while the server is unreachable, and stops for
 * good when the resource is gone (404) or the credentials are refused.
 * Works wherever fetch streams response bodies (browsers, Node 18+).
 */
import { createParser } from "eventsource-parser"
import { errorFromResponse, networkError, ReinError } from "./errors.js"
import { authHeaders, backoff, type Fetch, type RetryOptions, sleep } from "./util.js"

export interface SseMessage {
  readonly event: string
  readonly id: string | undefined
  readonly data: string
}

/**
 * - `connecting`: first attempt in progress
 * - `open`: the response arrived; events are flowing
 * - `reconnecting`: the stream dropped or the server was unreachable; retrying
 * - `gone`: the server answered 404 (the session was removed); final
 * - `failed`: the server refused the request (401, 403, 400); final
 * - `removed`: the stream said its session was deleted (`session_removed`, the command stream); final
 * - `superseded`: the stream said a newer sandbox took the session over (`superseded`, the command
 *   stream); final: reconnecting would take it back, and the two would take turns
 * - `closed`: closed by the caller; final
 */
export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "gone" | "removed" | "superseded" | "failed" | "closed"

export interface ConnectionState {
  readonly status: ConnectionStatus
  /** Consecutive failed attempts; 0 while open. */
  readonly attempt: number
  /** The last failure, when there was one. */
  readonly error?: ReinError | undefined
}

export const isFinal = (status: ConnectionStatus): boolean =>
  status === "gone" || status === "removed" || status === "superseded" || status === "failed" || status === "closed"

export interface StreamOptions {
  readonly fetch: Fetch
  readonly url: string
  /**
   * The URL to open while there is no `Last-Event-ID` to resume from (the first connection), e.g.
   * with `?tail=`; default `url`.
   */
  readonly firstUrl?: string | undefined
  readonly token?: string | undefined
  readonly retry?: RetryOptions | undefined
  /** Send `Last-Event-ID` on reconnects (the artifact stream). Default true. */
  readonly resume?: boolean
  /** An event that ends the stream for good, with status `removed` (the command stream's `session_removed`). */
  readonly finalEvent?: string | undefined
  /** An event that ends the stream for good, with status `superseded` (the command stream's `superseded`). */
  readonly supersededEvent?: string | undefined
  /** A response arrived with 200: the next messages are this connection's snapshots. */
  readonly onOpen: () => void
  readonly onMessage: (message: SseMessage) => void
  readonly onState: (state: ConnectionState) => void
}

export interface StreamHandle {
  /** Resolves when the stream stops for good (closed, gone or failed). */
  readonly done: Promise<ConnectionState>
  readonly lastEventId: () => string | undefined
  readonly close: () => void
}

/** A connection that lived this long resets the back-off. */
const STABLE_MS = 10_000

/** Reads one response body to its end, feeding each message to `onMessage`. */
const readBody = async (body: ReadableStream<Uint8Array>, onMessage: (m: SseMessage) => void): Promise<void> => {
  const parser = createParser({
    onEvent: (m) => onMessage({ event: m.event ?? "message", id: m.id, data: m.data })
  })
  const reader = body.getReader()
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      parser.feed(decoder.decode(value, { stream: true }))
    }
  } finally {
    reader.releaseLock()
  }
}

export const openStream = (options: StreamOptions): StreamHandle => {
  const controller = new AbortController()
  const signal = controller.signal
  let lastEventId: string | undefined
  let state: ConnectionState = { status: "connecting", attempt: 0 }
  const setState = (next: ConnectionState) => {
    state = next
    options.onState(next)
  }

  const run = async (): Promise<ConnectionState> => {
    let attempt = 0
    let retryAfter: number | undefined
    for (let first = true; !signal.aborted; first = false) {
      if (!first) {
        setState({ status: "reconnecting", attempt, error: state.error })
        await sleep(backoff(attempt, options.retry, retryAfter), signal)
        retryAfter = undefined
        if (signal.aborted) break
      }
      let res: Response
      try {
        const resuming = options.resume !== false && lastEventId !== undefined
        res = await options.fetch(resuming ? options.url : options.firstUrl ?? options.url, {
          headers: {
            accept: "text/event-stream",
            ...authHeaders(options.token),
            ...(resuming ? { "last-event-id": lastEventId } : {})
          },
          signal
        })
      } catch (e) {
        if (signal.aborted) break
        attempt++
        state = { ...state, error: networkError(e) }
        continue
      }
      if (!res.ok || res.body === null) {
        const error = res.ok ? new ReinError(res.status, "no_body", "the stream response has no body") : await errorFromResponse(res)
        if (res.status === 404) return { status: "gone", attempt, error }
        if (!error.transient) return { status: "failed", attempt, error }
        attempt++
        retryAfter = error.retryAfter
        state = { ...state, error }
        continue
      }
      const openedAt = Date.now()
      setState({ status: "open", attempt: 0 })
      options.onOpen()
      let final: "removed" | "superseded" | undefined
      try {
        await readBody(res.body, (m) => {
          if (final !== undefined) return
          if (m.id !== undefined) lastEventId = m.id
          if (options.finalEvent !== undefined && m.event === options.finalEvent) final = "removed"
          if (options.supersededEvent !== undefined && m.event === options.supersededEvent) final = "superseded"
          options.onMessage(m)
        })
        if (final !== undefined) return { status: final, attempt: 0 }
        // The server ended the stream (session removed, shutdown, or we fell behind): reconnect to find out which.
        state = { ...state, error: undefined }
      } catch (e) {
        // Told the session is gone, a connection that then drops changes nothing.
        if (final !== undefined) return { status: final, attempt: 0 }
        if (signal.aborted) break
        state = { ...state, error: networkError(e) }
      }
      attempt = Date.now() - openedAt >= STABLE_MS ? 1 : attempt + 1
    }
    return { status: "closed", attempt: 0 }
  }

  const done = run().then(
    (final) => {
      setState(final)
      return final
    },
    (e) => {
      const final: ConnectionState = { status: "failed", attempt: 0, error: e instanceof ReinError ? e : networkError(e) }
      setState(final)
      return final
    }
  )
  return { done, lastEventId: () => lastEventId, close: () => controller.abort() }
}
