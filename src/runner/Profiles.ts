/**
 * Agent profiles: how to start one agent, in the shape of Zed's `agent_servers` entries and the
 * ACP registry's `npx` entries (`{name, command, args, env, passEnv}`), plus an optional
 * `wrapper` command prefix that runs the agent confined (e.g. bubblewrap).
 *
 * Built in: `demo` (the simulated agent of `npm run demo`; it is not a program speaking ACP over
 * stdio but an in-process script holding the session's command stream, so its profile says
 * `builtin: "demo"` instead of a command), `claude`, `codex` and `gemini` (the commands the
 * README gives). A JSON file `{ "agents": { "<id>": {...} } }` adds profiles or replaces
 * built-in ones (`rein-server --agents <file>`, env `REIN_AGENTS`).
 *
 * The agent's environment is built from an allow-list (`agentEnv`): never the runner's or the
 * server's own secrets.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { readFile } from "node:fs/promises"
import { formatParseError } from "../Domain/Event.js"

/** Variables every agent gets from the runner's environment, when set. */
export const baseEnv: ReadonlyArray<string> = ["PATH", "HOME", "LANG", "TERM"]

/**
 * The runner's and the server's own secrets: a profile may not pass them through (`passEnv`),
 * and `agentEnv` never copies them from the parent environment. (The runner may still set a
 * session-scoped `REIN_TOKEN`, the sandbox token, through `extra`.)
 */
export const secretEnv: ReadonlyArray<string> = ["REIN_TOKEN", "REIN_RUNNER_TOKEN", "DATABASE_URL"]

/** A profile's id: the name a session asks for (`agent: "claude"`). */
export const ProfileIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const EnvName = Schema.String.pipe(
  Schema.filter((s) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) || `"${s}" is not an environment variable name`)
)
const PassEnvName = EnvName.pipe(
  Schema.filter((s) => !secretEnv.includes(s) || `${s} is the runner's or server's secret and is never passed to an agent`)
)
const NonEmpty = Schema.String.pipe(Schema.filter((s) => s.length > 0 || "must not be empty"))

/** What one entry of the JSON file may say. `name` defaults to the id. */
const ProfileEntry = Schema.Struct({
  name: Schema.optional(NonEmpty),
  command: Schema.optional(NonEmpty),
  builtin: Schema.optional(Schema.Literal("demo")),
  args: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  env: Schema.optionalWith(Schema.Record({ key: EnvName, value: Schema.String }), { default: () => ({}) }),
  passEnv: Schema.optionalWith(Schema.Array(PassEnvName), { default: () => [] }),
  wrapper: Schema.optional(Schema.NonEmptyArray(NonEmpty))
}).pipe(
  Schema.filter((p) =>
    p.command === undefined && p.builtin === undefined
      ? { path: ["command"], message: "a profile needs a command (or builtin: \"demo\")" }
      : p.command !== undefined && p.builtin !== undefined
      ? { path: ["builtin"], message: "a profile has either a command or builtin, not both" }
      : true
  )
)

/** The file: `{ "agents": { "<id>": {...} } }`; unknown fields are errors (a typo must not pass). */
export const ProfilesFile = Schema.Struct({
  agents: Schema.Record({ key: Schema.String, value: ProfileEntry }).pipe(
    Schema.filter((agents) => {
      const bad = Object.keys(agents).find((id) => !ProfileIdPattern.test(id))
      return bad === undefined || { path: [bad], message: `agent id "${bad}" must match ${ProfileIdPattern.source}` }
    })
  )
})

/** How to start one agent. */
export interface AgentProfile {
  /** The id sessions name it by (`agent: "codex"`). */
  readonly id: string
  /** A human name, for lists. */
  readonly name: string
  /** The program (looked up on the agent's PATH); absent for a built-in agent. */
  readonly command?: string
  /** Set instead of `command` for an agent the runner runs itself (the simulated `demo`). */
  readonly builtin?: "demo"
  readonly args: ReadonlyArray<string>
  /** Variables set for the agent. */
  readonly env: Readonly<Record<string, string>>
  /** Variables copied from the runner's environment when set there (e.g. ANTHROPIC_API_KEY). */
  readonly passEnv: ReadonlyArray<string>
  /** A command prefix the agent runs under, e.g. `["bwrap", ..., "--"]`; `{cwd}` is the worktree. */
  readonly wrapper?: ReadonlyArray<string>
}

export type Profiles = Readonly<Record<string, AgentProfile>>

const proxyEnv = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"]
const npmEnv = ["NPM_CONFIG_REGISTRY", "npm_config_registry", ...proxyEnv]

/** The profiles every runner offers, unless a file replaces them. */
export const builtinProfiles: Profiles = {
  demo: { id: "demo", name: "Demo (simulated agent)", builtin: "demo", args: [], env: {}, passEnv: [] },
  claude: {
    id: "claude",
    name: "Claude Code",
    command: "npx",
    // On Node 20 npm resolves 0.49 (>= 0.50 needs Node >= 22), as the README says.
    args: ["-y", "@agentclientprotocol/claude-agent-acp"],
    env: {},
    passEnv: [
      "ANTHROPIC_API_KEY",
      "ANTHROPIC_AUTH_TOKEN",
      "ANTHROPIC_BASE_URL",
      "ANTHROPIC_MODEL",
      "CLAUDE_CODE_OAUTH_TOKEN",
      "CLAUDE_CONFIG_DIR",
      "IS_SANDBOX",
      ...npmEnv
    ]
  },
  codex: {
    id: "codex",
    name: "Codex",
    command: "npx",
    args: ["-y", "@zed-industries/codex-acp"],
    env: {},
    passEnv: ["OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME", ...npmEnv]
  },
  gemini: {
    id: "gemini",
    name: "Gemini CLI",
    command: "gemini",
    args: ["--acp"],
    env: {},
    passEnv: [
      "GEMINI_API_KEY",
      "GOOGLE_API_KEY",
      "GOOGLE_GEMINI_BASE_URL",
      "GOOGLE_GENAI_USE_VERTEXAI",
      "GOOGLE_CLOUD_PROJECT",
      "GOOGLE_CLOUD_LOCATION",
      "GOOGLE_APPLICATION_CREDENTIALS",
      ...proxyEnv
    ]
  }
}

/** A profiles file that cannot be read or says something wrong; the message names the field. */
export class ProfilesError extends Error {
  override readonly name = "ProfilesError"
}

const decodeFile = Schema.decodeUnknownEither(ProfilesFile, { onExcessProperty: "error", errors: "first" })

/**
 * Decodes the content of a profiles file (already parsed JSON). `source` names it in errors.
 * Throws `ProfilesError`, e.g. `agents.codex.args[1]: Expected string, actual 3`.
 */
export const decodeProfiles = (json: unknown, source = "agents file"): Profiles => {
  const decoded = decodeFile(json)
  if (Either.isLeft(decoded)) throw new ProfilesError(`${source}: ${formatParseError(decoded.left)}`)
  const out: Record<string, AgentProfile> = {}
  for (const [id, entry] of Object.entries(decoded.right.agents)) {
    out[id] = {
      id,
      name: entry.name ?? id,
      ...(entry.command !== undefined ? { command: entry.command } : {}),
      ...(entry.builtin !== undefined ? { builtin: entry.builtin } : {}),
      args: entry.args,
      env: entry.env,
      passEnv: entry.passEnv,
      ...(entry.wrapper !== undefined ? { wrapper: entry.wrapper } : {})
    }
  }
  return out
}

/**
 * The built-in profiles, plus those of `file` (a JSON file `{ "agents": { "<id>": {...} } }`)
 * when given: a profile there adds an agent, or replaces the built-in one of the same id whole.
 * Throws `ProfilesError` naming the file and the field.
 */
export const loadProfiles = async (file?: string): Promise<Profiles> => {
  if (file === undefined || file === "") return builtinProfiles
  let text: string
  try {
    text = await readFile(file, "utf8")
  } catch (e) {
    throw new ProfilesError(`cannot read the agents file ${file}: ${(e as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new ProfilesError(`${file}: not JSON: ${(e as Error).message}`)
  }
  return { ...builtinProfiles, ...decodeProfiles(json, file) }
}

/**
 * The environment an agent runs with, built from an allow-list: `PATH`, `HOME`, `LANG`, `TERM`
 * and the profile's `passEnv`, each copied from `parentEnv` when set there (never one of
 * `secretEnv`), then the profile's `env`, then `extra` (what the runner adds for the session,
 * e.g. its sandbox token), later ones winning. Nothing else of `parentEnv` gets through.
 */
export const agentEnv = (
  profile: Pick<AgentProfile, "env" | "passEnv">,
  parentEnv: Readonly<Record<string, string | undefined>>,
  extra: Readonly<Record<string, string>> = {}
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const name of [...baseEnv, ...profile.passEnv]) {
    const value = parentEnv[name]
    if (value !== undefined && !secretEnv.includes(name)) env[name] = value
  }
  return { ...env, ...profile.env, ...extra }
}

/**
 * The program and arguments that start the profile's agent in `cwd`: the wrapper (if any), then
 * the command and its arguments, with `{cwd}` in any of them replaced by `cwd`. Undefined for a
 * built-in agent, which the runner runs itself.
 */
export const commandLine = (
  profile: AgentProfile,
  cwd: string
): { readonly command: string; readonly args: ReadonlyArray<string> } | undefined => {
  if (profile.command === undefined) return undefined
  const words = [...(profile.wrapper ?? []), profile.command, ...profile.args].map((w) => w.replaceAll("{cwd}", cwd))
  return { command: words[0]!, args: words.slice(1) }
}
