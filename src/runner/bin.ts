#!/usr/bin/env node
/**
 * `rein-runner`: flags and REIN_* settings -> Runner (issue 20). Starts and supervises agents for
 * a Rein server from another machine, a VM or a container: it connects out (nothing listens
 * here), reconciles what a previous run left, then takes jobs until SIGINT/SIGTERM (its agents
 * stop, their sessions stay) or until it is revoked.
 *
 *   rein-runner --url <server> --token <runner token> [--name n] [--agents f] [--repos dir]... [--worktrees dir] [--max-sessions N]
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createRequire } from "node:module"
import { defaultWorktrees } from "./Embedded.js"
import * as Flags from "./Flags.js"
import { loadProfiles } from "./Profiles.js"
import { Runner } from "./Runner.js"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

const url = Options.text("url").pipe(
  Options.withDescription("the Rein server, e.g. http://hub:4800 (env REIN_URL)"),
  Options.withFallbackConfig(Config.string("REIN_URL")),
  Options.filterMap((u) => /^https?:\/\/[^/]/.test(u) ? Option.some(u) : Option.none(), "--url must be an http:// or https:// URL")
)
const token = Options.text("token").pipe(
  Options.withDescription("the runner token POST /runners answered (rrt_...) (env REIN_RUNNER_TOKEN)"),
  Options.withFallbackConfig(Config.string("REIN_RUNNER_TOKEN")),
  Options.filterMap((t) => /^rrt_[^.]+\..+$/.test(t) ? Option.some(t) : Option.none(), "--token must be a runner token (rrt_<id>.<secret>)")
)

const command = Command.make("rein-runner", {
  url,
  token,
  agents: Flags.agents,
  repos: Flags.repos,
  worktrees: Flags.worktrees,
  maxSessions: Flags.maxSessions
}, (o) =>
  Effect.gen(function*() {
    const id = o.token.slice("rrt_".length, o.token.indexOf("."))
    const profiles = yield* Effect.tryPromise({
      try: () => loadProfiles(Option.getOrUndefined(o.agents)),
      catch: (e) => new Error(`rein-runner: ${(e as Error).message}`)
    })
    const repos = yield* Flags.resolveRepos(o.repos)
    const log = (line: string) => process.stderr.write(`rein-runner: ${line}\n`)
    const runner = new Runner({
      url: o.url,
      id,
      token: o.token,
      profiles,
      repos,
      worktrees: Option.getOrElse(o.worktrees, defaultWorktrees),
      maxSessions: Option.getOrUndefined(o.maxSessions),
      log
    })
    yield* Effect.acquireRelease(
      Effect.promise(() => runner.start()),
      () => Effect.promise(() => runner.close())
    )
    log(`runner ${id} serving ${repos.length === 0 ? "no repository (give --repos)" : repos.join(", ")} for ${o.url}`)
    const why = yield* Effect.promise(() => runner.ended)
    if (why !== "closed") return yield* Effect.fail(new Error(`rein-runner: stopped: ${why}`))
  }).pipe(Effect.scoped)
)

const cli = Command.run(command, { name: "rein-runner", version })

cli(process.argv).pipe(
  Effect.tapErrorCause((cause) => {
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure) && ValidationError.isValidationError(failure.value)) return Effect.void
    if (Option.isSome(failure) && failure.value instanceof Error) return Console.error(failure.value.message)
    return Console.error(`rein-runner failed: ${Cause.pretty(cause)}`)
  }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
