/**
 * `rein --help` and `rein <command> --help`, written for people (issue 21): a usage line, the
 * commands one line each, every option described, a few examples. Plain text unless stdout is a
 * terminal with colour (the caller's `Style`). The flags themselves are parsed by @effect/cli in
 * Commands.ts; test/cli-help.test.ts checks that every flag it parses is described here.
 */
import { type Style } from "./Ansi.js"

export interface OptionHelp {
  /** `--json`, `--status` */
  readonly flag: string
  /** The value it takes, `URL`, `GROUP`; none for a switch. */
  readonly value?: string
  readonly text: string
}

export interface CommandHelp {
  readonly name: string
  /** What follows the name in the usage line, options aside: `<id> [requestId]`. */
  readonly args: string
  /** One line, for the command list. */
  readonly summary: string
  /** The paragraphs of `rein <command> --help`. */
  readonly description: ReadonlyArray<string>
  readonly arguments: ReadonlyArray<readonly [string, string]>
  readonly options: ReadonlyArray<OptionHelp>
  readonly examples: ReadonlyArray<readonly [string, string]>
}

export const globalOptions: ReadonlyArray<OptionHelp> = [
  { flag: "--url", value: "URL", text: "the Rein server (env REIN_URL; default http://127.0.0.1:4800)" },
  { flag: "--token", value: "TOKEN", text: "the server's token, if it has one (env REIN_TOKEN)" },
  { flag: "-h, --help", text: "this help; `rein help <command>` for one command" },
  { flag: "--version", text: "print rein's version" }
]

const json: OptionHelp = { flag: "--json", text: "JSON, one object per line, for scripts and jq" }
const verbose: OptionHelp = { flag: "--verbose", text: "also the agent's raw protocol events (custom acp.*)" }
const idArg = ["<id>", "the session id"] as const
const repo: OptionHelp = { flag: "--repo", value: "PATH", text: "the repository's path (default: the runner's)" }
const base: OptionHelp = { flag: "--base", value: "REF", text: "the worktree's base (default: HEAD)" }
const runner: OptionHelp = { flag: "--runner", value: "RUNNER", text: "the runner, by id or name (default: any)" }
const requestArg = ["[requestId]", "the permission request; default: the one pending request"] as const

export const commands: ReadonlyArray<CommandHelp> = [
  {
    name: "sessions",
    args: "",
    summary: "List sessions, those that need you first",
    description: [
      "One line per session: ! when it needs you, its id, its state (needs approval, error, working, starting, " +
        "stopped, done, disconnected), project, the agent a runner started for it (and its branch, when the line " +
        "has room), time since its last activity, cost, and summary. Sessions that " +
        "need you come first, then those working, then the rest, most recently active first."
    ],
    arguments: [],
    options: [
      { flag: "--status", value: "GROUP", text: "only one group: needs-you, working, idle or disconnected" },
      { flag: "--attention", text: "only sessions that need you, as the server counts them" },
      { flag: "--project", value: "NAME", text: "only this project's sessions" },
      { flag: "--watch", text: "keep the list live until Ctrl-C (piped: + created, ~ changed, - gone)" },
      json
    ],
    examples: [
      ["rein sessions --status needs-you", "what is waiting for you"],
      ["rein sessions --watch", "a live list"]
    ]
  },
  {
    name: "create",
    args: "<id>",
    summary: "Create a session; with --agent, a runner starts one",
    description: [
      "Creates a session. With --agent, a runner of the hub starts that agent profile for it in a git worktree " +
        "of the repository, on a new branch rein/<id>, and sends it --prompt first; the record then names the " +
        "agent, the runner and the branch. Without, its sandbox (e.g. rein-sandbox running an agent) connects to " +
        "it by id.",
      "--repo is a path (. is this directory), one of the runner's repositories (rein runners lists them); without " +
        "it, the runner's first. --base is a commit, branch or tag (default: the repository's HEAD). --runner: by id " +
        "or name; without it, the least busy runner that can.",
      "No runner that can start it (none online, none offering the agent, none serving the repository, all full): " +
        "the server's message says what is missing, and nothing is created."
    ],
    arguments: [["<id>", "the new session's id: letters, digits, . _ -"]],
    options: [
      { flag: "--project", value: "NAME", text: "the session's project" },
      { flag: "--agent", value: "PROFILE", text: "the agent profile a runner starts" },
      repo,
      base,
      { flag: "--prompt", value: "TEXT", text: "the agent's first prompt" },
      runner,
      json
    ],
    examples: [
      ["rein create demo --project web", "its sandbox connects by itself"],
      ["rein create fix-1 --agent claude --repo . --prompt \"fix the login bug\"", ""]
    ]
  },
  {
    name: "run",
    args: "<agent> <prompt...>",
    summary: "Start an agent on a prompt, watch its first turn",
    description: [
      "Creates a session whose agent a runner starts (as create --agent does), with the prompt as its first, then " +
        "follows it as watch does until that turn ends. Ctrl-C stops watching; the agent keeps running " +
        "(rein stop <id> stops it). The session's id is made up from the prompt's first words and a short random " +
        "part, unless --id gives one.",
      "Exits 0 when the turn ends, 1 when the agent fails or goes away first."
    ],
    arguments: [["<agent>", "the agent profile (rein runners lists them)"], ["<prompt...>", "the first prompt; - reads it from stdin"]],
    options: [{ flag: "--id", value: "ID", text: "the session's id (default: from the prompt)" }, repo, base, runner],
    examples: [["rein run demo --repo . \"fix the login bug\"", ""], ["rein run claude --base main - < task.md", ""]]
  },
  {
    name: "rm",
    args: "<id>",
    summary: "Remove a session",
    description: ["Removes the session and its transcript; watchers and the sandbox are told it is gone."],
    arguments: [idArg],
    options: [],
    examples: [["rein rm demo", ""]]
  },
  {
    name: "watch",
    args: "<id>",
    summary: "Follow a session live; answer its approvals",
    description: [
      "Prints the transcript, then follows it until the session is removed (exit 0) or Ctrl-C; resumes after a " +
        "reconnect without printing anything twice. On a terminal the agent's text is rendered Markdown, a running " +
        "tool call and the turn's plan are redrawn in place, and a pending permission is answered with y (allow once), " +
        "a (always), n (reject) or an option's number. Piped, the same transcript as plain text.",
      "A session a runner started: its agent, runner and branch head the watch, and its worktree's changes against " +
        "the base show as one line (files changed, +added -removed), renewed after each turn; rein artifacts prints " +
        "the whole diff.",
      "A long session starts from its last screenful of artifacts (the terminal's rows; 50 when not on one), with " +
        "the older ones still changing (a running tool call, a pending permission, the turn's plan); a line says " +
        "where the rest starts (rein artifacts <id> --before N prints it). --tail 0 prints everything."
    ],
    arguments: [idArg],
    options: [
      { flag: "--tail", value: "N", text: "the last N artifacts first (0: all; default a screenful)" },
      verbose,
      json
    ],
    examples: [["rein watch demo", ""], ["rein watch demo --tail 0", "the whole transcript, then live"], ["rein watch demo --json | jq -c .", ""]]
  },
  {
    name: "prompt",
    args: "<id> <text...>",
    summary: "Send a prompt to the session's agent",
    description: ["Sends the words as one prompt; `-` reads the prompt from stdin."],
    arguments: [idArg, ["<text...>", "the prompt; - reads it from stdin"]],
    options: [],
    examples: [["rein prompt demo \"add a health check\"", ""], ["rein prompt demo - < task.md", ""]]
  },
  {
    name: "abort",
    args: "<id>",
    summary: "Ask the agent to stop its turn",
    description: ["Asks the session's agent to stop its turn; the transcript then says \"turn stopped\"."],
    arguments: [idArg],
    options: [],
    examples: [["rein abort demo", ""]]
  },
  {
    name: "approve",
    args: "<id> [requestId]",
    summary: "Allow a pending permission request",
    description: ["Answers the one pending request, or the one named. A request already answered is said, and is not an error."],
    arguments: [idArg, requestArg],
    options: [
      { flag: "--always", text: "allow always, not just once" },
      { flag: "--option", value: "OPTION_ID", text: "answer with this option of the request (its optionId)" }
    ],
    examples: [["rein approve demo", "the one pending request, once"], ["rein approve demo r1 --always", ""]]
  },
  {
    name: "reject",
    args: "<id> [requestId]",
    summary: "Reject a pending permission request",
    description: ["Rejects the one pending request, or the one named."],
    arguments: [idArg, requestArg],
    options: [],
    examples: [["rein reject demo", ""]]
  },
  {
    name: "artifacts",
    args: "<id>",
    summary: "Print the session's transcript so far",
    description: [
      "Prints every artifact of the session once (the transcript), as `watch` shows it, and exits; the worktree's " +
        "changes (a session a runner started) as their whole diff, where watch shows one line.",
      "With --before, --after or --limit, one page: the last N artifacts before a seq (or of the session), or the " +
        "first N after one; when more lie beyond it, a line on stderr says how to print the next page."
    ],
    arguments: [idArg],
    options: [
      { flag: "--before", value: "SEQ", text: "the page just before artifact SEQ" },
      { flag: "--after", value: "SEQ", text: "the page just after artifact SEQ" },
      { flag: "--limit", value: "N", text: "N per page, up to 1000 (default 200); alone: the last N" },
      verbose,
      json
    ],
    examples: [
      ["rein artifacts demo --json | jq -c 'select(.kind == \"file_change\") | .path'", ""],
      ["rein artifacts demo --limit 20", "the last 20"],
      ["rein artifacts demo --before 120 --limit 50", "the 50 before #120"]
    ]
  },
  {
    name: "stop",
    args: "<id>",
    summary: "Stop a runner's agent; its worktree stays",
    description: [
      "Asks the session's runner to stop its agent and everything the agent started. The session, its transcript " +
        "and its worktree stay; start starts the agent again. Only for a session created with an agent."
    ],
    arguments: [idArg],
    options: [],
    examples: [["rein stop demo", ""]]
  },
  {
    name: "start",
    args: "<id>",
    summary: "Start a runner's agent again in its worktree",
    description: [
      "Asks the session's runner to start its agent again in the same worktree, after stop or after it died. The " +
        "agent begins a new conversation; the transcript says so. A running agent is not started twice."
    ],
    arguments: [idArg],
    options: [],
    examples: [["rein start demo", ""]]
  },
  {
    name: "runners",
    args: "",
    summary: "List the runners that start agents",
    description: [
      "One line per runner: its id, name, whether it is online, the agent profiles it offers, the sessions it runs " +
        "of its maximum, the free disk where its worktrees go, and its repositories. rein-server runs one for its " +
        "own machine (embedded) unless started with --no-runner; rein-runner adds others."
    ],
    arguments: [],
    options: [json],
    examples: [["rein runners", ""], ["rein runners --json | jq -r '.agents[].id'", ""]]
  }
]

export const find = (name: string): CommandHelp | undefined => commands.find((c) => c.name === name)

const optionLabel = (o: OptionHelp) => (o.value === undefined ? o.flag : `${o.flag} ${o.value}`)

/** Lines of at most `width` characters, broken between words. */
export const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else line = line === "" ? word : `${line} ${word}`
  }
  return [...lines, line]
}

/** Help is wrapped to the terminal, between 60 and 100 columns; piped, to 80. */
export const helpWidth = (columns: number | undefined): number => Math.max(60, Math.min(100, columns || 80))

/** Two columns, the left padded to the widest entry (at most 26 wide), the right wrapped under itself. */
const columns = (rows: ReadonlyArray<readonly [string, string]>, s: Style, total: number): Array<string> => {
  const width = Math.min(26, Math.max(...rows.map(([l]) => l.length)))
  const indent = " ".repeat(width + 4)
  return rows.flatMap(([l, r]) => {
    const text = wrap(r, total - width - 4)
    const first = l.length > width ? [`  ${s.bold(l)}`, indent + text[0]] : [`  ${s.bold(l.padEnd(width))}  ${text[0]}`]
    return [...first, ...text.slice(1).map((t) => indent + t)]
  })
}

/** `$ rein ...` lines, their notes aligned after the commands. */
const examples = (list: ReadonlyArray<readonly [string, string]>, s: Style): Array<string> => {
  const width = Math.max(...list.filter(([, note]) => note !== "").map(([cmd]) => cmd.length), 0)
  return list.map(([cmd, note]) => (note === "" ? `  $ ${cmd}` : `  $ ${cmd.padEnd(width)}  ${s.gray(`# ${note}`)}`))
}

const heading = (text: string, s: Style) => s.bold(text)

/** `rein --help`. */
export const mainHelp = (s: Style, width: number): string => {
  // Each command's flags, once each: what a flag does in each command that takes it.
  const flags = new Map<string, { label: string; uses: Array<readonly [string, string]> }>()
  for (const c of commands) {
    for (const o of c.options) {
      const known = flags.get(o.flag) ?? { label: optionLabel(o), uses: [] }
      known.uses.push([c.name, o.text])
      flags.set(o.flag, known)
    }
  }
  const flagText = (uses: ReadonlyArray<readonly [string, string]>) =>
    new Set(uses.map(([, text]) => text)).size === 1
      ? `${uses.map(([name]) => name).join(", ")}: ${uses[0]![1]}`
      : uses.map(([name, text]) => `${name}: ${text}`).join("; ")
  return [
    "rein: watch and steer the coding agents of a Rein server from the terminal.",
    "",
    `${heading("Usage:", s)} rein [--url URL] [--token TOKEN] <command> [arguments] [options]`,
    "",
    heading("Commands:", s),
    ...columns(commands.map((c) => [`${c.name}${c.args === "" ? "" : " " + c.args}`, c.summary]), s, width),
    "",
    heading("Options:", s),
    ...columns(globalOptions.map((o) => [optionLabel(o), o.text]), s, width),
    "",
    heading("Command options:", s),
    ...columns([...flags.values()].map((f) => [f.label, flagText(f.uses)]), s, width),
    "",
    heading("Examples:", s),
    ...examples([
      ["export REIN_URL=http://127.0.0.1:4800", ""],
      ["rein run demo --repo . \"fix the login bug\"", ""],
      ["rein create demo --project web", ""],
      ["rein prompt demo \"add a health check\"", ""],
      ["rein watch demo", "follow it; y, a, n answer a permission"],
      ["rein sessions --status needs-you", "what waits for you"],
      ["rein approve demo", "the one pending request"]
    ], s),
    "",
    ...wrap("Exit codes: 0 ok, 1 the server said no or the command line is wrong, 2 the server cannot be reached.", width),
    "Environment: REIN_URL, REIN_TOKEN; NO_COLOR turns colour off.",
    "Run `rein <command> --help` for a command's arguments and options.",
    ""
  ].join("\n")
}

/** `rein <command> --help`. */
export const commandHelp = (c: CommandHelp, s: Style, width: number): string => {
  // The usage line, continued under the command when it does not fit.
  const usage = [`rein ${c.name}${c.args === "" ? "" : " " + c.args}`]
  for (const o of c.options) {
    const part = `[${optionLabel(o)}]`
    if (7 + usage[usage.length - 1]!.length + 1 + part.length > width) usage.push(" ".repeat(`rein ${c.name}`.length) + " " + part)
    else usage[usage.length - 1] += " " + part
  }
  return [
    `${heading("Usage:", s)} ${usage.join("\n       ")}`,
    "",
    ...c.description.flatMap((p, i) => [...(i > 0 ? [""] : []), ...wrap(p, width)]),
    "",
    ...(c.arguments.length > 0 ? [heading("Arguments:", s), ...columns(c.arguments, s, width), ""] : []),
    ...(c.options.length > 0 ? [heading("Options:", s), ...columns(c.options.map((o) => [optionLabel(o), o.text]), s, width), ""] : []),
    heading("Global options:", s),
    ...columns(globalOptions.slice(0, 2).map((o) => [optionLabel(o), o.text]), s, width),
    "",
    heading("Examples:", s),
    ...examples(c.examples, s),
    ""
  ].join("\n")
}
