/**
 * Every failure a caller can see, as tagged errors. The one map to HTTP
 * status codes lives in `Http/Errors.ts`.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

export class SessionNotFound extends Data.TaggedError("SessionNotFound")<{ readonly id: string }> {
  override get message() {
    return `session ${this.id} not found`
  }
}

export class SessionExists extends Data.TaggedError("SessionExists")<{ readonly id: string }> {
  override get message() {
    return `session ${this.id} already exists`
  }
}

/** Input that does not fit its schema; `message` names the offending field. */
export class InvalidInput extends Data.TaggedError("InvalidInput")<{ readonly message: string }> {}

export class PayloadTooLarge extends Data.TaggedError("PayloadTooLarge")<{ readonly limit: number }> {
  override get message() {
    return `request body exceeds the limit of ${this.limit} bytes`
  }
}

export class NoSandbox extends Data.TaggedError("NoSandbox")<{ readonly id: string }> {
  override get message() {
    return `session ${this.id} has no sandbox connected`
  }
}

export class PermissionConflict extends Data.TaggedError("PermissionConflict")<{
  readonly requestId: string
  readonly reason: "unknown" | "answered"
}> {
  override get message() {
    return this.reason === "unknown"
      ? `no permission request ${this.requestId} in this session`
      : `permission request ${this.requestId} was already answered`
  }
}

/** The request does not fit the resource's state; `message` says why. */
export class Conflict extends Data.TaggedError("Conflict")<{ readonly message: string }> {}

/** No runner can start the agent asked for; `message` says what is missing (none online, none offers it, ...). */
export class NoRunner extends Data.TaggedError("NoRunner")<{ readonly message: string }> {}

/** A runner id that is not registered. */
export class RunnerNotFound extends Data.TaggedError("RunnerNotFound")<{ readonly id: string }> {
  override get message() {
    return `runner ${this.id} not found`
  }
}

/** The store could not be read or written (disk full, locked, gone). */
export class StoreError extends Data.TaggedError("StoreError")<{ readonly cause: unknown }> {
  override get message() {
    return `the session store is unavailable: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }

  /** Every failure of `effect` as a StoreError (what the database said becomes its cause). */
  static refail<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, StoreError, R> {
    return Effect.mapError(effect, (cause) => cause instanceof StoreError ? cause : new StoreError({ cause }))
  }

  /** `refail`, except that failures of class `kept` are the store's answer, not its failure, and pass through. */
  static refailExcept<K extends new(...args: any) => any>(kept: K) {
    return <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, InstanceType<K> | StoreError, R> =>
      Effect.mapError(effect, (cause) => cause instanceof kept ? cause as InstanceType<K> : cause instanceof StoreError ? cause : new StoreError({ cause }))
  }
}

/** No credentials where the server requires them. */
export class Unauthorized extends Data.TaggedError("Unauthorized")<{}> {
  override get message() {
    return "missing bearer token: send Authorization: Bearer <token>"
  }
}

/** Credentials that do not grant this route. */
export class Forbidden extends Data.TaggedError("Forbidden")<{}> {
  override get message() {
    return "this token does not grant access to this route"
  }
}

/** A configured capacity (e.g. `maxConnections`) is reached; try again later. */
export class Overloaded extends Data.TaggedError("Overloaded")<{ readonly what: string }> {
  override get message() {
    return `server is at capacity: ${this.what}`
  }
}

/**
 * A write expected the session at a revision another server instance has moved past (or
 * removed it). Internal: the writer catches up and tries again.
 */
export class StaleSession extends Data.TaggedError("StaleSession")<{ readonly id: string }> {
  override get message() {
    return `session ${this.id} changed on another instance`
  }
}
