#!/usr/bin/env node
/**
 * `rein-sandbox`: flags and REIN_* settings -> Bridge -> exit code.
 *
 *   rein-sandbox --url <url> --session <id> [--token T] [--cwd dir] [--create [--project p]] [--grace ms] [--start-timeout ms] -- <agent> [args...]
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { createRequire } from "node:module"
import { resolve } from "node:path"
import { Bridge, type BridgeExit } from "./Bridge.js"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

const url = Options.text("url").pipe(
  Options.withDescription("the Rein server, e.g. http://127.0.0.1:4800 (env REIN_URL)"),
  Options.withFallbackConfig(Config.string("REIN_URL")),
  Options.filterMap((u) => /^https?:\/\/[^/]/.test(u) ? Option.some(u) : Option.none(), "url must be an http:// or https:// URL")
)
const session = Options.text("session").pipe(
  Options.withDescription("the session this agent is the sandbox of (env REIN_SESSION)"),
  Options.withFallbackConfig(Config.string("REIN_SESSION"))
)
const token = Options.text("token").pipe(
  Options.withDescription("the session's sandbox token, or the server token (env REIN_TOKEN)"),
  Options.withFallbackConfig(Config.string("REIN_TOKEN")),
  Options.optional
)
const cwd = Options.directory("cwd", { exists: "yes" }).pipe(
  Options.withDescription(
    "the agent's working directory (default: the current directory). What rein-sandbox serves the agent (ACP fs/* and terminal/*) " +
      "is confined to it; the agent's own tools are not: they can read and write wherever the agent's process can"
  ),
  Options.optional
)
const create = Options.boolean("create").pipe(Options.withDescription("create the session first (an existing one is joined)"))
const project = Options.text("project").pipe(Options.withDescription("with --create: the session's project"), Options.optional)
const grace = Options.integer("grace").pipe(
  Options.withDescription("milliseconds the agent gets to exit after SIGTERM before its process group is killed (default 5000)"),
  Options.withDefault(5000),
  Options.filterMap((n) => n >= 0 ? Option.some(n) : Option.none(), "grace must be 0 or more milliseconds")
)
const startTimeout = Options.integer("start-timeout").pipe(
  Options.withDescription(
    "milliseconds the agent gets to answer ACP initialize and session/new before rein-sandbox gives up (default 120000)"
  ),
  Options.withDefault(120_000),
  Options.filterMap((n) => n > 0 ? Option.some(n) : Option.none(), "start-timeout must be a positive number of milliseconds")
)
const agent = Args.text({ name: "agent command" }).pipe(
  Args.withDescription("after --: the ACP agent to run over stdio, and its arguments"),
  Args.atLeast(1)
)

/** What is confined to --cwd and what is not, said where people look first. */
const description = [
  "Runs an ACP agent (JSON-RPC over stdio) as the sandbox of a Rein session: prompts, aborts, modes and permission",
  "replies go to the agent; what it does comes back as events.",
  "",
  "Confinement: the file reads and writes (ACP fs/*) and the terminals (ACP terminal/*) that rein-sandbox serves the",
  "agent are confined to --cwd. The agent's own tools are not: an agent that writes files or runs commands itself",
  "(Claude's Write and Bash tools, Codex) can reach everything its process can. rein-sandbox is not a sandbox in the",
  "security sense: to confine the agent, run it (and rein-sandbox) in a container or as a user that can reach only --cwd."
].join("\n")

const command = Command.make("rein-sandbox", { url, session, token, cwd, create, project, grace, startTimeout, agent }, (o) =>
  Effect.gen(function*() {
    if (Option.isSome(o.project) && !o.create) {
      yield* Console.error("rein-sandbox: --project needs --create")
      return 2
    }
    const [cmd, ...args] = o.agent
    const bridge = new Bridge({
      url: o.url,
      sessionId: o.session,
      token: Option.getOrUndefined(o.token),
      create: o.create ? { project: Option.getOrUndefined(o.project) } : undefined,
      cwd: resolve(Option.getOrElse(o.cwd, () => process.cwd())),
      command: cmd,
      args,
      graceMs: o.grace,
      startTimeoutMs: o.startTimeout,
      clientVersion: version,
      log: (line) => process.stderr.write(`rein-sandbox: ${line}\n`)
    })
    // SIGINT/SIGTERM interrupt this fiber (NodeRuntime.runMain): the bridge stops cleanly before it ends.
    const exit = yield* Effect.async<BridgeExit>((resume) => {
      bridge.run().then((e) => resume(Effect.succeed(e)), (e) => resume(Effect.die(e)))
      return Effect.promise(async () => {
        bridge.stop()
        const e = await bridge.run()
        process.stderr.write(`rein-sandbox: ${e.message}\n`)
      })
    })
    yield* Console.error(`rein-sandbox: ${exit.message}`)
    return exit.code
  })
).pipe(Command.withDescription(description))

const cli = Command.run(command, { name: "rein-sandbox", version })

// The exit code is the bridge's: 0 when the session was deleted or on SIGINT/SIGTERM, 1 when the agent died,
// the server refused us or the session is not there (so a supervisor restarts it). Invalid flags were explained by the CLI.
cli(process.argv).pipe(
  Effect.tapErrorCause((cause) => {
    const failure = Cause.failureOption(cause)
    return Option.isSome(failure) && ValidationError.isValidationError(failure.value)
      ? Effect.void
      : Console.error(`rein-sandbox failed: ${Cause.pretty(cause)}`)
  }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: (exit) =>
      process.exit(
        Exit.isSuccess(exit) ? (typeof exit.value === "number" ? exit.value : 0) : Cause.isInterruptedOnly(exit.cause) ? 0 : 1
      )
  })
)
