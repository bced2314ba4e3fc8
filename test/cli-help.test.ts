/**
 * `rein --help` on its own (issue 21): the help people read (src/cli/Help.ts) describes exactly
 * the flags the commands parse (src/cli/Commands.ts, @effect/cli), and reads like `git --help`.
 * The bin's help, piped and on a terminal, is tested in cli-client.e2e.test.ts.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as Descriptor from "@effect/cli/CommandDescriptor"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as HashMap from "effect/HashMap"
import { describe, expect, it } from "vitest"
import { colors, noColors, strip } from "../src/cli/Ansi.js"
import { command, scan } from "../src/cli/Commands.js"
import * as Help from "../src/cli/Help.js"

/** @effect/cli's own flags, on every command: rein's help names --help and --version only. */
const builtIn = new Set(["--completions", "--help", "--log-level", "--version", "--wizard"])

/** The flags @effect/cli parses for a command, as its own help names them. */
const parsed = (d: Descriptor.Command<unknown>): Array<string> =>
  [...new Set([...strip(HelpDoc.toAnsiText(Descriptor.getHelp(d, CliConfig.defaultConfig))).matchAll(/(?<![\w-])--[a-z][a-z-]*/g)].map((m) => m[0]))]
    .filter((f) => !builtIn.has(f))
    .sort()

const flagsOf = (options: ReadonlyArray<Help.OptionHelp>) => options.flatMap((o) => o.flag.split(", ")).filter((f) => f.startsWith("--")).sort()

describe("rein's help", () => {
  const subcommands = [...HashMap.toEntries(Command.getSubcommands(command))]

  it("describes each command, and exactly the flags each command parses", () => {
    expect(subcommands.map(([name]) => name).sort()).toEqual(Help.commands.map((c) => c.name).sort())
    for (const [name, descriptor] of subcommands) {
      expect(flagsOf(Help.find(name)!.options), name).toEqual(parsed(descriptor))
    }
  })

  it("describes the global flags", () => {
    const documented = flagsOf(Help.globalOptions)
    for (const flag of ["--url", "--token", "--help", "--version"]) expect(documented).toContain(flag)
  })

  it("rein --help: a usage line, the commands one line each, then every option, then examples with rein", () => {
    const text = Help.mainHelp(noColors, 80)
    const lines = text.split("\n")
    expect(lines.find((l) => l.startsWith("Usage:"))).toBe("Usage: rein [--url URL] [--token TOKEN] <command> [arguments] [options]")
    const commandsAt = lines.indexOf("Commands:")
    const optionsAt = lines.indexOf("Options:")
    const examplesAt = lines.indexOf("Examples:")
    expect(commandsAt).toBeGreaterThan(0)
    expect(optionsAt).toBeGreaterThan(commandsAt)
    expect(examplesAt).toBeGreaterThan(optionsAt)
    // One line per command, nothing else in between.
    expect(lines.slice(commandsAt + 1, optionsAt - 1).map((l) => l.trim().split(" ")[0])).toEqual(Help.commands.map((c) => c.name))
    for (const c of Help.commands) for (const o of c.options) expect(text).toContain(o.flag)
    for (const l of lines.slice(examplesAt + 1).filter((l) => l.startsWith("  $ "))) expect(l).toMatch(/^ {2}\$ (rein |export REIN_)/)
    expect(lines.every((l) => l.length <= 80)).toBe(true)
    expect(text).not.toMatch(/A user-defined piece of text|--wizard|--completions|--log-level|\x1b/)
  })

  it("rein <command> --help: usage, arguments, each option described, examples", () => {
    for (const c of Help.commands) {
      const text = Help.commandHelp(c, noColors, 80)
      expect(text.startsWith(`Usage: rein ${c.name}`), c.name).toBe(true)
      for (const o of c.options) expect(text).toMatch(new RegExp(`^ {2}${o.flag}\\b.* \\S`, "m"))
      expect(text).toContain(`Examples:\n  $ rein ${c.name}`)
      expect(text.split("\n").every((l) => l.length <= 80), c.name).toBe(true)
    }
  })

  it("styles headings only with colours", () => {
    expect(Help.mainHelp(colors, 80)).toContain("\x1b[1mCommands:\x1b[22m")
    expect(Help.mainHelp(noColors, 80)).not.toMatch(/\x1b/)
  })

  it("finds the command and a request for help in a command line", () => {
    expect(scan([])).toEqual({ command: undefined, help: true })
    expect(scan(["--help"])).toEqual({ command: undefined, help: true })
    expect(scan(["--url", "http://x", "sessions", "-h"])).toEqual({ command: "sessions", help: true })
    expect(scan(["help", "watch"])).toEqual({ command: "watch", help: true })
    expect(scan(["--token", "t", "approve", "s1"])).toEqual({ command: "approve", help: false })
    expect(scan(["prompt", "s1", "--", "--help"])).toEqual({ command: "prompt", help: false })
  })
})
