/**
 * The `rein` commands: their flags, arguments and help, each handler a few
 * lines over `Api` and the printers. Failures are printed once, here, and
 * become the exit code (see Errors.ts).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { Artifact } from "../Domain/Artifact.js"
import * as Api from "./Api.js"
import { type CliError, describe, exitCode, Usage } from "./Errors.js"
import { Io } from "./Io.js"
import { listSessions, watchSessions } from "./SessionList.js"
import { requireSession, watchSession } from "./SessionWatch.js"
import { artifactLines, isPendingPermission, type PermissionKey } from "./Transcript.js"

const url = Options.text("url").pipe(
  Options.withDescription("the Rein server (default http://127.0.0.1:4800, env REIN_URL)"),
  Options.withFallbackConfig(Config.string("REIN_URL").pipe(Config.withDefault("http://127.0.0.1:4800"))),
  Options.filterMap((u) => {
    try {
      const parsed = new URL(u)
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? Option.some(u) : Option.none()
    } catch {
      return Option.none()
    }
  }, "url must be an http:// or https:// URL")
)
const token = Options.text("token").pipe(
  Options.withDescription("bearer token, when the server runs with --token (env REIN_TOKEN)"),
  Options.withFallbackConfig(Config.string("REIN_TOKEN")),
  Options.optional
)
const json = Options.boolean("json").pipe(Options.withDescription("one JSON object per line, for scripts and jq"))
const project = Options.text("project").pipe(Options.withDescription("only this project's sessions"), Options.optional)
const id = Args.text({ name: "id" }).pipe(Args.withDescription("the session id"))
const requestId = Args.text({ name: "requestId" }).pipe(
  Args.withDescription("the permission request; default: the one pending request"),
  Args.optional
)

const rein = Command.make("rein", { url, token }).pipe(
  Command.withDescription("Drive Rein sessions from the terminal: list, create, watch, prompt, approve.")
)

const sessions = Command.make(
  "sessions",
  {
    project,
    json,
    watch: Options.boolean("watch").pipe(Options.withDescription("keep the list live until Ctrl-C")),
    attention: Options.boolean("attention").pipe(
      Options.withDescription("only sessions that need you: a pending approval, or a last turn that ended in an error")
    )
  },
  (o) => {
    const options = { project: Option.getOrUndefined(o.project), attention: o.attention, json: o.json }
    return o.watch ? watchSessions(options) : listSessions(options)
  }
).pipe(Command.withDescription("List sessions: id, status, project, age, cost, summary; ! marks one waiting for an approval"))

const create = Command.make(
  "create",
  { id, project: Options.text("project").pipe(Options.withDescription("the session's project"), Options.optional), json },
  (o) =>
    Effect.gen(function*() {
      const api = yield* Api.Api
      const io = yield* Io
      const s = yield* api.call((c) => c.createSession(o.id, { project: Option.getOrUndefined(o.project) }))
      if (o.json) return io.out(JSON.stringify(s) + "\n")
      const st = io.style
      io.out(`${st.green("created")} ${st.bold(s.id)} (${s.status}${s.project !== null ? `, project ${s.project}` : ""})\n`)
      if (s.sandboxToken !== undefined) {
        io.out(`sandbox token: ${s.sandboxToken}\n`)
        io.err(st.gray("rein: the sandbox token is shown only once; give it to this session's sandbox\n"))
      }
    })
).pipe(Command.withDescription("Create a session; prints it, and its sandbox token when the server issues one"))

const rm = Command.make("rm", { id }, (o) =>
  Effect.gen(function*() {
    const api = yield* Api.Api
    const io = yield* Io
    yield* api.call((c) => c.deleteSession(o.id))
    io.out(`removed ${o.id}\n`)
  })).pipe(Command.withDescription("Remove a session (its streams and its sandbox's command stream end)"))

const watch = Command.make("watch", { id, json }, (o) => watchSession(o.id, { json: o.json })).pipe(
  Command.withDescription(
    "The session's transcript, then live until it is removed (exit 0) or Ctrl-C; resumes after a reconnect. " +
      "On a terminal, answer a pending permission with y (allow once), a (always), n (reject) or an option's number"
  )
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
  { id, text: Args.text({ name: "text" }).pipe(Args.withDescription("the prompt; - reads it from stdin"), Args.atLeast(1)) },
  (o) =>
    Effect.gen(function*() {
      const api = yield* Api.Api
      const text = o.text.length === 1 && o.text[0] === "-" ? (yield* readStdin).replace(/\n$/, "") : o.text.join(" ")
      if (text.trim() === "") return yield* Effect.fail(new Usage({ message: "the prompt is empty" }))
      yield* api.call((c) => c.prompt(o.id, text)).pipe(Effect.mapError(Api.noSandbox(o.id)))
    })
).pipe(Command.withDescription("Send a prompt to the session's agent"))

const abort = Command.make("abort", { id }, (o) =>
  Effect.flatMap(Api.Api, (api) => api.call((c) => c.abort(o.id)).pipe(Effect.mapError(Api.noSandbox(o.id))))).pipe(
    Command.withDescription("Ask the agent to stop its turn")
  )

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
 * Sends the reply; `false` when someone else answered first (a 409 for a request that is
 * answered): that is how several watchers share a session, not an error.
 */
const answer = (id: string, requestId: string, reply: PermissionKey["reply"]) =>
  Effect.flatMap(Api.Api, (api) =>
    api.call((c) => c.permissionReply(id, requestId, "decision" in reply ? reply.decision : reply)).pipe(
      Effect.as(true),
      Effect.catchIf(
        (e) => e._tag === "Rejected" && e.status === 409 && e.code === "conflict",
        (e) =>
          // The same 409 answers an unknown request id: the artifacts tell the two apart.
          Effect.flatMap(api.call((c) => c.artifacts(id)), (list) =>
            list.some((a) => a.kind === "permission" && a.requestId === requestId && a.decision !== null)
              ? Effect.succeed(false)
              : Effect.fail(e))
      ),
      Effect.mapError(Api.noSandbox(id))
    ))

const approve = Command.make(
  "approve",
  {
    id,
    requestId,
    always: Options.boolean("always").pipe(Options.withDescription("allow always, not just once")),
    option: Options.text("option").pipe(Options.withDescription("answer with this option of the request (its optionId)"), Options.optional)
  },
  (o) =>
    Effect.gen(function*() {
      if (o.always && Option.isSome(o.option)) {
        return yield* Effect.fail(new Usage({ message: "--always and --option cannot be combined: the option says what it allows" }))
      }
      const io = yield* Io
      const rid = yield* pendingRequest(o.id, o.requestId)
      const answered = yield* answer(o.id, rid, Option.isSome(o.option) ? { optionId: o.option.value } : { decision: o.always ? "allow_always" : "allow_once" })
      if (!answered) return io.out(`${rid} was already answered by someone else\n`)
      io.out(`${Option.isSome(o.option) ? `answered ${rid} with ${o.option.value}` : o.always ? `always allowed ${rid}` : `allowed ${rid} once`}\n`)
    })
).pipe(Command.withDescription("Allow a pending permission request (once, --always, or with --option <optionId>)"))

const reject = Command.make("reject", { id, requestId }, (o) =>
  Effect.gen(function*() {
    const io = yield* Io
    const rid = yield* pendingRequest(o.id, o.requestId)
    if (!(yield* answer(o.id, rid, { decision: "reject" }))) return io.out(`${rid} was already answered by someone else\n`)
    io.out(`rejected ${rid}\n`)
  })).pipe(Command.withDescription("Reject a pending permission request"))

const artifacts = Command.make("artifacts", { id, json }, (o) =>
  Effect.gen(function*() {
    const api = yield* Api.Api
    const io = yield* Io
    const list: ReadonlyArray<Artifact> = yield* api.call((c) => c.artifacts(o.id))
    if (o.json) return io.out(list.map((a) => JSON.stringify(a) + "\n").join(""))
    const t = { style: io.style, width: io.stdout.columns || 100, markdown: io.tty, plain: !io.tty }
    io.out(list.map((a) => artifactLines(a, t).join("\n") + "\n").join(""))
  })).pipe(Command.withDescription("Print the session's artifacts: the transcript so far"))

export const command = rein.pipe(
  Command.withSubcommands([sessions, create, rm, watch, prompt, abort, approve, reject, artifacts]),
  Command.provide((config) => Api.layer({ url: config.url, token: Option.getOrUndefined(config.token) }))
)

/** The exit code a failure ends with; printed already. */
export class Exited {
  readonly _tag = "Exited"
  constructor(readonly code: number) {}
}

/** Runs `rein` on argv; a CliError is printed on stderr and becomes `Exited`. */
export const run = (argv: ReadonlyArray<string>, version: string) =>
  Command.run(command, { name: "rein", version })(argv).pipe(
    Effect.catchIf(
      (e): e is CliError => typeof e === "object" && e !== null && "_tag" in e && ["Rejected", "Unreachable", "Usage"].includes(e._tag as string),
      (e) => Effect.flatMap(Io, (io) => Effect.sync(() => io.err(`rein: ${describe(e)}\n`))).pipe(Effect.zipRight(Effect.fail(new Exited(exitCode(e)))))
    )
  )

/** For `runMain`: the exit code of the program's end (invalid flags were explained by the CLI). */
export const teardown = (exit: Exit.Exit<unknown, unknown>, onExit: (code: number) => void): void => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return onExit(0)
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof Exited) return onExit(failure.value.code)
  if (Option.isNone(failure) || !ValidationError.isValidationError(failure.value)) {
    process.stderr.write(`rein failed: ${Cause.pretty(exit.cause)}\n`)
  }
  onExit(1)
}
