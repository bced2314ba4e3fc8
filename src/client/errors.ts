/**
 * The one error type of the client: an HTTP error answered by the server
 * (`{ error: { code, message } }`), or a network failure (`status` 0).
 */
export class ReinError extends Error {
  override readonly name = "ReinError"
  constructor(
    /** The HTTP status, or 0 when no response arrived. */
    readonly status: number,
    /** The server's error code (`not_found`, `no_sandbox`, ...), or `network_error`. */
    readonly code: string,
    message: string,
    /** Seconds to wait before retrying, from a `retry-after` header. */
    readonly retryAfter?: number
  ) {
    super(message)
  }

  /** Worth retrying as is: no response, overload, a transient server failure. */
  get transient(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500
  }
}

/** Builds a ReinError from a non-2xx response, reading its JSON error body when there is one. */
export const errorFromResponse = async (res: Response): Promise<ReinError> => {
  let code = `http_${res.status}`
  let message = `${res.status} ${res.statusText}`.trim()
  try {
    const text = await res.text()
    const body = text === "" ? undefined : JSON.parse(text)
    if (body && typeof body === "object" && body.error && typeof body.error === "object") {
      if (typeof body.error.code === "string") code = body.error.code
      if (typeof body.error.message === "string") message = body.error.message
    }
  } catch {
    // not JSON: keep the status line
  }
  const retry = Number(res.headers.get("retry-after"))
  return new ReinError(res.status, code, message, Number.isFinite(retry) && retry >= 0 ? retry : undefined)
}

export const networkError = (cause: unknown): ReinError => {
  const e = new ReinError(0, "network_error", cause instanceof Error ? cause.message : String(cause))
  ;(e as { cause?: unknown }).cause = cause
  return e
}
