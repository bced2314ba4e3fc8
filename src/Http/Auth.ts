/**
 * Bearer-token auth, off unless a token is configured. The client token
 * opens every route; a session's sandbox token (issued once, stored hashed)
 * opens only that session's sandbox routes.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { Forbidden, Unauthorized } from "../Domain/Errors.js"
import type { Session } from "../Domain/Session.js"
import { Runners } from "../Runners.js"
import { Sessions } from "../Sessions.js"

export const hashToken = (token: string): string => createHash("sha256").update(token).digest("hex")

export const newSandboxToken = (): string => `rst_${randomBytes(24).toString("base64url")}`

/** Constant-time: both sides are hashed to the same length first. */
const sameHash = (a: string, b: string) => timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"))

export interface Guard {
  readonly enabled: boolean
  /**
   * The sandbox token of a session a runner starts: derived from the server token and the
   * session (id and creation time), so a restart can send it again though only its hash is kept,
   * and a session created again under the same id gets another. Null without auth.
   */
  readonly sandboxTokenFor: (session: Pick<Session, "id" | "createdAt">) => string | null
  /** Routes of runner `id`: its runner token (or the client token). */
  readonly runner: (id: string, options?: { readonly query?: boolean }) => Effect.Effect<void, Unauthorized | Forbidden, HttpServerRequest.HttpServerRequest | Runners>
  /** Routes for clients only. */
  readonly client: (options?: { readonly query?: boolean }) => Effect.Effect<void, Unauthorized | Forbidden, HttpServerRequest.HttpServerRequest>
  /** Sandbox routes of one session: the client token or that session's sandbox token. */
  readonly sandbox: (
    id: string,
    options?: { readonly query?: boolean }
  ) => Effect.Effect<void, Unauthorized | Forbidden, HttpServerRequest.HttpServerRequest | Sessions>
}

const presented = (query: boolean) =>
  Effect.gen(function*() {
    const req = yield* HttpServerRequest.HttpServerRequest
    const header = req.headers.authorization
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
      return match ? match[1]! : ""
    }
    if (query) {
      // Browsers' EventSource cannot send headers: GET streams also take ?access_token=.
      const search = req.url.indexOf("?")
      if (search >= 0) {
        const token = new URLSearchParams(req.url.slice(search + 1)).get("access_token")
        if (token !== null) return token
      }
    }
    return undefined
  })

export const make = (token: string | undefined): Guard => {
  if (token === undefined || token === "") {
    return { enabled: false, client: () => Effect.void, sandbox: () => Effect.void, runner: () => Effect.void, sandboxTokenFor: () => null }
  }
  const clientHash = hashToken(token)
  const sandboxTokenFor = (s: Pick<Session, "id" | "createdAt">) =>
    `rst_${createHmac("sha256", token).update(`sandbox:${s.id}:${s.createdAt}`).digest("base64url")}`
  const check = <R = never>(query: boolean, sessionHashes?: ReadonlyArray<Effect.Effect<string | null, never, R>>) =>
    Effect.gen(function*() {
      const given = yield* presented(query)
      if (given === undefined) return yield* new Unauthorized()
      const hash = hashToken(given)
      if (sameHash(hash, clientHash)) return
      // In order, and only as far as needed: the stored hash is the common case.
      for (const sessionHash of sessionHashes ?? []) {
        const expected = yield* sessionHash
        if (expected !== null && sameHash(hash, expected)) return
      }
      return yield* new Forbidden()
    })
  return {
    enabled: true,
    sandboxTokenFor,
    runner: (id, options) =>
      Effect.gen(function*() {
        const given = yield* presented(options?.query ?? false)
        if (given === undefined) return yield* new Unauthorized()
        if (sameHash(hashToken(given), clientHash)) return
        // A runner token names its runner (`rrt_<id>.<secret>`): another runner's is refused before any lookup.
        if (!given.startsWith(`rrt_${id}.`)) return yield* new Forbidden()
        const runners = yield* Runners
        if (yield* runners.authenticate(id, given)) return
        return yield* new Forbidden()
      }),
    client: (options) => check(options?.query ?? false),
    sandbox: (id, options) =>
      check(options?.query ?? false, [
        Effect.flatMap(Sessions, (s) => s.sandboxTokenHash(id)).pipe(Effect.orElseSucceed(() => null)),
        // A session the hub starts: the token derived from the server token now, so a restart after
        // the token changed (or auth was turned on) still reaches it.
        Effect.flatMap(Sessions, (s) => s.get(id)).pipe(
          Effect.map((session) => session.agent === null ? null : hashToken(sandboxTokenFor(session))),
          Effect.orElseSucceed(() => null)
        )
      ])
  }
}
