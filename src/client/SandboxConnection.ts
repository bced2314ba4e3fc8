/**
 * `SandboxConnection`: what an agent in a sandbox needs. It holds the
 * session's command stream open (reconnecting), and posts events in order,
 * batched: deltas that arrive together go in one request, and adjacent deltas
 * to the same artifact are merged. Each batch carries an `Idempotency-Key`,
 * so it is retried with back-off after a network failure or a 5xx without
 * ever being applied twice.
 */
import type { SandboxCommand } from "../Domain/Command.js"
import type { Event } from "../Domain/Event.js"
import { errorFromResponse, networkError, ReinError } from "./errors.js"
import { type ConnectionState, isFinal, openStream, type StreamHandle } from "./stream.js"
import { authHeaders, backoff, defaultFetch, type Fetch, joinUrl, randomKey, type RetryOptions, segment, sleep } from "./util.js"

export interface SandboxConnectionOptions {
  readonly baseUrl: string
  readonly sessionId: string
  /** The client token, or this session's `sandboxToken`, when the server runs with auth. */
  readonly token?: string | undefined
  readonly fetch?: Fetch | undefined
  /** How long a delta waits for company before its batch is posted, in ms. Default 25. */
  readonly batchDelay?: number
  /** Most events in one request. Default 1 000. */
  readonly maxBatchEvents?: number
  /** Most JSON bytes in one request (the server's limit is 1 MiB by default). Default 256 KiB. */
  readonly maxBatchBytes?: number
  /** Back-off for reconnects and for retried posts. */
  readonly retry?: RetryOptions & {
    /** Attempts per batch before its events are given up. Default 8. */
    readonly maxAttempts?: number
  }
  /** Called with each command, in order. */
  readonly onCommand?: (command: SandboxCommand) => void
  readonly onState?: (state: ConnectionState) => void
  /**
   * The session was deleted or expired (the command stream said `session_removed`): the connection
   * is final, with status `removed`, and does not reconnect. Not called on a network drop.
   */
  readonly onRemoved?: () => void
  /**
   * A batch the server refuses as a whole (400: one bad event) is posted again one event at a
   * time, in order and before anything queued after it, so the good events are not lost with it.
   */
  readonly postRefusedSingly?: boolean
  /** A batch was given up (rejected by the server, or out of attempts); its `send` promises reject too. */
  readonly onError?: (error: ReinError, events: ReadonlyArray<Event>) => void
}

interface Pending {
  readonly events: ReadonlyArray<Event>
  readonly json: ReadonlyArray<string>
  readonly resolve: () => void
  readonly reject: (e: ReinError) => void
}

const isDelta = (e: Event) => e.type === "text_delta" || e.type === "reasoning_delta" || e.type === "tool_call_input_delta"

/** Adjacent deltas to the same artifact become one: the server would append them in the same order. */
export const mergeDeltas = (events: ReadonlyArray<Event>): Array<Event> => {
  const out: Array<Event> = []
  for (const e of events) {
    const last = out[out.length - 1]
    if (last !== undefined && last.type === e.type) {
      if ((e.type === "text_delta" || e.type === "reasoning_delta") && (last as typeof e).partId === e.partId) {
        out[out.length - 1] = { ...(last as typeof e), delta: (last as typeof e).delta + e.delta }
        continue
      }
      if (e.type === "tool_call_input_delta" && (last as typeof e).toolCallId === e.toolCallId) {
        out[out.length - 1] = { ...(last as typeof e), delta: (last as typeof e).delta + e.delta }
        continue
      }
    }
    out.push(e)
  }
  return out
}

export class SandboxConnection {
  readonly sessionId: string
  private readonly options: SandboxConnectionOptions
  private readonly fetchFn: Fetch
  private readonly closing = new AbortController()
  private stream: StreamHandle | undefined
  private current: ConnectionState = { status: "closed", attempt: 0 }
  private readonly listeners = new Set<(c: SandboxCommand) => void>()
  private readonly stateListeners = new Set<(s: ConnectionState) => void>()
  private queue: Array<Pending> = []
  private timer: ReturnType<typeof setTimeout> | undefined
  private pumping: Promise<void> | undefined
  /** Commands not yet taken by `commands()` iterators, per iterator. */
  private readonly inboxes = new Set<{ items: Array<SandboxCommand>; wake: (() => void) | undefined }>()
  private connected: Promise<void> | undefined

  constructor(options: SandboxConnectionOptions) {
    this.options = options
    this.sessionId = options.sessionId
    this.fetchFn = options.fetch ?? defaultFetch()
    if (options.onCommand) this.listeners.add(options.onCommand)
    if (options.onState) this.stateListeners.add(options.onState)
  }

  /** The command stream's state; "closed" before `connect()` and after `close()`. */
  get state(): ConnectionState {
    return this.current
  }

  /**
   * Opens the command stream (the session becomes `live`) and keeps it open.
   * Resolves once connected; rejects with a ReinError when the session does
   * not exist (404) or the token is refused. Calling it again returns the same promise.
   */
  connect(): Promise<void> {
    if (this.connected) return this.connected
    this.connected = new Promise<void>((resolve, reject) => {
      this.stream = openStream({
        fetch: this.fetchFn,
        url: joinUrl(this.options.baseUrl, `/sessions/${segment(this.sessionId)}/commands`),
        token: this.options.token,
        retry: this.options.retry,
        resume: false,
        finalEvent: "session_removed",
        supersededEvent: "superseded",
        onOpen: () => {},
        onMessage: (m) => {
          if (m.event === "snapshot_complete") return resolve()
          if (m.event !== "command") return
          const command = JSON.parse(m.data) as SandboxCommand
          for (const inbox of this.inboxes) {
            inbox.items.push(command)
            inbox.wake?.()
          }
          for (const listener of [...this.listeners]) {
            try {
              listener(command)
            } catch (e) {
              console.error("rein sandbox: a command listener threw", e)
            }
          }
        },
        onState: (s) => {
          this.current = s
          if (isFinal(s.status)) {
            reject(s.error ?? new ReinError(0, s.status, `command stream ${s.status}`))
            for (const inbox of this.inboxes) inbox.wake?.()
          }
          for (const listener of [...this.stateListeners]) listener(s)
          if (s.status === "removed") this.options.onRemoved?.()
        }
      })
    })
    this.connected.catch(() => {})
    return this.connected
  }

  /** Calls `listener` with each command. Returns the unsubscribe function. */
  onCommand(listener: (command: SandboxCommand) => void): () => void {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.stateListeners.add(listener)
    return () => void this.stateListeners.delete(listener)
  }

  /** The commands received from this call on; ends when the connection is closed or the session is gone. */
  commands(): AsyncGenerator<SandboxCommand> {
    const inbox: { items: Array<SandboxCommand>; wake: (() => void) | undefined } = { items: [], wake: undefined }
    this.inboxes.add(inbox)
    return this.drain(inbox)
  }

  private async *drain(inbox: { items: Array<SandboxCommand>; wake: (() => void) | undefined }): AsyncGenerator<SandboxCommand> {
    try {
      for (;;) {
        const next = inbox.items.shift()
        if (next !== undefined) {
          yield next
          continue
        }
        if (this.stream !== undefined && isFinal(this.current.status)) return
        await new Promise<void>((resolve) => (inbox.wake = resolve))
        inbox.wake = undefined
      }
    } finally {
      this.inboxes.delete(inbox)
    }
  }

  /**
   * Queues events for posting, in order. Resolves once the server accepted
   * them (202); rejects with a ReinError when they were given up. Awaiting it
   * is optional: failures also reach `onError`.
   */
  send(events: Event | ReadonlyArray<Event>): Promise<void> {
    const list: ReadonlyArray<Event> = Array.isArray(events) ? events : [events as Event]
    if (this.closing.signal.aborted) return Promise.reject(new ReinError(0, "closed", "the sandbox connection is closed"))
    if (list.length === 0) return Promise.resolve()
    const promise = new Promise<void>((resolve, reject) => {
      this.queue.push({ events: list, json: list.map((e) => JSON.stringify(e)), resolve, reject })
    })
    promise.catch(() => {})
    if (list.every(isDelta)) {
      this.timer ??= setTimeout(() => this.kick(), this.options.batchDelay ?? 25)
    } else this.kick()
    return promise
  }

  /** Resolves when everything sent so far was posted (or given up). */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.pumping !== undefined) {
      this.kick()
      await this.pumping
    }
  }

  /** Posts what is queued, then closes the command stream. */
  async close(): Promise<void> {
    await this.flush()
    this.closing.abort()
    this.stream?.close()
    await this.stream?.done
    for (const inbox of this.inboxes) inbox.wake?.()
  }

  private kick(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.pumping ??= this.pump().finally(() => {
      this.pumping = undefined
      // Events sent between the pump's last look at the queue and now (a caller resuming on its
      // `send` promise sends the next at once) would otherwise wait for the next send.
      if (this.queue.length > 0 && this.timer === undefined) this.kick()
    })
  }

  /** One request at a time, so batches apply in order; what queues meanwhile forms the next batch. */
  private async pump(): Promise<void> {
    const maxEvents = this.options.maxBatchEvents ?? 1_000
    const maxBytes = this.options.maxBatchBytes ?? 256 * 1024
    while (this.queue.length > 0) {
      const batch: Array<Pending> = []
      let count = 0
      let bytes = 0
      while (this.queue.length > 0) {
        const next = this.queue[0]!
        const size = next.json.reduce((n, j) => n + j.length + 1, 0)
        if (batch.length > 0 && (count + next.events.length > maxEvents || bytes + size > maxBytes)) break
        batch.push(this.queue.shift()!)
        count += next.events.length
        bytes += size
      }
      const events = mergeDeltas(batch.flatMap((p) => p.events))
      try {
        await this.post(events)
        for (const p of batch) p.resolve()
      } catch (e) {
        const error = e instanceof ReinError ? e : networkError(e)
        if (this.options.postRefusedSingly === true && error.status === 400 && events.length > 1) {
          const failed = await this.postSingly(events)
          for (const p of batch) failed === undefined ? p.resolve() : p.reject(failed)
          continue
        }
        for (const p of batch) p.reject(error)
        this.options.onError?.(error, events)
      }
    }
  }

  /** Each event on its own; the first failure, after every event was tried (each reported to `onError`). */
  private async postSingly(events: ReadonlyArray<Event>): Promise<ReinError | undefined> {
    let first: ReinError | undefined
    for (const event of events) {
      try {
        await this.post([event])
      } catch (e) {
        const error = e instanceof ReinError ? e : networkError(e)
        first ??= error
        this.options.onError?.(error, [event])
      }
    }
    return first
  }

  private async post(events: ReadonlyArray<Event>): Promise<void> {
    const key = randomKey()
    const body = JSON.stringify(events)
    const maxAttempts = this.options.retry?.maxAttempts ?? 8
    let last: ReinError | undefined
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) await sleep(backoff(attempt - 1, this.options.retry, last?.retryAfter))
      let res: Response
      try {
        res = await this.fetchFn(joinUrl(this.options.baseUrl, `/sessions/${segment(this.sessionId)}/events`), {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key, ...authHeaders(this.options.token) },
          body
        })
      } catch (e) {
        last = networkError(e)
        continue
      }
      if (res.ok) {
        await res.body?.cancel().catch(() => {})
        return
      }
      last = await errorFromResponse(res)
      if (!last.transient) throw last
    }
    throw last ?? new ReinError(0, "network_error", "the events could not be posted")
  }
}
