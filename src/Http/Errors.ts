/**
 * The one map from failures to HTTP status codes and JSON error bodies:
 * `{ "error": { "code": "not_found", "message": "session a1 not found" } }`.
 */
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type {
  Conflict,
  Forbidden,
  InvalidInput,
  NoRunner,
  NoSandbox,
  Overloaded,
  PayloadTooLarge,
  PermissionConflict,
  RunnerNotFound,
  SessionExists,
  SessionNotFound,
  StoreError,
  Unauthorized
} from "../Domain/Errors.js"

export type AppError =
  | SessionNotFound
  | SessionExists
  | InvalidInput
  | PayloadTooLarge
  | NoSandbox
  | Conflict
  | NoRunner
  | RunnerNotFound
  | PermissionConflict
  | StoreError
  | Unauthorized
  | Forbidden
  | Overloaded

export const errorBody = (code: string, message: string) => ({ error: { code, message } })

export const jsonError = (status: number, code: string, message: string, headers?: Record<string, string>) =>
  HttpServerResponse.unsafeJson(errorBody(code, message), { status, ...(headers ? { headers } : {}) })

const statusOf = {
  SessionNotFound: [404, "not_found"],
  SessionExists: [409, "conflict"],
  InvalidInput: [400, "bad_request"],
  PayloadTooLarge: [413, "payload_too_large"],
  NoSandbox: [409, "no_sandbox"],
  NoRunner: [409, "no_runner"],
  Conflict: [409, "conflict"],
  RunnerNotFound: [404, "not_found"],
  PermissionConflict: [409, "conflict"],
  StoreError: [503, "store_unavailable"],
  Unauthorized: [401, "unauthorized"],
  Forbidden: [403, "forbidden"],
  Overloaded: [503, "overloaded"]
} as const satisfies Record<AppError["_tag"], readonly [number, string]>

/**
 * Answered by the node:http server itself (Http/NodeServer.ts) while the app cannot take a
 * request: before its routes are built, and once shutting down has begun. With `retry-after: 1`.
 */
export const notServing = {
  starting: [503, "starting"],
  shuttingDown: [503, "shutting_down"]
} as const

export const toResponse = (error: AppError): HttpServerResponse.HttpServerResponse => {
  const [status, code] = statusOf[error._tag]
  const headers: Record<string, string> = {}
  if (status === 503) headers["retry-after"] = "1"
  if (status === 401) headers["www-authenticate"] = "Bearer"
  return jsonError(status, code, error.message, headers)
}

/** Every route's failures become JSON (applied once, to the router); a defect is a 500 JSON body, logged, never a crash. */
export const catchFailures = <R>(
  effect: Effect.Effect<HttpServerResponse.HttpServerResponse, AppError, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, never, R> =>
  effect.pipe(
    Effect.catchAll((e) => Effect.succeed(toResponse(e))),
    Effect.catchAllDefect((defect) =>
      Effect.logError("request failed", Cause.die(defect)).pipe(
        Effect.as(jsonError(500, "internal", "internal server error"))
      )
    )
  )
