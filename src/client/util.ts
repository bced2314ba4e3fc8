/**
 * Small isomorphic helpers: URLs, headers, abortable sleeps, back-off, ids.
 */

export interface RetryOptions {
  /** First delay in milliseconds. Default 250. */
  readonly initialDelay?: number
  /** Largest delay in milliseconds. Default 10 000. */
  readonly maxDelay?: number
}

/** Exponential back-off with jitter: attempt 1 waits about `initialDelay`, doubling up to `maxDelay`. */
export const backoff = (attempt: number, retry: RetryOptions = {}, retryAfterSeconds?: number): number => {
  const initial = retry.initialDelay ?? 250
  const max = retry.maxDelay ?? 10_000
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1))
  const jittered = base / 2 + Math.random() * (base / 2)
  return retryAfterSeconds !== undefined ? Math.max(jittered, Math.min(max, retryAfterSeconds * 1000)) : jittered
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener("abort", done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener("abort", done, { once: true })
  })

/** A path segment for a session id; ids are URL-safe already, `:` is kept readable. */
export const segment = (id: string): string => encodeURIComponent(id).replace(/%3A/gi, ":")

export const joinUrl = (baseUrl: string, path: string): string => baseUrl.replace(/\/+$/, "") + path

export const authHeaders = (token: string | undefined): Record<string, string> =>
  token ? { authorization: `Bearer ${token}` } : {}

/** A random key for `Idempotency-Key`: crypto.randomUUID where available. */
export const randomKey = (): string => {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto
  if (c?.randomUUID) {
    try {
      return c.randomUUID()
    } catch {
      // not a secure context
    }
  }
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`
}

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>

/** The global fetch, bound (browsers require `this` to be the window). */
export const defaultFetch = (): Fetch => {
  if (typeof globalThis.fetch !== "function") throw new Error("no global fetch: pass options.fetch")
  return (input, init) => globalThis.fetch(input, init)
}
