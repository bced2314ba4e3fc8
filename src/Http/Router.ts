/**
 * The routes of docs/protocol.md. Each decodes its input and calls Sessions;
 * any route's failure becomes JSON in one place, `Errors.catchFailures`, at the router's end.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Iterable from "effect/Iterable"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { decodeCommand } from "../Domain/Command.js"
import { Conflict, InvalidInput, Overloaded, SessionNotFound } from "../Domain/Errors.js"
import { CreateRunnerBody, type Job, RunnerOffer } from "../Domain/Runner.js"
import { decodeEvents, formatParseError } from "../Domain/Event.js"
import { CreateSessionBody, type Session, SessionId } from "../Domain/Session.js"
import { Runners } from "../Runners.js"
import { type Feed, type SessionFilter, Sessions } from "../Sessions.js"
import * as Auth from "./Auth.js"
import * as Body from "./Body.js"
import { catchFailures, jsonError } from "./Errors.js"
import * as Serve from "./Serve.js"
import * as Sse from "./Sse.js"
import * as Static from "./Static.js"

export interface RouterOptions {
  /** Largest accepted request body in bytes. */
  readonly maxBodyBytes: number
  readonly keepAliveInterval: number
  /** Bearer token required on every route; unset means no auth (local use). */
  readonly token?: string | undefined
  /** Most SSE streams open at once; further ones get 503. Unset means no cap. */
  readonly maxConnections?: number | undefined
  /** Live events a stream may have unread before it is cut off. */
  readonly subscriberBuffer: number
  /** Bytes a stream may have unread before it is cut off. */
  readonly subscriberBufferBytes: number
}

const decodeId = Schema.decodeUnknownEither(SessionId)
const decodeCreate = Schema.decodeUnknownEither(CreateSessionBody)

const rawId = Effect.map(HttpRouter.params, (params) => params.id ?? "")

const sessionId = Effect.flatMap(HttpRouter.params, (params) =>
  Either.match(decodeId(params.id ?? ""), {
    onLeft: (e) => Effect.fail(new InvalidInput({ message: formatParseError(e, "id") })),
    onRight: Effect.succeed
  }))

const first = (v: string | ReadonlyArray<string> | undefined) => typeof v === "string" ? v : v?.[0]

/** `?project=x` and `?attention=1`: which sessions a list or list stream shows. */
const sessionFilter = Effect.flatMap(HttpServerRequest.ParsedSearchParams, (q): Effect.Effect<SessionFilter, InvalidInput> => {
  const attention = first(q.attention)
  if (attention !== undefined && attention !== "0" && attention !== "1") {
    return Effect.fail(new InvalidInput({ message: `attention: must be 1 or 0, got "${attention.slice(0, 64)}"` }))
  }
  return Effect.succeed({ project: first(q.project), attention: attention === "1" })
})

/** Most artifacts one page or tail holds, and a page's size when `limit` is not given. */
export const pageLimitMax = 1000
export const pageLimitDefault = 200

const badParam = (name: string, expected: string, got: string) =>
  new InvalidInput({ message: `${name}: must be ${expected}, got "${got.slice(0, 64)}"` })

/** Query parameter `name` as an integer from `min` to `max`; undefined when absent. */
const intParam = (q: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>, name: string, min: number, max: number) => {
  const raw = first(q[name])
  if (raw === undefined) return Effect.succeed(undefined)
  const n = /^[0-9]{1,16}$/.test(raw) ? Number(raw) : NaN
  if (!(n >= min && n <= max)) {
    return Effect.fail(badParam(name, max === Number.MAX_SAFE_INTEGER ? "a positive integer" : `an integer from ${min} to ${max}`, raw))
  }
  return Effect.succeed(n)
}

/** `?before=`, `?after=`, `?limit=`: a page of the artifacts, or undefined for all of them. */
const pageQuery = Effect.flatMap(HttpServerRequest.ParsedSearchParams, (q) =>
  Effect.gen(function*() {
    const before = yield* intParam(q, "before", 1, Number.MAX_SAFE_INTEGER)
    const after = yield* intParam(q, "after", 1, Number.MAX_SAFE_INTEGER)
    const limit = yield* intParam(q, "limit", 1, pageLimitMax)
    if (before !== undefined && after !== undefined) {
      return yield* new InvalidInput({ message: "before, after: give one of them, not both" })
    }
    if (before === undefined && after === undefined && limit === undefined) return undefined
    return { before, after, limit: limit ?? pageLimitDefault }
  }))

/** `?tail=n` on the artifact stream. */
const tailParam = Effect.flatMap(HttpServerRequest.ParsedSearchParams, (q) => intParam(q, "tail", 1, pageLimitMax))

/** `Last-Event-ID` as a seq; anything else means a full replay. */
const lastEventId = Effect.map(HttpServerRequest.HttpServerRequest, (req) => {
  const raw = req.headers["last-event-id"]
  if (raw === undefined || !/^[1-9][0-9]{0,15}$/.test(raw.trim())) return undefined
  return Number(raw.trim())
})

const idempotencyKey = Effect.flatMap(HttpServerRequest.HttpServerRequest, (req) => {
  const key = req.headers["idempotency-key"]
  if (key === undefined) return Effect.succeed(undefined)
  if (key.length === 0 || key.length > 256) {
    return Effect.fail(new InvalidInput({ message: "Idempotency-Key header must be 1 to 256 characters" }))
  }
  return Effect.succeed(key)
})

const accepted = HttpServerResponse.empty({ status: 202 })

const decodeCreateRunner = Schema.decodeUnknownEither(CreateRunnerBody)
const decodeOffer = Schema.decodeUnknownEither(RunnerOffer)

/** The runner that starts `session`'s agent; a session whose sandbox connects by itself has none. */
const runnerOf = (session: Session) =>
  session.runner === null || session.agent === null
    ? Effect.fail(new Conflict({ message: `session ${session.id} has no agent a runner starts: its sandbox connects by itself` }))
    : Effect.succeed(session.runner)

const startJob = (session: Session, sandboxToken: string | null, prompt: string | null, restart: boolean): Job => ({
  type: "start",
  sessionId: session.id,
  agent: session.agent!,
  repo: session.workspace!.repo,
  baseRef: session.workspace!.baseRef,
  prompt,
  sandboxToken,
  restart
})

export const make = (options: RouterOptions) =>
  Effect.gen(function*() {
    const body = Body.json(options.maxBodyBytes)
    const guard = Auth.make(options.token)
    const channels = yield* Sse.makeRegistry(options.keepAliveInterval)
    const limits: Sse.Limits = { maxEvents: options.subscriberBuffer, maxBytes: options.subscriberBufferBytes }

    /** An SSE channel for this request, within `maxConnections`; freed when the request ends. */
    const channel = Effect.gen(function*() {
      if (options.maxConnections !== undefined && channels.size() >= options.maxConnections) {
        return yield* new Overloaded({ what: `${options.maxConnections} streams open` })
      }
      const request = yield* HttpServerRequest.HttpServerRequest
      // A stream request's body is never read; draining it lets the socket report the client leaving.
      Serve.nodeRequest(request).resume()
      const res = Serve.nodeResponse(request)
      return yield* channels.open(limits, () => res.destroy())
    })

    /** Snapshots, `snapshot_complete`, then live notices: the shape of every hub stream. */
    const feed = <S, N>(opened: Feed<S, N>, snapshot: (s: S) => Buffer, notice: (n: N) => Buffer, c: Sse.Channel) =>
      Effect.suspend(() => {
        c.writeAll(Iterable.map(opened.snapshot, snapshot))
        c.write(Sse.complete)
        return Effect.as(opened.attach(c.sink(notice)), c.response())
      })

    /** Starting agents from the hub (issue 20): runners, their job streams, a session's stop and start. */
    const hub = HttpRouter.empty.pipe(
      HttpRouter.post(
        "/sessions/:id/stop",
        Effect.gen(function*() {
          yield* guard.client()
          const session = yield* (yield* Sessions).get(yield* sessionId)
          yield* (yield* Runners).dispatch(yield* runnerOf(session), { type: "stop", sessionId: session.id })
          return accepted
        })
      ),
      HttpRouter.post(
        "/sessions/:id/start",
        Effect.gen(function*() {
          yield* guard.client()
          const session = yield* (yield* Sessions).get(yield* sessionId)
          const runner = yield* runnerOf(session)
          if (session.status === "live" || session.status === "idle") {
            return yield* new Conflict({ message: `session ${session.id}'s agent is running: stop it first` })
          }
          yield* (yield* Runners).dispatch(runner, startJob(session, guard.sandboxTokenFor(session), null, true))
          return accepted
        })
      ),
      HttpRouter.post(
        "/runners",
        Effect.gen(function*() {
          yield* guard.client()
          const { name } = yield* Either.mapLeft(
            decodeCreateRunner((yield* body) ?? {}, { onExcessProperty: "ignore" }),
            (e) => new InvalidInput({ message: formatParseError(e) })
          )
          return HttpServerResponse.unsafeJson(yield* (yield* Runners).register(name), { status: 201 })
        })
      ),
      HttpRouter.get(
        "/runners",
        Effect.gen(function*() {
          yield* guard.client()
          return HttpServerResponse.unsafeJson(yield* (yield* Runners).list)
        })
      ),
      HttpRouter.del(
        "/runners/:id",
        Effect.gen(function*() {
          yield* guard.client()
          yield* (yield* Runners).revoke(yield* rawId)
          return HttpServerResponse.empty({ status: 204 })
        })
      ),
      HttpRouter.put(
        "/runners/:id/offer",
        Effect.gen(function*() {
          const id = yield* rawId
          yield* guard.runner(id)
          const offer = yield* Either.mapLeft(
            decodeOffer((yield* body) ?? null, { onExcessProperty: "ignore" }),
            (e) => new InvalidInput({ message: formatParseError(e) })
          )
          yield* (yield* Runners).setOffer(id, offer)
          return HttpServerResponse.empty({ status: 204 })
        })
      ),
      // A runner reconciling after a restart: is this session still one of its own?
      HttpRouter.get(
        "/runners/:id/sessions/:session",
        Effect.gen(function*() {
          const id = yield* rawId
          yield* guard.runner(id)
          const params = yield* HttpRouter.params
          const session = yield* (yield* Sessions).get(params.session ?? "")
          if (session.runner !== id) return yield* new SessionNotFound({ id: session.id })
          return HttpServerResponse.unsafeJson({ id: session.id })
        })
      ),
      HttpRouter.get(
        "/runners/:id/jobs",
        Effect.gen(function*() {
          const id = yield* rawId
          yield* guard.runner(id)
          const feed = yield* (yield* Runners).connect(id)
          const c = yield* channel
          c.write(Sse.complete)
          yield* Stream.fromQueue(feed.jobs).pipe(
            Stream.runForEach((job) => Effect.sync(() => void c.offer(Sse.job(job)))),
            Effect.ensuring(Effect.sync(() => {
              if (feed.revoked()) c.write(Sse.runnerRevoked(id))
              else if (feed.superseded()) c.write(Sse.superseded(id))
              c.end("ended")
            })),
            Effect.forkScoped
          )
          // A runner that vanishes (crashed, cut off) took its agents along: their sessions need
          // someone. Nothing is started elsewhere behind the user's back.
          const sessions = yield* Sessions
          // A moment's grace first: a runner whose connection blinked is back by then.
          // Only sessions this runner runs: its offer's word is not taken for anyone else's.
          yield* Effect.addFinalizer(() =>
            Effect.sleep("2 seconds").pipe(
              Effect.zipRight(feed.orphaned),
              Effect.flatMap((orphans) =>
                Effect.forEach(orphans, (sessionId) =>
                  Effect.flatMap(sessions.get(sessionId), (session) =>
                    session.runner !== id ? Effect.void : sessions.ingest(sessionId, [{
                      type: "error",
                      fatal: true,
                      message: `the runner running this session's agent went away (runner ${id}); start the session again once it is back`
                    }])).pipe(Effect.ignore), { discard: true })
              ),
              Effect.ignore,
              Effect.forkDaemon,
              Effect.asVoid
            )
          )
          return c.response()
        })
      )
    )

    return HttpRouter.empty.pipe(
      HttpRouter.get(
        "/healthz",
        Effect.gen(function*() {
          const sessions = yield* Sessions
          yield* sessions.health
          return HttpServerResponse.unsafeJson({ ok: true })
        })
      ),
      HttpRouter.get(
        "/sessions",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          return HttpServerResponse.unsafeJson(yield* sessions.list(yield* sessionFilter))
        })
      ),
      HttpRouter.get(
        "/sessions/stream",
        Effect.gen(function*() {
          yield* guard.client({ query: true })
          const sessions = yield* Sessions
          const c = yield* channel
          return yield* feed(yield* sessions.openSessions(yield* sessionFilter), Sse.sessionSnapshot, Sse.sessionNotice, c)
        })
      ),
      HttpRouter.get(
        "/sessions/:id",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          return HttpServerResponse.unsafeJson(yield* sessions.get(yield* sessionId))
        })
      ),
      HttpRouter.post(
        "/sessions/:id",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          const id = yield* sessionId
          const input = (yield* body) ?? {}
          const create = yield* Either.mapLeft(
            decodeCreate(input, { onExcessProperty: "ignore" }),
            (e) => new InvalidInput({ message: formatParseError(e) })
          )
          const project = create.project ?? null
          if (create.agent === undefined) {
            const stray = (["repo", "baseRef", "prompt", "runner"] as const).find((k) => create[k] !== undefined)
            if (stray !== undefined) return yield* new InvalidInput({ message: `${stray}: needs agent` })
            if (!guard.enabled) return HttpServerResponse.unsafeJson(yield* sessions.create(id, project), { status: 201 })
            // With auth on, the sandbox token is shown once, here, and only its hash is kept.
            const sandboxToken = Auth.newSandboxToken()
            const session = yield* sessions.create(id, project, { sandboxTokenHash: Auth.hashToken(sandboxToken) })
            return HttpServerResponse.unsafeJson({ ...session, sandboxToken }, { status: 201 })
          }
          // A runner starts the agent: chosen first, so that nothing is created when none can.
          const runners = yield* Runners
          const { repo, runner } = yield* runners.pick({ agent: create.agent, repo: create.repo, runner: create.runner })
          const session = yield* sessions.create(id, project, {
            sandboxTokenHash: guard.enabled ? (s) => Auth.hashToken(guard.sandboxTokenFor(s)!) : null,
            launch: { agent: create.agent, runner: runner.id, repo, baseRef: create.baseRef ?? null }
          })
          yield* runners.dispatch(runner.id, startJob(session, guard.sandboxTokenFor(session), create.prompt ?? null, false)).pipe(
            // Gone in the instant between pick and dispatch: nothing may stay half-made.
            Effect.tapError(() => Effect.ignore(sessions.remove(id)))
          )
          const sandboxToken = guard.sandboxTokenFor(session)
          return HttpServerResponse.unsafeJson(sandboxToken === null ? session : { ...session, sandboxToken }, { status: 201 })
        })
      ),
      HttpRouter.del(
        "/sessions/:id",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          const id = yield* sessionId
          const session = yield* sessions.get(id)
          yield* sessions.remove(id)
          // Its runner stops the agent and removes the worktree; an offline one does at its next start.
          if (session.runner !== null) yield* Effect.ignore((yield* Runners).dispatch(session.runner, { type: "remove", sessionId: id }))
          return HttpServerResponse.empty({ status: 204 })
        })
      ),
      HttpRouter.post(
        "/sessions/:id/commands",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          const id = yield* sessionId
          const command = yield* decodeCommand(yield* body)
          yield* sessions.command(id, command)
          return accepted
        })
      ),
      HttpRouter.get(
        "/sessions/:id/commands",
        Effect.gen(function*() {
          // Credentials first: without them, not even the id's validity is revealed.
          yield* guard.sandbox(yield* rawId, { query: true })
          const id = yield* sessionId
          const sessions = yield* Sessions
          const c = yield* channel
          const feed = yield* sessions.connectSandbox(id)
          // No history here: `snapshot_complete` tells the sandbox it is connected.
          c.write(Sse.complete)
          yield* Stream.fromQueue(feed.commands).pipe(
            // Commands count against the stream's limits too: a sandbox that stops reading is cut off.
            Stream.runForEach((command) =>
              Effect.sync(() => {
                if (!c.offer(Sse.command(command))) c.end("overflow")
              })
            ),
            Effect.ensuring(Effect.sync(() => {
              // The session is gone (not replaced by a newer sandbox, not a shutdown): the sandbox
              // learns it here rather than from a reconnect refused.
              if (feed.removed()) c.write(Sse.sessionRemoved(id))
              // A newer sandbox holds it now: this one must not reconnect and take it back.
              else if (feed.superseded()) c.write(Sse.superseded(id))
              c.end("ended")
            })),
            Effect.forkScoped
          )
          return c.response()
        })
      ),
      HttpRouter.post(
        "/sessions/:id/events",
        Effect.gen(function*() {
          yield* guard.sandbox(yield* rawId)
          const id = yield* sessionId
          const sessions = yield* Sessions
          const key = yield* idempotencyKey
          const input = yield* body
          if (input === undefined) return yield* new InvalidInput({ message: "body: an event or an array of events is required" })
          yield* sessions.ingest(id, yield* decodeEvents(input), key)
          return accepted
        })
      ),
      HttpRouter.get(
        "/sessions/:id/artifacts",
        Effect.gen(function*() {
          yield* guard.client()
          const sessions = yield* Sessions
          const id = yield* sessionId
          const page = yield* pageQuery
          if (page === undefined) return HttpServerResponse.unsafeJson(yield* sessions.artifacts(id))
          const { artifacts, more } = yield* sessions.artifactsPage(id, page)
          // Whether more lie beyond the page: older (before, or the newest page), newer (after).
          return HttpServerResponse.unsafeJson(artifacts, { headers: { "x-rein-more": more ? "1" : "0" } })
        })
      ),
      HttpRouter.get(
        "/sessions/:id/stream",
        Effect.gen(function*() {
          yield* guard.client({ query: true })
          const sessions = yield* Sessions
          const id = yield* sessionId
          const tail = yield* tailParam
          const c = yield* channel
          return yield* feed(yield* sessions.openArtifacts(id, yield* lastEventId, tail), Sse.artifactSnapshot, Sse.artifactNotice, c)
        })
      ),
      HttpRouter.concat(hub),
      // The dashboard (static files, no auth: they hold no data).
      HttpRouter.concat(Static.router),
      Effect.catchTag("RouteNotFound", (e) =>
        Effect.succeed(jsonError(404, "not_found", `no route ${e.request.method} ${e.request.url.split("?")[0]}`))),
      catchFailures
    )
  })
