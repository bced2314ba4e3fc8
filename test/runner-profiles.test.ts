/**
 * Agent profiles: the built-ins, a JSON file that adds and overrides with errors naming the
 * field, and the agent's environment from an allow-list (checked in a real child process too).
 */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import {
  agentEnv,
  builtinProfiles,
  commandLine,
  decodeProfiles,
  loadProfiles,
  ProfilesError,
  secretEnv
} from "../src/runner/Profiles.js"
import { cleanup, tempDir } from "./runner-helpers.js"

afterEach(cleanup)

const writeJson = (value: unknown) => {
  const file = join(tempDir(), "agents.json")
  writeFileSync(file, typeof value === "string" ? value : JSON.stringify(value))
  return file
}

describe("built-in profiles", () => {
  it("demo is built in (no command); claude, codex and gemini are the README's commands", async () => {
    const profiles = await loadProfiles()
    expect(Object.keys(profiles).sort()).toEqual(["claude", "codex", "demo", "gemini"])
    expect(profiles.demo).toMatchObject({ id: "demo", builtin: "demo" })
    expect(profiles.demo!.command).toBeUndefined()
    expect(commandLine(profiles.demo!, "/w")).toBeUndefined()
    expect(commandLine(profiles.claude!, "/w")).toEqual({ command: "npx", args: ["-y", "@agentclientprotocol/claude-agent-acp"] })
    expect(commandLine(profiles.codex!, "/w")).toEqual({ command: "npx", args: ["-y", "@zed-industries/codex-acp"] })
    expect(commandLine(profiles.gemini!, "/w")).toEqual({ command: "gemini", args: ["--acp"] })
    expect(profiles.claude!.passEnv).toEqual(expect.arrayContaining(["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"]))
    expect(profiles.codex!.passEnv).toContain("OPENAI_API_KEY")
    expect(profiles.gemini!.passEnv).toEqual(expect.arrayContaining(["GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"]))
    for (const p of Object.values(builtinProfiles)) for (const s of secretEnv) expect(p.passEnv).not.toContain(s)
  })
})

describe("loadProfiles(file)", () => {
  it("adds profiles and replaces a built-in whole; name defaults to the id, lists to empty", async () => {
    const file = writeJson({
      agents: {
        scripted: { command: "node", args: ["agent.js"], env: { MODE: "test" }, passEnv: ["MY_KEY"] },
        claude: { name: "Claude (pinned)", command: "npx", args: ["-y", "@agentclientprotocol/claude-agent-acp@0.49"] },
        boxed: { command: "claude-acp", wrapper: ["bwrap", "--bind", "{cwd}", "{cwd}", "--"] }
      }
    })
    const profiles = await loadProfiles(file)
    expect(Object.keys(profiles).sort()).toEqual(["boxed", "claude", "codex", "demo", "gemini", "scripted"])
    expect(profiles.scripted).toEqual({
      id: "scripted",
      name: "scripted",
      command: "node",
      args: ["agent.js"],
      env: { MODE: "test" },
      passEnv: ["MY_KEY"]
    })
    // Replaced whole: the built-in's passEnv is not merged in.
    expect(profiles.claude).toEqual({
      id: "claude",
      name: "Claude (pinned)",
      command: "npx",
      args: ["-y", "@agentclientprotocol/claude-agent-acp@0.49"],
      env: {},
      passEnv: []
    })
    expect(commandLine(profiles.boxed!, "/w/s1")).toEqual({
      command: "bwrap",
      args: ["--bind", "/w/s1", "/w/s1", "--", "claude-acp"]
    })
    expect(await loadProfiles("")).toBe(builtinProfiles)
  })

  const rejects = async (content: unknown, message: RegExp) => {
    const file = writeJson(content)
    const error = await loadProfiles(file).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(ProfilesError)
    expect((error as Error).message).toContain(file)
    expect((error as Error).message).toMatch(message)
  }

  it("errors name the file and the field", async () => {
    await rejects({ agents: { x: { command: "a", args: ["ok", 3] } } }, /agents\.x\.args\[1\]: Expected string, actual 3/)
    await rejects({ agents: { x: { args: [] } } }, /agents\.x\.command: a profile needs a command/)
    await rejects({ agents: { x: { command: "a", builtin: "demo" } } }, /agents\.x\.builtin: .*either a command or builtin/)
    await rejects({ agents: { x: { command: "a", builtin: "other" } } }, /agents\.x\.builtin: Expected "demo"/)
    await rejects({ agents: { x: { command: "" } } }, /agents\.x\.command: must not be empty/)
    await rejects({ agents: { x: { command: "a", passenv: ["K"] } } }, /agents\.x\.passenv: is unexpected/)
    await rejects({ agents: { x: { command: "a", passEnv: ["REIN_TOKEN"] } } }, /agents\.x\.passEnv\[0\]: REIN_TOKEN is the runner's or server's secret/)
    await rejects({ agents: { x: { command: "a", passEnv: ["A-B"] } } }, /agents\.x\.passEnv\[0\]: "A-B" is not an environment variable name/)
    await rejects({ agents: { x: { command: "a", env: { A: 1 } } } }, /agents\.x\.env\.A: Expected string, actual 1/)
    await rejects({ agents: { "../x": { command: "a" } } }, /agent id "\.\.\/x" must match/)
    await rejects({ agent: {} }, /agent: is unexpected, expected: "agents"/)
    await rejects({}, /agents: is missing/)
    await rejects([], /Expected \{ readonly agents/)
    await rejects("{ not json", /not JSON/)
    await expect(loadProfiles(join(tempDir(), "missing.json"))).rejects.toThrow(/cannot read the agents file .*missing\.json/)
  })

  it("decodeProfiles works on parsed JSON", () => {
    expect(decodeProfiles({ agents: {} })).toEqual({})
    expect(() => decodeProfiles({ agents: { y: {} } }, "REIN_AGENTS")).toThrow(/^REIN_AGENTS: agents\.y\.command/)
  })
})

describe("agentEnv", () => {
  const parent = {
    PATH: "/usr/bin",
    HOME: "/home/me",
    LANG: "C.UTF-8",
    TERM: "xterm",
    ANTHROPIC_API_KEY: "sk-ant",
    OPENAI_API_KEY: "sk-openai",
    REIN_TOKEN: "server-secret",
    REIN_RUNNER_TOKEN: "runner-secret",
    DATABASE_URL: "postgres://secret",
    AWS_SECRET_ACCESS_KEY: "aws",
    SHELL: "/bin/bash",
    UNSET: undefined
  }

  it("only the allow-list, then the profile's env, then what the runner adds", () => {
    expect(agentEnv(builtinProfiles.claude!, parent, { REIN_URL: "http://hub", REIN_SESSION: "s1", REIN_TOKEN: "sandbox-token" }))
      .toEqual({
        PATH: "/usr/bin",
        HOME: "/home/me",
        LANG: "C.UTF-8",
        TERM: "xterm",
        ANTHROPIC_API_KEY: "sk-ant",
        REIN_URL: "http://hub",
        REIN_SESSION: "s1",
        REIN_TOKEN: "sandbox-token"
      })
    expect(agentEnv({ env: { HOME: "/sandbox", MODE: "x" }, passEnv: ["OPENAI_API_KEY", "UNSET"] }, parent)).toEqual({
      PATH: "/usr/bin",
      HOME: "/sandbox",
      LANG: "C.UTF-8",
      TERM: "xterm",
      OPENAI_API_KEY: "sk-openai",
      MODE: "x"
    })
  })

  it("never copies a secret, even when a hand-made profile names it in passEnv", () => {
    const env = agentEnv({ env: {}, passEnv: ["REIN_TOKEN", "REIN_RUNNER_TOKEN", "DATABASE_URL"] }, parent)
    expect(env).toEqual({ PATH: "/usr/bin", HOME: "/home/me", LANG: "C.UTF-8", TERM: "xterm" })
  })

  it("a real child started with it sees exactly that environment", () => {
    const env = agentEnv(builtinProfiles.codex!, { ...process.env, ...parent, PATH: process.env.PATH }, { REIN_SESSION: "s1" })
    const seen = JSON.parse(execFileSync(process.execPath, ["-e", "process.stdout.write(JSON.stringify(process.env))"], { env, encoding: "utf8" }))
    expect(seen.OPENAI_API_KEY).toBe("sk-openai")
    expect(seen.REIN_SESSION).toBe("s1")
    for (const secret of ["REIN_TOKEN", "REIN_RUNNER_TOKEN", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "ANTHROPIC_API_KEY", "SHELL"]) {
      expect(seen[secret]).toBeUndefined()
    }
  })
})
