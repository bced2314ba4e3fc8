/**
 * The `rein` commands: their flags and arguments (parsed by @effect/cli; what
 * they mean is Help.ts), each handler a few lines over `Api` and the printers.
 * Help, and every failure, is printed here, once: a failure as one `rein: ...`
 * line on stderr, then the exit code (see Errors.ts).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { type Group, groups } from "../client/sessionState.js"
import type { Artifact } from "../Domain/Artifact.js"
import { randomBytes } from "node:crypto"
import { resolve } from "node:path"
import type { CreatedSession, ReinClient } from "../client/ReinClient.js"
import { strip, type Style } from "./Ansi.js"
import * as Api from "./Api.js"
import { type CliError, describe, exitCode, Rejected, Usage } from "./Errors.js"
import * as Help from "./Help.js"
import { Io } from "./Io.js"
import { listSessions, watchSessions } from "./SessionList.js"
import { listRunners } from "./RunnerList.js"
import { launchWords, requireSession, watchSession } from "./SessionWatch.js"
import { artifactLines, decisionWords, hidden, isPendingPermission, type PermissionKey } from "./Transcript.js"

// What each flag and command means is said once, in Help.ts (the help people read).

const httpUrl = (u: string): boolean => {
  try {
    const parsed = new URL(u)
    return parsed.protocol === "http:" || parsed.protocol === "https:"
  } catch {
    return false
  }
}
const badUrl = (source: string, value: string) =>
  `${source} must be an http:// or https:// URL, such as http://127.0.0.1:4800; got ${JSON.stringify(value)}`
const url = Options.text("url").pipe(
  Options.withFallbackConfig(Config.string("REIN_URL").pipe(Config.withDefault("http://127.0.0.1:4800"))),
  Options.mapEffect((u) =>
    httpUrl(u) ? Effect.succeed(u) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(badUrl("--url (or REIN_URL)", u))))
  )
)
const token = Options.text("token").pipe(Options.withFallbackConfig(Config.string("REIN_TOKEN")), Options.optional)
const json = Options.boolean("json")
const verbose = Options.boolean("verbose")
const project = Options.text("project").pipe(Options.optional)
const id = Args.text({ name: "id" })
const requestId = Args.text({ name: "requestId" }).pipe(Args.optional)

const rein = Command.make("rein", { url, token })

const isGroup = (g: string): g is Group => (groups as ReadonlyArray<string>).includes(g)

const sessions = Command.make(
  "sessions",
  {
    project,
    json,
    watch: Options.boolean("watch"),
    attention: Options.boolean("attention"),
    status: Options.text("status").pipe(
      Options.mapEffect((g) =>
        isGroup(g) ? Effect.succeed(g) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(
          `--status must be one of ${groups.join(", ")}; got ${JSON.stringify(g)}`
        )))
      ),
      Options.optional
    )
  },
  (o) => {
    const options = { project: Option.getOrUndefined(o.project), attention: o.attention, status: Option.getOrUndefined(o.status), json: o.json }
    return o.watch ? watchSessions(options) : listSessions(options)
  }
)

// Starting agents from the hub (issue 20): which agent profile, where, from which base.
const agentOptions = {
  repo: Options.text("repo").pipe(Options.optional),
  base: Options.text("base").pipe(Options.optional),
  runner: Options.text("runner").pipe(Options.optional)
}

/** A created session in words: its state, project, agent, runner and branch; the repository on a second line. */
const createdLines = (s: CreatedSession, st: Style): string => {
  const about = [s.status, ...(s.project !== null ? [`project ${s.project}`] : []), launchWords(s)].filter((x) => x !== "").join(", ")
  const w = s.workspace ?? null
  const repo = w !== null ? st.gray(`  repository ${w.repo}${w.baseRef !== null ? `, from ${w.baseRef}` : ""}`) + "\n" : ""
  return `${st.green("created")} ${st.bold(s.id)} (${about})\n${repo}`
}

/** The session, created with an agent when one is asked for; `--repo` as an absolute path (so `--repo .` works). */
const createWith = (id: string, o: {
  readonly project?: string | undefined
  readonly agent: string | undefined
  readonly repo: Option.Option<string>
  readonly base: Option.Option<string>
  readonly runner: Option.Option<string>
  readonly prompt: string | undefined
}) =>
  Effect.gen(function*() {
    const api = yield* Api.Api
    const io = yield* Io
    return yield* api.call((c) =>
      c.createSession(id, {
        project: o.project,
        agent: o.agent,
        repo: Option.getOrUndefined(Option.map(o.repo, (r) => resolve(io.cwd, r))),
        baseRef: Option.getOrUndefined(o.base),
        runner: Option.getOrUndefined(o.runner),
        prompt: o.prompt
      })
    )
  })

const create = Command.make(
  "create",
  { id, project, json, agent: Options.text("agent").pipe(Options.optional), prompt: Options.text("prompt").pipe(Options.optional), ...agentOptions },
  (o) =>
    Effect.gen(function*() {
      const io = yield* Io
      if (Option.isNone(o.agent) && [o.repo, o.base, o.runner, o.prompt].some(Option.isSome)) {
        return yield* Effect.fail(new Usage({ message: "--repo, --base, --prompt and --runner say how to start an agent: they need --agent PROFILE" }))
      }
      const s = yield* createWith(o.id, { ...o, project: Option.getOrUndefined(o.project), agent: Option.getOrUndefined(o.agent), prompt: Option.getOrUndefined(o.prompt) })
      if (o.json) return io.out(JSON.stringify(s) + "\n")
      const st = io.style
      io.out(createdLines(s, st))
      // A runner's agent gets the sandbox token from the hub; only a sandbox started by hand needs it.
      if (s.sandboxToken !== undefined && (s.agent ?? null) === null) {
        io.out(`sandbox token: ${s.sandboxToken}\n`)
        io.err(st.gray("rein: the sandbox token is shown only once; give it to this session's sandbox\n"))
      }
    })
)

/** A session id made up from a prompt: its first words as a slug, and a short random part. */
export const idFromPrompt = (prompt: string, random = randomBytes(4).readUInt32BE(0)): string => {
  const words = prompt.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "").split(/[^a-z0-9]+/).filter((w) => w !== "")
  let slug = ""
  for (const w of words.slice(0, 5)) {
    const next = slug === "" ? w.slice(0, 40) : `${slug}-${w}`
    if (next.length > 40) break
    slug = next
  }
  return `${slug === "" ? "session" : slug}-${random.toString(36).padStart(4, "0").slice(-4)}`
}

const isTaken = (e: CliError) => e._tag === "Rejected" && e.status === 409 && e.code === "conflict" && /already exists/.test(e.message)

/** What to do next with a session whose agent keeps running. */
const keepsRunning = (id: string) => `rein: ${id}'s agent keeps running: rein watch ${id} follows it, rein stop ${id} stops it\n`

const runAgent = Command.make(
  "run",
  {
    agent: Args.text({ name: "agent" }),
    text: Args.text({ name: "prompt" }).pipe(Args.atLeast(1)),
    id: Options.text("id").pipe(Options.optional),
    ...agentOptions
  },
  (o) =>
    Effect.gen(function*() {
      const io = yield* Io
      const text = o.text.length === 1 && o.text[0] === "-" ? (yield* readStdin).replace(/\n$/, "") : o.text.join(" ")
      if (text.trim() === "") return yield* Effect.fail(new Usage({ message: "the prompt is empty" }))
      const options = { ...o, agent: o.agent, prompt: text }
      // A made-up id that happens to be taken: another one.
      const attempt = (n: number): Effect.Effect<CreatedSession, CliError, Api.Api | Io> =>
        Option.isSome(o.id)
          ? createWith(o.id.value, options)
          : Effect.catchIf(createWith(idFromPrompt(text), options), (e) => n < 3 && isTaken(e), () => attempt(n + 1))
      const s = yield* attempt(1)
      if (!io.tty) io.out(createdLines(s, io.style))
      const ended = yield* watchSession(s.id, { json: false, verbose: false, untilTurnEnds: true }).pipe(
        Effect.onInterrupt(() => Effect.sync(() => io.err(keepsRunning(s.id))))
      )
      if (ended === "stopped") io.err(keepsRunning(s.id))
      else if (ended === "turnEnded") {
        io.err(io.style.gray(`rein: ${s.id} waits for you: rein prompt ${s.id} <text> goes on, rein stop ${s.id} stops its agent\n`))
      }
    })
)

/** A session without a runner's agent: said plainly (the server's 409 `conflict` names it). */
const agentCall = (id: string, f: (c: ReinClient) => Promise<void>) =>
  Effect.flatMap(Api.Api, (api) =>
    api.call(f).pipe(
      Effect.mapError((e) =>
        e._tag === "Rejected" && e.code === "conflict" && /has no agent/.test(e.message)
          ? new Rejected({ ...e, message: `session ${id} has no agent a runner starts: its sandbox connects by itself` })
          : e
      )
    ))

const stop = Command.make("stop", { id }, (o) =>
  Effect.gen(function*() {
    const io = yield* Io
    yield* agentCall(o.id, (c) => c.stopSession(o.id))
    io.out(`stopping ${o.id}'s agent; its worktree and transcript stay (rein start ${o.id} starts it again)\n`)
  }))

const start = Command.make("start", { id }, (o) =>
  Effect.gen(function*() {
    const io = yield* Io
    yield* agentCall(o.id, (c) => c.startSession(o.id))
    io.out(`starting ${o.id}'s agent in its worktree (rein watch ${o.id} follows it)\n`)
  }))

const runners = Command.make("runners", { json }, (o) => listRunners({ json: o.json }))

const rm = Command.make("rm", { id }, (o) =>
  Effect.gen(function*() {
    const api = yield* Api.Api
    const io = yield* Io
    yield* api.call((c) => c.deleteSession(o.id))
    io.out(`removed ${o.id}\n`)
  }))

/** Most artifacts the server sends in one page or tail. */
const pageMax = 1000

/** An optional integer flag within `min`..`max`, refused with a message naming it. */
const bounded = (name: string, min: number, max: number, what: string) =>
  Options.integer(name).pipe(
    Options.mapEffect((n) =>
      n >= min && n <= max ? Effect.succeed(n) : Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} must be ${what}; got ${n}`)))
    ),
    Options.optional
  )

const watch = Command.make(
  "watch",
  { id, json, verbose, tail: bounded("tail", 0, pageMax, `0 (everything) to ${pageMax}`) },
  (o) =>
    Effect.gen(function*() {
      const io = yield* Io
      // A screenful by default: the terminal's rows, or 50 when not on one.
      const tail = Option.getOrElse(o.tail, () => Math.min(pageMax, Math.max(1, io.tty ? io.stdout.rows || 50 : 50)))
      return yield* watchSession(o.id, { json: o.json, verbose: o.verbose, ...(tail > 0 && { tail }) })
    })
)

const readStdin = Effect.flatMap(Io, (io) =>
  Effect.async<string>((resume) => {
    let text = ""
    io.stdin.setEncoding("utf8")
    io.stdin.on("data", (d: string) => (text += d))
    io.stdin.on("end", () => resume(Effect.succeed(text)))
    io.stdin.resume()
  }))

const prompt = Command.make(
  "prompt",
  { id, text: Args.text({ name: "text" }).pipe(Args.atLeast(1)) },
  (o) =>
    Effect.gen(function*() {
      const api = yield* Api.Api
      const text = o.text.length === 1 && o.text[0] === "-" ? (yield* readStdin).replace(/\n$/, "") : o.text.join(" ")
      if (text.trim() === "") return yield* Effect.fail(new Usage({ message: "the prompt is empty" }))
      yield* api.call((c) => c.prompt(o.id, text)).pipe(Effect.mapError(Api.noSandbox(o.id)))
    })
)

const abort = Command.make("abort", { id }, (o) =>
  Effect.flatMap(Api.Api, (api) => api.call((c) => c.abort(o.id)).pipe(Effect.mapError(Api.noSandbox(o.id)))))

/** The request to answer: the named one, or the only pending one. */
const pendingRequest = (id: string, named: Option.Option<string>) =>
  Effect.gen(function*() {
    if (Option.isSome(named)) return named.value
    const api = yield* Api.Api
    yield* requireSession(id)
    const pending = (yield* api.call((c) => c.artifacts(id))).filter(isPendingPermission)
    if (pending.length === 0) return yield* Effect.fail(new Usage({ message: `no permission request is pending in ${id}` }))
    if (pending.length > 1) {
      return yield* Effect.fail(
        new Usage({
          message: `${pending.length} permission requests are pending in ${id} (${pending.map((p) => String(p.requestId)).join(", ")}); name one`
        })
      )
    }
    return String(pending[0]!.requestId)
  })

/**
 * Sends the reply; when the request was answered already (the server's 409 says "was already
 * answered"), the answer it has, in words: a second answer changes nothing and is not an error.
 */
const answer = (id: string, requestId: string, reply: PermissionKey["reply"]) =>
  Effect.flatMap(Api.Api, (api) =>
    api.call((c) => c.permissionReply(id, requestId, "decision" in reply ? reply.decision : reply)).pipe(
      Effect.as(undefined),
      Effect.catchIf(
        (e) => e._tag === "Rejected" && e.status === 409 && e.code === "conflict" && /already answered/.test(e.message),
        () =>
          Effect.map(api.call((c) => c.artifacts(id)), (list) => {
            const a = list.find((a) => a.kind === "permission" && a.requestId === requestId)
            return a === undefined ? "" : decisionWords(a)
          })
      ),
      Effect.mapError(Api.noSandbox(id))
    ))

/** What a second answer prints. */
const alreadyAnswered = (requestId: string, decision: string) =>
  `${requestId} was already answered${decision === "" ? "" : ` (${decision})`}; nothing changed\n`

const approve = Command.make(
  "approve",
  {
    id,
    requestId,
    always: Options.boolean("always"),
    option: Options.text("option").pipe(Options.optional)
  },
  (o) =>
    Effect.gen(function*() {
      if (o.always && Option.isSome(o.option)) {
        return yield* Effect.fail(new Usage({ message: "--always and --option cannot be combined: the option says what it allows" }))
      }
      const io = yield* Io
      const rid = yield* pendingRequest(o.id, o.requestId)
      const answered = yield* answer(o.id, rid, Option.isSome(o.option) ? { optionId: o.option.value } : { decision: o.always ? "allow_always" : "allow_once" })
      if (answered !== undefined) return io.out(alreadyAnswered(rid, answered))
      io.out(`${Option.isSome(o.option) ? `answered ${rid} with ${o.option.value}` : o.always ? `always allowed ${rid}` : `allowed ${rid} once`}\n`)
    })
)

const reject = Command.make("reject", { id, requestId }, (o) =>
  Effect.gen(function*() {
    const io = yield* Io
    const rid = yield* pendingRequest(o.id, o.requestId)
    const answered = yield* answer(o.id, rid, { decision: "reject" })
    if (answered !== undefined) return io.out(alreadyAnswered(rid, answered))
    io.out(`rejected ${rid}\n`)
  }))

const artifacts = Command.make(
  "artifacts",
  {
    id,
    json,
    verbose,
    before: bounded("before", 1, Number.MAX_SAFE_INTEGER, "a seq (1 or more)"),
    after: bounded("after", 1, Number.MAX_SAFE_INTEGER, "a seq (1 or more)"),
    limit: bounded("limit", 1, pageMax, `1 to ${pageMax}`)
  },
  (o) =>
  Effect.gen(function*() {
    const api = yield* Api.Api
    const io = yield* Io
    if (Option.isSome(o.before) && Option.isSome(o.after)) {
      return yield* Effect.fail(new Usage({ message: "--before and --after cannot be combined: one page is before a seq, or after it" }))
    }
    const paged = [o.before, o.after, o.limit].some(Option.isSome)
    const page = paged
      ? yield* api.call((c) =>
        c.artifactsPage(o.id, { before: Option.getOrUndefined(o.before), after: Option.getOrUndefined(o.after), limit: Option.getOrUndefined(o.limit) })
      )
      : undefined
    const list: ReadonlyArray<Artifact> = page?.artifacts ?? (yield* api.call((c) => c.artifacts(o.id)))
    if (o.json) io.out(list.map((a) => JSON.stringify(a) + "\n").join(""))
    else {
      const t = { style: io.style, width: io.stdout.columns || 100, markdown: io.tty, plain: !io.tty, fullChanges: true }
      io.out(list.filter((a) => o.verbose || !hidden(a)).map((a) => artifactLines(a, t).join("\n") + "\n").join(""))
    }
    // Where the next page starts, on stderr: stdout stays the transcript (or JSON lines).
    if (page?.more === true && list.length > 0) {
      const next = Option.isSome(o.after) ? `--after ${list[list.length - 1]!.seq}` : `--before ${list[0]!.seq}`
      const limit = Option.match(o.limit, { onNone: () => "", onSome: (n) => ` --limit ${n}` })
      io.err(io.style.gray(`rein: more ${Option.isSome(o.after) ? "after" : "before"} this page: rein artifacts ${o.id} ${next}${limit}`) + "\n")
    }
  }))

const reinCommand = rein.pipe(
  Command.withSubcommands([sessions, create, runAgent, rm, watch, prompt, abort, approve, reject, artifacts, stop, start, runners]),
  Command.provide((config) => Api.layer({ url: config.url, token: Option.getOrUndefined(config.token) }))
)

/** The command tree, for tests that compare the flags it parses with the help. */
export const command = reinCommand

/** The exit code a failure ends with; printed already. */
export class Exited {
  readonly _tag = "Exited"
  constructor(readonly code: number) {}
}

/** The command line's command (the first word that is not a global option or its value), and whether help was asked for. */
export const scan = (args: ReadonlyArray<string>): { readonly command: string | undefined; readonly help: boolean } => {
  let command: string | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === "--") break
    if (a === "--help" || a === "-h") return { command, help: true }
    if (command !== undefined) continue
    if (a === "--url" || a === "--token" || a === "--log-level") i++
    else if (!a.startsWith("-")) {
      if (a === "help") return { command: args[i + 1], help: true }
      command = a
    }
  }
  return { command, help: args.length === 0 }
}

/** The value given to `--url` on the command line, if any. */
const urlFlag = (args: ReadonlyArray<string>): string | undefined => {
  for (let i = 0; i < args.length && args[i] !== "--"; i++) {
    if (args[i] === "--url") return args[i + 1] ?? ""
    if (args[i]!.startsWith("--url=")) return args[i]!.slice("--url=".length)
  }
  return undefined
}

const isCliError = (e: unknown): e is CliError =>
  typeof e === "object" && e !== null && "_tag" in e && ["Rejected", "Unreachable", "Usage"].includes(e._tag as string)

/** What @effect/cli says of a command line it cannot parse, as one `rein:` line with where to look. */
const usageMessage = (e: ValidationError.ValidationError, command: string | undefined): string => {
  const text = strip("error" in e ? HelpDoc.toAnsiText(e.error) : "").trim().replace(/\s*\n\s*/g, "; ")
  const said = text === "" ? "invalid command line" : text.charAt(0).toLowerCase() + text.slice(1)
  const known = command !== undefined && Help.find(command) !== undefined
  return `${said} (see rein ${known ? `${command} ` : ""}--help)`
}

/**
 * Runs `rein` on argv. Help is ours (Help.ts), printed before parsing; @effect/cli's own messages
 * are kept off the console and said once here, like every CliError: `rein: ...` on stderr, then
 * `Exited` with the exit code.
 */
export const run = (argv: ReadonlyArray<string>, version: string) =>
  Effect.gen(function*() {
    const io = yield* Io
    const args = argv.slice(2)
    const { command, help } = scan(args)
    const fail = (message: string, code = 1) =>
      Effect.zipRight(Effect.sync(() => io.err(`rein: ${message}\n`)), Effect.fail(new Exited(code)))
    if (help) {
      const width = Help.helpWidth(io.tty ? io.stdout.columns : undefined)
      if (command === undefined) return io.out(Help.mainHelp(io.style, width))
      const c = Help.find(command)
      if (c === undefined) return yield* fail(`${command} is not a rein command (see rein --help)`)
      return io.out(Help.commandHelp(c, io.style, width))
    }
    if (command === undefined && args.includes("--version")) return io.out(`${version}\n`)
    if (command !== undefined && Help.find(command) === undefined) return yield* fail(`${command} is not a rein command (see rein --help)`)
    // Say which setting holds a bad URL: the flag, else the environment.
    const given = urlFlag(args)
    if (given !== undefined && !httpUrl(given)) return yield* fail(badUrl("--url", given))
    if (given === undefined && io.env.REIN_URL !== undefined && io.env.REIN_URL !== "" && !httpUrl(io.env.REIN_URL)) {
      return yield* fail(badUrl("REIN_URL", io.env.REIN_URL))
    }
    const quiet = yield* Console.consoleWith((c) => Effect.succeed({ ...c, error: () => Effect.void }))
    yield* Command.run(reinCommand, { name: "rein", version })(argv).pipe(
      Effect.withConsole(quiet),
      Effect.catchIf(isCliError, (e) => fail(describe(e), exitCode(e))),
      Effect.catchIf(ValidationError.isValidationError, (e) => fail(usageMessage(e, command)))
    )
  })

/** For `runMain`: the exit code of the program's end (every expected failure was printed already). */
export const teardown = (exit: Exit.Exit<unknown, unknown>, onExit: (code: number) => void): void => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof Exited) return onExit(failure.value.code)
  process.stderr.write(`rein: internal error (please report it): ${Cause.pretty(exit.cause)}\n`)
  onExit(1)
}
