/**
 * The platform's `HttpServer` over NodeServer's node:http server: it listens,
 * and serves the router with as little as a request needs, in place of
 * `NodeHttpServer.layerServer`, whose per-request path (`HttpApp.toHandled`:
 * fiber-runtime wrappers, the tracer check, error handling, pre-response
 * handlers; a fiber kept alive for the socket's write callback) cost tens of
 * microseconds on every request, and kept a fiber, a scope and a `pipeline()`
 * alive for every open stream (most of an idle stream's memory).
 *
 * Per request: one fiber, started from the runtime captured once by `serve`,
 * with the request and a scope in its context; no span, no logger. The answer
 * is written directly; a body that writes itself (the SSE streams,
 * `Sse.Channel`) is handed the response, a piped one is left to
 * `stream.pipeline`, and the request's scope (the stream's subscriptions) is
 * closed when the response closes, so an open stream holds no fiber. A client that
 * leaves before its answer ends interrupts the fiber, as the platform does.
 *
 * Anything reaching here failed past `Errors.catchFailures`, which turns every
 * failure and defect into JSON: a defect here is still a 500 JSON body, logged.
 */
import * as NodeMultipart from "@effect/platform-node/NodeMultipart"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Cookies from "@effect/platform/Cookies"
import type * as Headers from "@effect/platform/Headers"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as IncomingMessage from "@effect/platform/HttpIncomingMessage"
import type * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Inspectable from "effect/Inspectable"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { IncomingMessage as NodeRequest, Server, ServerResponse } from "node:http"
import type { ListenOptions } from "node:net"
import { pipeline, Readable } from "node:stream"
import { errorBody } from "./Errors.js"

/**
 * The request as the platform's `HttpServerRequest`, adapted from
 * @effect/platform-node's `ServerRequestImpl` (internal/httpServer.js) without
 * the upgrade support nothing here uses. `source` and `response` keep their
 * names there, so `NodeHttpServerRequest.toIncomingMessage` / `toServerResponse`
 * read it too.
 */
class ServerRequest implements HttpServerRequest.HttpServerRequest {
  readonly [HttpServerRequest.TypeId]: HttpServerRequest.TypeId = HttpServerRequest.TypeId
  readonly [IncomingMessage.TypeId]: IncomingMessage.TypeId = IncomingMessage.TypeId
  private cachedCookies: Record<string, string> | undefined
  private textEffect: Effect.Effect<string, HttpServerError.RequestError> | undefined
  private multipartEffect: HttpServerRequest.HttpServerRequest["multipart"] | undefined

  constructor(
    readonly source: NodeRequest,
    readonly response: ServerResponse,
    readonly url: string = source.url!,
    private headersOverride?: Headers.Headers,
    private readonly remoteAddressOverride?: string
  ) {}

  // A closure made when a body is read, not for every request.
  private get onError() {
    return (cause: unknown) => new HttpServerError.RequestError({ request: this, reason: "Decode", cause })
  }

  get originalUrl(): string {
    return this.source.url!
  }
  get method(): HttpServerRequest.HttpServerRequest["method"] {
    return this.source.method!.toUpperCase() as HttpServerRequest.HttpServerRequest["method"]
  }
  get headers(): Headers.Headers {
    return this.headersOverride ??= this.source.headers as Headers.Headers
  }
  get remoteAddress(): Option.Option<string> {
    return Option.fromNullable(this.remoteAddressOverride ?? this.source.socket.remoteAddress)
  }
  get cookies(): Record<string, string> {
    return this.cachedCookies ??= Cookies.parseHeader(this.headers.cookie ?? "")
  }
  modify(options: { readonly url?: string; readonly headers?: Headers.Headers; readonly remoteAddress?: string }) {
    return new ServerRequest(
      this.source,
      this.response,
      options.url ?? this.url,
      options.headers ?? this.headersOverride,
      options.remoteAddress ?? this.remoteAddressOverride
    )
  }

  get text(): Effect.Effect<string, HttpServerError.RequestError> {
    return this.textEffect ??= Effect.runSync(Effect.cached(Effect.flatMap(IncomingMessage.MaxBodySize, (max) =>
      NodeStream.toString(() => this.source, { onFailure: this.onError, maxBytes: Option.getOrUndefined(max) }))))
  }
  get json(): Effect.Effect<unknown, HttpServerError.RequestError> {
    return Effect.tryMap(this.text, { try: (s) => s === "" ? null : JSON.parse(s) as unknown, catch: this.onError })
  }
  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpServerError.RequestError> {
    return Effect.flatMap(this.text, (s) =>
      Effect.try({ try: () => UrlParams.fromInput(new URLSearchParams(s)), catch: this.onError }))
  }
  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpServerError.RequestError> {
    return Effect.flatMap(IncomingMessage.MaxBodySize, (max) =>
      NodeStream.toUint8Array(() => this.source, { onFailure: this.onError, maxBytes: Option.getOrUndefined(max) })).pipe(
        Effect.map((bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer)
      )
  }
  get stream(): Stream.Stream<Uint8Array, HttpServerError.RequestError> {
    return NodeStream.fromReadable(() => this.source, this.onError)
  }
  get multipart(): HttpServerRequest.HttpServerRequest["multipart"] {
    return this.multipartEffect ??= Effect.runSync(Effect.cached(NodeMultipart.persisted(this.source, this.source.headers)))
  }
  get multipartStream(): HttpServerRequest.HttpServerRequest["multipartStream"] {
    return NodeMultipart.stream(this.source, this.source.headers)
  }
  get upgrade(): HttpServerRequest.HttpServerRequest["upgrade"] {
    return Effect.fail(new HttpServerError.RequestError({ request: this, reason: "Decode", description: "not an upgradeable ServerRequest" }))
  }

  toString(): string {
    return `ServerRequest(${this.method} ${this.url})`
  }
  toJSON(): unknown {
    return { _id: "@effect/platform/HttpServerRequest", method: this.method, url: this.originalUrl }
  }
  [Inspectable.NodeInspectSymbol](): unknown {
    return this.toJSON()
  }
}

/** The node:http request under a request this server made. */
export const nodeRequest = (request: HttpServerRequest.HttpServerRequest): NodeRequest => request.source as NodeRequest

/** The node:http response of a request this server made. */
export const nodeResponse = (request: HttpServerRequest.HttpServerRequest): ServerResponse => (request as ServerRequest).response

const headersOf = (response: HttpServerResponse.HttpServerResponse): Record<string, string | Array<string>> => {
  if (Cookies.isEmpty(response.cookies)) return response.headers
  const headers: Record<string, string | Array<string>> = { ...response.headers }
  const toSet = Cookies.toSetCookieHeaders(response.cookies)
  if (headers["set-cookie"] !== undefined) toSet.push(headers["set-cookie"] as string)
  headers["set-cookie"] = toSet
  return headers
}

const internalError = JSON.stringify(errorBody("internal", "internal server error"))

/** The last resort: what `catchFailures` answers for a defect. */
const writeInternalError = (res: ServerResponse) => {
  if (res.headersSent) return void res.destroy()
  res.writeHead(500, { "content-type": "application/json", "content-length": Buffer.byteLength(internalError) })
  res.end(internalError)
}

/**
 * A body that writes to the node:http response itself, given it once its head is written
 * (`Sse.Channel`): it ends the response, and the request's scope closes when the response does.
 */
export const writeTo: unique symbol = Symbol.for("@rein-ai/server/Http/Serve/writeTo")

export interface Direct {
  readonly [writeTo]: (res: ServerResponse) => void
}

const isDirect = (body: unknown): body is Direct => typeof body === "object" && body !== null && writeTo in body

const isPipeable = (body: unknown): body is NodeJS.ReadableStream =>
  typeof body === "object" && body !== null && "pipe" in body && typeof body.pipe === "function"

/** Closes the request's scope outside its fiber (which has ended), once its body is done. */
const closeLater = (runtime: Runtime.Runtime<never>, scope: Scope.CloseableScope) => (error: unknown) => {
  const exit = error ? Exit.interrupt(HttpServerError.clientAbortFiberId) : Exit.void
  Runtime.runFork(runtime, Scope.close(scope, exit))
}

/**
 * Writes the answer. Bodies at hand are written at once and the scope is
 * closed in the fiber; a piped body closes it later (the fiber ends now).
 */
const respond = (
  runtime: Runtime.Runtime<never>,
  req: ServerRequest,
  scope: Scope.CloseableScope,
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<void> => {
  const res = req.response
  if (res.writableEnded || res.destroyed) return Scope.close(scope, Exit.void)
  try {
    const headers = headersOf(response)
    if (req.method === "HEAD") {
      res.writeHead(response.status, headers)
      res.end()
      return Scope.close(scope, Exit.void)
    }
    const body = response.body
    switch (body._tag) {
      case "Empty":
        res.writeHead(response.status, headers)
        res.end()
        return Scope.close(scope, Exit.void)
      case "Uint8Array":
        res.writeHead(response.status, headers)
        res.end(body.body)
        return Scope.close(scope, Exit.void)
      case "Raw":
        res.writeHead(response.status, headers)
        if (isDirect(body.body)) {
          const close = closeLater(runtime, scope)
          res.on("close", () => close(!res.writableFinished))
          body.body[writeTo](res)
          return Effect.void
        }
        if (isPipeable(body.body)) {
          // Destroys the body when the client leaves, as the platform's pipeline does.
          pipeline(body.body, res, closeLater(runtime, scope))
          return Effect.void
        }
        res.end(body.body)
        return Scope.close(scope, Exit.void)
      case "FormData": {
        const r = new Response(body.formData)
        res.writeHead(response.status, { ...headers, ...Object.fromEntries(r.headers) })
        pipeline(Readable.fromWeb(r.body as any), res, closeLater(runtime, scope))
        return Effect.void
      }
      case "Stream":
        res.writeHead(response.status, headers)
        return writeStream(res, body.stream).pipe(Effect.ensuring(Scope.close(scope, Exit.void)))
    }
  } catch (defect) {
    return Effect.zipRight(failed(res, Cause.die(defect)), Scope.close(scope, Exit.void))
  }
}

/** An Effect stream body, as the platform writes it: waiting for `drain` when the socket is full. */
const writeStream = (res: ServerResponse, stream: Stream.Stream<Uint8Array, unknown>): Effect.Effect<void> => {
  const drained = Effect.unsafeMakeLatch()
  res.on("drain", () => drained.unsafeOpen())
  return stream.pipe(
    Stream.orDie,
    Stream.runForEachChunk((chunk) => {
      let full = false
      for (const bytes of Chunk.toReadonlyArray(chunk)) full = !res.write(bytes)
      if (!full) return Effect.void
      drained.unsafeClose()
      return drained.await
    }),
    Effect.interruptible,
    Effect.matchCauseEffect({
      onSuccess: () => Effect.sync(() => void res.end()),
      onFailure: (cause) => Cause.isInterruptedOnly(cause) ? Effect.sync(() => void res.destroy()) : failed(res, cause)
    })
  )
}

/** A failure no route caught: only a defect, or an interruption (the client left). */
const failed = (res: ServerResponse, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) {
    return Effect.sync(() => {
      if (res.writableEnded || res.destroyed) return
      // Interrupted by anything but the client leaving: the platform's 503.
      if (!res.headersSent) res.writeHead(503)
      res.end()
    })
  }
  return Effect.zipRight(Effect.logError("request failed", cause), Effect.sync(() => writeInternalError(res)))
}

const makeHandler = (runtime: Runtime.Runtime<never>, app: HttpApp.Default<unknown>) => {
  const base = runtime.context.unsafeMap
  const { fiberRefs, runtimeFlags } = runtime
  return (source: NodeRequest, res: ServerResponse) => {
    const req = new ServerRequest(source, res)
    // The fiber's context: the runtime's, with the request, and (below) the request's scope.
    const services = new Map(base)
    services.set(HttpServerRequest.HttpServerRequest.key, req)
    const context = Context.unsafeMake<HttpServerRequest.HttpServerRequest>(services)
    const fiber = Runtime.runFork(
      Runtime.make({ context, fiberRefs, runtimeFlags }),
      Effect.flatMap(Scope.make(), (scope) => {
        // This fiber's own map, not yet read by anyone: the router copies it before routing.
        services.set(Scope.Scope.key, scope)
        return Effect.matchCauseEffect(app, {
          onFailure: (cause) => Effect.zipRight(failed(res, cause), Scope.close(scope, Exit.failCause(cause))),
          onSuccess: (response) => respond(runtime, req, scope, response)
        })
      }).pipe(Effect.uninterruptible)
    )
    // A fiber still running stops when its client leaves; one that ended within runFork needs no listener.
    if (fiber.unsafePoll() === null) {
      const onClose = () => {
        if (!res.writableEnded) fiber.unsafeInterruptAsFork(HttpServerError.clientAbortFiberId)
      }
      res.once("close", onClose)
      // An open stream outlives its fiber: the listener must not keep the ended fiber.
      fiber.addObserver(() => res.off("close", onClose))
    }
  }
}

/** Listens on `server` (closing it when released) and serves on it. */
export const make = (server: Server, options: ListenOptions): Effect.Effect<HttpServer.HttpServer, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        if (!server.listening) return resume(Effect.void)
        server.close((error) => resume(error ? Effect.die(error) : Effect.void))
      })
    )
    yield* Effect.async<void, HttpServerError.ServeError>((resume) => {
      const onError = (cause: Error) => resume(Effect.fail(new HttpServerError.ServeError({ cause })))
      server.on("error", onError)
      server.listen(options, () => {
        server.off("error", onError)
        resume(Effect.void)
      })
    })
    const address = server.address()!
    return HttpServer.make({
      address: typeof address === "string"
        ? { _tag: "UnixAddress", path: address }
        : { _tag: "TcpAddress", hostname: address.address === "::" ? "0.0.0.0" : address.address, port: address.port },
      serve: (app: HttpApp.Default<unknown>, middleware?: HttpMiddleware.HttpMiddleware) =>
        Effect.gen(function*() {
          // The runtime of the serving layer: its services, and fiber refs such as the router's config.
          const runtime = yield* Effect.runtime<never>()
          const handler = makeHandler(runtime, middleware === undefined ? app : middleware(app))
          server.on("request", handler)
          yield* Effect.addFinalizer(() => Effect.sync(() => void server.off("request", handler)))
        })
    })
  })

export const layer = (server: Server, options: ListenOptions): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError> =>
  Layer.scoped(HttpServer.HttpServer, make(server, options))
