#!/usr/bin/env node
/**
 * `rein-server`: flags and REIN_* settings -> Server.layer -> NodeRuntime.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createRequire } from "node:module"
import { hostname } from "node:os"
import * as RunnerFlags from "./runner/Flags.js"
import * as Server from "./Server.js"

const { version } = createRequire(import.meta.url)("../package.json") as { version: string }

const port = Options.integer("port").pipe(
  Options.withDescription("TCP port to listen on, 0 for any free port (default 4800, env REIN_PORT)"),
  Options.withFallbackConfig(Config.integer("REIN_PORT").pipe(Config.withDefault(4800))),
  Options.filterMap((n) => n >= 0 && n <= 65535 ? Option.some(n) : Option.none(), "port must be 0 to 65535")
)
const host = Options.text("host").pipe(
  Options.withDescription("interface to bind (default 127.0.0.1, env REIN_HOST)"),
  Options.withFallbackConfig(Config.string("REIN_HOST").pipe(Config.withDefault("127.0.0.1")))
)
// The store: flags beat environment variables, and PostgreSQL beats SQLite at the same level:
// --pg, --db, DATABASE_URL, REIN_DB, ./rein.db. (An ambient DATABASE_URL meant for another
// program must not override an explicit --db.)
const db = Options.text("db").pipe(
  Options.withDescription("SQLite database file, or :memory: (default ./rein.db, env REIN_DB)"),
  Options.optional
)
const pg = Options.text("pg").pipe(
  Options.withDescription(
    "PostgreSQL connection URL: store sessions there instead of SQLite; --pg wins over --db, --db over env (env DATABASE_URL)"
  ),
  Options.optional
)
type Store = { readonly _tag: "pg"; readonly url: string } | { readonly _tag: "sqlite"; readonly path: string }
const chooseStore = (flags: { readonly pg: Option.Option<string>; readonly db: Option.Option<string> }) =>
  Effect.gen(function*() {
    if (Option.isSome(flags.pg)) return { _tag: "pg", url: flags.pg.value } as Store
    if (Option.isSome(flags.db)) return { _tag: "sqlite", path: flags.db.value } as Store
    const url = yield* Config.option(Config.string("DATABASE_URL"))
    if (Option.isSome(url) && url.value !== "") return { _tag: "pg", url: url.value } as Store
    return { _tag: "sqlite", path: yield* Config.string("REIN_DB").pipe(Config.withDefault("./rein.db")) } as Store
  })
const bootstrapTimeout = Options.integer("bootstrap-timeout").pipe(
  Options.withDescription("milliseconds a new session waits for its sandbox before it is removed (default 180000, env REIN_BOOTSTRAP_TIMEOUT)"),
  Options.withFallbackConfig(Config.integer("REIN_BOOTSTRAP_TIMEOUT").pipe(Config.withDefault(180_000))),
  Options.filterMap((n) => n > 0 ? Option.some(n) : Option.none(), "bootstrap-timeout must be a positive number of milliseconds")
)

const token = Options.text("token").pipe(
  Options.withDescription("require Authorization: Bearer <token> on every route (env REIN_TOKEN)"),
  Options.withFallbackConfig(Config.string("REIN_TOKEN")),
  Options.optional
)
const maxConnections = Options.integer("max-connections").pipe(
  Options.withDescription("most SSE streams open at once; more get 503 (env REIN_MAX_CONNECTIONS)"),
  Options.withFallbackConfig(Config.integer("REIN_MAX_CONNECTIONS")),
  Options.optional
)
const leaseTtl = Options.integer("lease-ttl").pipe(
  Options.withDescription(
    "with PostgreSQL: milliseconds a sandbox lease lasts, i.e. how soon a dead instance's sessions turn disconnected (default 10000, env REIN_LEASE_TTL)"
  ),
  Options.withFallbackConfig(Config.integer("REIN_LEASE_TTL").pipe(Config.withDefault(10_000))),
  Options.filterMap((n) => n >= 100 ? Option.some(n) : Option.none(), "lease-ttl must be at least 100 milliseconds")
)
const residentSessions = Options.integer("resident-sessions").pipe(
  Options.withDescription(
    "most sessions whose reducer state stays in memory; the least recently used beyond it is rebuilt from the store when next written (default 1000, env REIN_RESIDENT_SESSIONS)"
  ),
  Options.withFallbackConfig(Config.integer("REIN_RESIDENT_SESSIONS").pipe(Config.withDefault(1_000))),
  Options.filterMap((n) => n >= 0 ? Option.some(n) : Option.none(), "resident-sessions must be 0 or more")
)
const idleEvictAfter = Options.integer("idle-evict-after").pipe(
  Options.withDescription(
    "milliseconds an unused session's reducer state stays in memory (default 60000, env REIN_IDLE_EVICT_AFTER)"
  ),
  Options.withFallbackConfig(Config.integer("REIN_IDLE_EVICT_AFTER").pipe(Config.withDefault(60_000))),
  Options.filterMap((n) => n > 0 ? Option.some(n) : Option.none(), "idle-evict-after must be a positive number of milliseconds")
)

/** The URL without its password, for the log. */
const redactUrl = (url: string) => {
  try {
    const u = new URL(url)
    if (u.password !== "") u.password = "***"
    return u.toString()
  } catch {
    return "postgresql"
  }
}

/** The port could not be bound: the system's error code, in words. */
class CannotListen extends Data.TaggedError("CannotListen")<{ readonly host: string; readonly port: number; readonly cause: unknown }> {
  override get message() {
    const error = this.cause as { code?: unknown; message?: unknown } | undefined
    const code = typeof error?.code === "string" ? error.code : ""
    const reason = listenErrors[code] ?? (typeof error?.message === "string" ? error.message : code || "unknown error")
    const hint = code === "EADDRINUSE" ? `\nIs another rein-server running there? Pick another port with --port (or REIN_PORT).` : ""
    return `Could not start the server on ${this.host}:${this.port}: ${reason}${hint}`
  }
}
const listenErrors: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EADDRNOTAVAIL: "address not available on this machine",
  ENOTFOUND: "no such host"
}

const noRunner = Options.boolean("no-runner").pipe(
  Options.withDescription("do not start agents on this machine (no embedded runner); remote rein-runners still can (env REIN_NO_RUNNER=1)"),
  Options.withFallbackConfig(Config.boolean("REIN_NO_RUNNER").pipe(Config.withDefault(false)))
)

const loopback = (host: string) => host === "localhost" || host.startsWith("127.") || host === "::1"

const command = Command.make("rein-server", {
  port,
  host,
  db,
  pg,
  bootstrapTimeout,
  token,
  maxConnections,
  leaseTtl,
  residentSessions,
  idleEvictAfter,
  noRunner,
  agents: RunnerFlags.agents,
  repos: RunnerFlags.repos,
  worktrees: RunnerFlags.worktrees,
  maxSessions: RunnerFlags.maxSessions
}, (o) =>
  Effect.flatMap(Effect.zip(chooseStore(o), RunnerFlags.resolveRepos(o.repos)), ([store, repos]) => {
    const server = Server.layer({
      port: o.port,
      host: o.host,
      ...(store._tag === "pg" ? { pgUrl: store.url } : { dbPath: store.path }),
      bootstrapTimeout: o.bootstrapTimeout,
      token: Option.getOrUndefined(o.token),
      maxConnections: Option.getOrUndefined(o.maxConnections),
      leaseTtl: o.leaseTtl,
      residentSessions: o.residentSessions,
      idleEvictAfter: o.idleEvictAfter,
      runner: o.noRunner ? undefined : {
        // Instances sharing a database each run their own: one id per machine.
        id: store._tag === "pg" ? `local-${hostname()}` : "local",
        repos,
        agentsFile: Option.getOrUndefined(o.agents),
        worktrees: Option.getOrUndefined(o.worktrees),
        maxSessions: Option.getOrUndefined(o.maxSessions)
      }
    })
    const announce = Layer.effectDiscard(Effect.gen(function*() {
      const { address } = yield* HttpServer.HttpServer
      const url = address._tag === "TcpAddress" ? `http://${address.hostname}:${address.port}` : address.path
      const db = store._tag === "pg" ? redactUrl(store.url) : store.path
      yield* Console.log(`rein-server ${version} listening on ${url} (db: ${db})`)
      if (!loopback(o.host) && Option.isNone(o.token)) {
        yield* Console.error(
          `WARNING: listening on ${o.host} without a token: anyone who can reach this port controls your agents. ` +
            `Set --token or REIN_TOKEN.`
        )
      }
    }))
    return Layer.launch(announce.pipe(Layer.provide(server))).pipe(
      Effect.catchTag("ServeError", (e) => Effect.fail(new CannotListen({ host: o.host, port: o.port, cause: e.cause })))
    )
  })
)

const cli = Command.run(command, { name: "rein-server", version })

// Invalid flags were already explained by the CLI; a port that cannot be bound is said in words;
// anything else is printed once, then exit 1.
cli(process.argv).pipe(
  Effect.tapErrorCause((cause) => {
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure) && ValidationError.isValidationError(failure.value)) return Effect.void
    if (Option.isSome(failure) && failure.value instanceof CannotListen) return Console.error(failure.value.message)
    return Console.error(`rein-server failed: ${Cause.pretty(cause)}`)
  }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
