/**
 * The runner's flags, shared by `rein-server` (its embedded runner) and `rein-runner`, each with
 * its REIN_* variable: --agents, --repos, --worktrees, --max-sessions.
 */
import * as Options from "@effect/cli/Options"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { execFileSync } from "node:child_process"
import { delimiter, resolve } from "node:path"

export const agents = Options.file("agents", { exists: "yes" }).pipe(
  Options.withDescription("a JSON file of agent profiles that adds to or overrides the built-in ones (env REIN_AGENTS)"),
  Options.withFallbackConfig(Config.string("REIN_AGENTS")),
  Options.optional
)

export const repos = Options.directory("repos", { exists: "yes" }).pipe(
  Options.withDescription(
    `a git repository agents may work on, repeatable (env REIN_REPOS, separated by "${delimiter}"; default: the current directory when it is a git repository)`
  ),
  Options.repeated
)

export const worktrees = Options.text("worktrees").pipe(
  Options.withDescription("where session worktrees go (default ~/.rein/worktrees, env REIN_WORKTREES)"),
  Options.withFallbackConfig(Config.string("REIN_WORKTREES")),
  Options.optional
)

export const maxSessions = Options.integer("max-sessions").pipe(
  Options.withDescription("most sessions whose agents run at once (default: no cap, env REIN_MAX_SESSIONS)"),
  Options.withFallbackConfig(Config.integer("REIN_MAX_SESSIONS")),
  Options.filterMap((n) => n > 0 ? Option.some(n) : Option.none(), "max-sessions must be a positive number"),
  Options.optional
)

/** The top-level directory of the git repository `dir` is in, if it is in one. */
export const gitTopLevel = (dir: string): string | undefined => {
  try {
    return execFileSync("git", ["rev-parse", "--show-toplevel"], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() ||
      undefined
  } catch {
    return undefined
  }
}

/** The repositories served: the flags, else REIN_REPOS, else the current directory when it is a git repository. */
export const resolveRepos = (given: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const env = yield* Config.string("REIN_REPOS").pipe(Config.withDefault(""))
    const listed = given.length > 0 ? given : env.split(delimiter).filter((d) => d !== "")
    if (listed.length > 0) return listed.map((d) => resolve(d))
    const here = gitTopLevel(process.cwd())
    return here === undefined ? [] : [here]
  })
