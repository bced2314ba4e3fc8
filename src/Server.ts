/**
 * The server as Layers: the app (store, bus, reducer, sessions) and the HTTP
 * server on top. `createServer` and the CLI only build and run these.
 */
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createHash } from "node:crypto"
import { resolve as resolvePath } from "node:path"
import type { StoreError } from "./Domain/Errors.js"
import * as EventBus from "./EventBus.js"
import * as NodeServer from "./Http/NodeServer.js"
import * as Router from "./Http/Router.js"
import * as Serve from "./Http/Serve.js"
import * as Reducer from "./Reducer.js"
import type { SessionStore } from "./SessionStore.js"
import * as Pg from "./SessionStore/Pg.js"
import * as Sqlite from "./SessionStore/Sqlite.js"
import * as IdleGc from "./IdleGc.js"
import * as Embedded from "./runner/Embedded.js"
import * as Runners from "./Runners.js"
import * as Sessions from "./Sessions.js"

export interface ServerOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  readonly port?: number
  /** Default `127.0.0.1`. */
  readonly host?: string
  /** Milliseconds a session waits for its sandbox. Default 180 000. */
  readonly bootstrapTimeout?: number
  /** Milliseconds between SSE keep-alive comments. Default 15 000. */
  readonly keepAliveInterval?: number
  /** Largest request body in bytes. Default 1 MiB. */
  readonly maxBodyBytes?: number
  /** Unread events an SSE subscriber may have before it is disconnected. Default 1 000. */
  readonly subscriberBuffer?: number
  /** Unread bytes an SSE subscriber may have before it is disconnected. Default 8 MiB. */
  readonly subscriberBufferBytes?: number
  /**
   * Most sessions whose reducer state (what their tool calls, parts and permissions are) stays in
   * memory; beyond it the least recently used is dropped and rebuilt from the store when the
   * session is next written. Default 1 000.
   */
  readonly residentSessions?: number
  /** Milliseconds an unused session's reducer state stays in memory. Default 60 000. */
  readonly idleEvictAfter?: number
  /** Bearer token required on every route (auth is off without one). */
  readonly token?: string
  /** Most SSE streams open at once; more get 503 + retry-after. Default: no cap. */
  readonly maxConnections?: number
  /** Milliseconds shutdown waits for requests in flight. Default 5 000. */
  readonly shutdownGrace?: number
  /** SQLite file. Default `:memory:`. Ignored when `store` or `pgUrl` is given. */
  readonly dbPath?: string
  /**
   * PostgreSQL connection URL: the store lives there instead of SQLite, and any number of
   * instances may share it. Ignored when `store` is given.
   */
  readonly pgUrl?: string
  /**
   * With `pgUrl`: milliseconds a sandbox lease lasts, i.e. how long after an instance dies its
   * sandboxes' sessions turn `disconnected`. Default 10 000.
   */
  readonly leaseTtl?: number
  /**
   * A Layer providing the SessionStore (e.g. `layerMemory`, `Sqlite.layer(...)`, `Pg.layer(...)`);
   * when it also provides a `Cluster` (as `Pg.layer` does), the instance runs clustered.
   */
  readonly store?: Layer.Layer<SessionStore, StoreError>
  /**
   * The embedded runner (issue 20): starts agents for sessions created with an `agent`, on this
   * machine. Off unless given (`rein-server` turns it on; `--no-runner` off).
   */
  readonly runner?: Embedded.EmbeddedRunnerOptions | undefined
}

export const defaults = {
  port: 0,
  host: "127.0.0.1",
  bootstrapTimeout: 180_000,
  keepAliveInterval: 15_000,
  maxBodyBytes: 1024 * 1024,
  subscriberBuffer: 1_000,
  subscriberBufferBytes: 8 * 1024 * 1024,
  dbPath: ":memory:",
  shutdownGrace: 5_000
} as const

export type ResolvedOptions = typeof defaults & Omit<ServerOptions, keyof typeof defaults>

export const resolve = (options: ServerOptions = {}): ResolvedOptions => {
  const out: Record<string, unknown> = { ...defaults }
  for (const [k, v] of Object.entries(options)) if (v !== undefined) out[k] = v
  return out as ResolvedOptions
}

/**
 * Whose worktrees the embedded runner reconciles: named after the store, so a restarted server
 * finds its own and another server on the machine (another database) never touches them. An
 * in-memory store forgets its sessions anyway: a fresh owner then.
 */
const ownerOf = (o: ResolvedOptions): string | undefined => {
  const store = o.pgUrl ?? (o.dbPath === ":memory:" || o.store !== undefined ? undefined : resolvePath(o.dbPath))
  return store === undefined ? undefined : `local@${createHash("sha256").update(store).digest("hex").slice(0, 12)}`
}

/** Store, bus, reducer, sessions and runners: everything but HTTP. */
export const layerApp = (options: ServerOptions = {}): Layer.Layer<Sessions.Sessions | SessionStore | Runners.Runners, StoreError> => {
  const o = resolve(options)
  const store = o.store ?? (o.pgUrl !== undefined ? Pg.layer({ url: o.pgUrl, leaseTtl: o.leaseTtl }) : Sqlite.layer({ filename: o.dbPath }))
  return Sessions.layer({
    bootstrapTimeout: o.bootstrapTimeout,
    subscriberBuffer: o.subscriberBuffer,
    residentSessions: o.residentSessions,
    idleEvictAfter: o.idleEvictAfter
  }).pipe(
    Layer.provide(EventBus.layer),
    Layer.provide(Reducer.layer),
    Layer.merge(Runners.layer),
    Layer.provideMerge(store)
  )
}

/** The routes served on whatever `HttpServer` is provided. */
export const layerHttp = (
  options: ServerOptions = {}
): Layer.Layer<never, never, HttpServer.HttpServer | Sessions.Sessions | Runners.Runners> => {
  const o = resolve(options)
  return Router.make({
    maxBodyBytes: o.maxBodyBytes,
    keepAliveInterval: o.keepAliveInterval,
    token: o.token,
    maxConnections: o.maxConnections,
    subscriberBuffer: o.subscriberBuffer,
    subscriberBufferBytes: o.subscriberBufferBytes
  }).pipe(
    Effect.map(HttpServer.serve()),
    Layer.unwrapScoped,
    // A span per request costs memory for every open stream and time on every event; none is exported.
    // (Http/Serve makes none anyway; this keeps the routes span-free on the platform's servers too.)
    HttpMiddleware.withTracerDisabledWhen(() => true),
    // Ids may be 128 characters; the router's default cap on a path parameter is 100. Longer ones
    // must still reach the route, to be refused as 400 by the id rule rather than 404.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 65_536 }))
  )
}

/** The whole server listening on `host:port`; its output keeps `HttpServer` (for the address). */
export const layer = (
  options: ServerOptions = {}
): Layer.Layer<HttpServer.HttpServer | Sessions.Sessions | SessionStore | Runners.Runners, StoreError | ServeError | Error> => {
  const o = resolve(options)
  return Layer.unwrapEffect(Effect.sync(() => {
    const node = NodeServer.make()
    // Built last, released first: requests in flight get their answers while the app is still up.
    const drain = Layer.scopedDiscard(Effect.addFinalizer(() => node.drain(o.shutdownGrace)))
    // Built first, released last: the ended streams' final bytes reach their clients.
    const closed = Layer.scopedDiscard(Effect.addFinalizer(() => node.closed(o.shutdownGrace)))
    // The runner stops first (its agents' last events still reach the store), then the drain.
    const runner = o.runner === undefined ? Layer.empty : Embedded.layer({ owner: ownerOf(o), ...o.runner })
    return runner.pipe(
      Layer.provideMerge(drain),
      Layer.provideMerge(layerHttp(o)),
      Layer.provideMerge(layerApp(o)),
      Layer.provideMerge(Serve.layer(node.server, { port: o.port, host: o.host })),
      Layer.provideMerge(closed),
      Layer.provideMerge(IdleGc.layer())
    )
  }))
}
