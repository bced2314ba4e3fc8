/**
 * A live, converged view of server state: read `state`, `subscribe` to
 * changes, `until(predicate)`, or iterate it (`for await`) to receive each
 * new state. Changes arriving together are delivered as one notification;
 * an iterator that falls behind skips to the latest state.
 */
import { type ConnectionState, isFinal } from "./stream.js"

export interface WatchState {
  readonly connection: ConnectionState
  /** True once this connection's snapshots are complete (`snapshot_complete`). */
  readonly synced: boolean
}

export class Watch<S extends WatchState> implements AsyncIterable<S> {
  private listeners = new Set<(state: S) => void>()
  private scheduled = false
  private current: S
  /** Resolves when the watch stops for good: closed, the resource gone, or access refused. */
  readonly done: Promise<S>
  private resolveDone!: (state: S) => void

  /** @internal */
  constructor(initial: S) {
    this.current = initial
    this.done = new Promise((resolve) => (this.resolveDone = resolve))
  }

  /** The latest state. A new object after every change; unchanged parts keep their identity. */
  get state(): S {
    return this.current
  }

  /** Calls `listener` after each change (not immediately). Returns the unsubscribe function. */
  subscribe(listener: (state: S) => void): () => void {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  /** Resolves with the first state (the current one included) that satisfies `predicate`. */
  until(predicate: (state: S) => boolean, options: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {}): Promise<S> {
    return new Promise((resolve, reject) => {
      if (predicate(this.current)) return resolve(this.current)
      if (isFinal(this.current.connection.status)) {
        return reject(new Error(`the watch ended (${this.current.connection.status}) before the awaited state`))
      }
      let timer: ReturnType<typeof setTimeout> | undefined
      const cleanup = () => {
        unsubscribe()
        if (timer !== undefined) clearTimeout(timer)
        options.signal?.removeEventListener("abort", onAbort)
      }
      const onAbort = () => {
        cleanup()
        reject(new Error("aborted"))
      }
      const unsubscribe = this.subscribe((s) => {
        if (predicate(s)) {
          cleanup()
          resolve(s)
        } else if (isFinal(s.connection.status)) {
          cleanup()
          reject(new Error(`the watch ended (${s.connection.status}) before the awaited state`))
        }
      })
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup()
          reject(new Error(`timed out after ${options.timeoutMs} ms waiting for a state`))
        }, options.timeoutMs)
      }
      options.signal?.addEventListener("abort", onAbort, { once: true })
    })
  }

  /** Yields the current state, then each new one; ends after the final state. */
  async *[Symbol.asyncIterator](): AsyncIterator<S> {
    let seen: S | undefined
    let wake: (() => void) | undefined
    const unsubscribe = this.subscribe(() => wake?.())
    try {
      for (;;) {
        const s = this.current
        if (s !== seen) {
          seen = s
          yield s
          if (isFinal(s.connection.status)) return
          continue
        }
        await new Promise<void>((resolve) => (wake = resolve))
        wake = undefined
      }
    } finally {
      unsubscribe()
    }
  }

  /** Stops the stream; the watch ends with `connection.status` "closed". */
  close(): void {
    this.stop()
  }

  /** @internal Stops the underlying stream. */
  protected stop(): void {}

  /** @internal Replaces the state and schedules one notification for this tick. */
  protected set(next: S): void {
    this.current = next
    if (isFinal(next.connection.status)) {
      this.flush()
      this.resolveDone(next)
      return
    }
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => this.flush())
  }

  private flush(): void {
    this.scheduled = false
    const s = this.current
    for (const listener of [...this.listeners]) {
      try {
        listener(s)
      } catch (e) {
        // a listener's bug must not break the stream or the other listeners
        console.error("rein client: a watch listener threw", e)
      }
    }
  }
}
