/**
 * The relay between a Rein session and an ACP agent (`rein-sandbox`).
 *
 * - Rein -> agent: `prompt` runs a turn (`turn_start`, ACP `session/prompt`,
 *   `turn_end`); one turn at a time, prompts that arrive meanwhile wait in
 *   order and the transcript says so (`custom {name: "rein.prompt_queued"}`).
 *   `permission_reply` answers the agent's pending `session/request_permission`
 *   with the chosen option; `abort` sends `session/cancel` and answers every
 *   pending permission `cancelled` at once; `set_mode` is `session/set_mode`.
 * - agent -> Rein: every `session/update` through Mapping.ts; file writes
 *   (`fs/write_text_file`) as `file_change`; permission requests as
 *   `permission_request`. Everything goes through one SandboxConnection, so
 *   it is posted in order, batched, retried and never applied twice.
 * - Lifecycle: `initialize` (answered before anything else), `authenticate`
 *   when the agent asks for a key the user has set, `session/new`, then the
 *   command stream is held (a session that is not there at all: exit 1)
 *   until the session is deleted (exit 0), the agent
 *   dies (`error` event, exit 1), the stream is refused (exit 1), or `stop()`
 *   (SIGINT/SIGTERM: exit 0). Stopping stops the agent's whole process group.
 *   The `error` that says the agent died, could not be started or did not
 *   start an ACP session is `fatal: true` (the session needs someone); the
 *   `agent` event sent once its ACP session exists is `started: true`.
 */
import * as acp from "@agentclientprotocol/sdk"
import { randomUUID } from "node:crypto"
import { ReinError } from "../client/errors.js"
import { ReinClient } from "../client/ReinClient.js"
import { SandboxConnection } from "../client/SandboxConnection.js"
import type { ConnectionState } from "../client/stream.js"
import { optionForDecision, type SandboxCommand } from "../Domain/Command.js"
import { chooseAuthMethod, clientCapabilities, connect } from "./Acp.js"
import { type AgentExit, type AgentProcess, spawnAgent } from "./Agent.js"
import { Fs } from "./Fs.js"
import { permissionOptionsOf, UpdateMapper } from "./Mapping.js"
import type { Event, PermissionOption } from "../Domain/Event.js"
import { Terminals } from "./Terminals.js"

export interface BridgeOptions {
  readonly url: string
  readonly sessionId: string
  readonly token?: string | undefined
  /** Create the session first (an existing one is joined). */
  readonly create?: { readonly project?: string | undefined } | undefined
  readonly cwd: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env?: NodeJS.ProcessEnv
  /** How long the agent gets to exit after SIGTERM before its group is killed. Default 5 000 ms. */
  readonly graceMs?: number
  /**
   * How long the agent gets to answer `initialize`, `authenticate` and `session/new` together.
   * Default 120 000 ms: a first `npx` run downloads the agent before it answers.
   */
  readonly startTimeoutMs?: number
  readonly clientVersion?: string
  /** Progress and problems, for people (stderr in the bin). */
  readonly log?: (line: string) => void
  readonly fetch?: typeof fetch
  /** A first prompt, run once the agent has started a session (a runner's job). */
  readonly initialPrompt?: string | undefined
  /**
   * The session had an agent before (started again): the transcript says whether the agent
   * resumed its conversation (`resumeSessionId`, for an agent that can `session/load`) or
   * begins a new one.
   */
  readonly restarted?: boolean | undefined
  /** The ACP session a restarted agent should resume with `session/load`, when it can. */
  readonly resumeSessionId?: string | undefined
  /** The agent's ACP session exists (a runner records it, for a restart to resume). */
  readonly onAcpSession?: ((acpSessionId: string) => void) | undefined
  /** The agent's process was spawned (a runner records it, to stop it after its own crash). */
  readonly onSpawned?: ((pid: number) => void) | undefined
  /** After each turn: events to post (a runner's worktree diff). */
  readonly onTurnEnd?: (() => Promise<ReadonlyArray<Event>>) | undefined
}

/** How a bridge ended: the process's exit code and why. */
export interface BridgeExit {
  readonly code: number
  readonly reason: "removed" | "not_found" | "superseded" | "stopped" | "agent_exited" | "refused" | "startup_failed"
  readonly message: string
}

const stopReasons = new Set(["end_turn", "max_tokens", "max_turn_requests", "refusal", "cancelled"])

interface PendingPermission {
  readonly options: ReadonlyArray<acp.PermissionOption>
  readonly resolve: (response: acp.RequestPermissionResponse) => void
}

const describeExit = (exit: AgentExit) => exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`

export class Bridge {
  private readonly options: BridgeOptions
  private readonly log: (line: string) => void
  private conn: SandboxConnection | undefined
  private agent!: AgentProcess
  private acpConn: acp.ClientConnection | undefined
  private acpSessionId: string | undefined
  private mapper!: UpdateMapper
  private fs!: Fs
  private terminals!: Terminals

  /**
   * The user's environment for the agent and its commands, less Rein's own settings: an agent
   * that runs `env` must not find a token that grants every session.
   */
  private get agentEnv(): NodeJS.ProcessEnv {
    const env = { ...(this.options.env ?? process.env) }
    for (const name of ["REIN_TOKEN", "REIN_URL", "REIN_SESSION"]) delete env[name]
    return env
  }
  private readonly queue: Array<string> = []
  private turn: { cancelled: boolean } | undefined
  /** While `session/load` replays a conversation the transcript already holds. */
  private loading = false
  private running = false
  private readonly permissions = new Map<string, PendingPermission>()
  private ending: BridgeExit | undefined
  private resolveEnd!: (exit: BridgeExit) => void
  private readonly ended = new Promise<BridgeExit>((r) => (this.resolveEnd = r))

  constructor(options: BridgeOptions) {
    this.options = options
    this.log = options.log ?? (() => {})
  }

  /** Sends events in order; failures are reported by the connection's onError. */
  private send(events: Event | ReadonlyArray<Event>): void {
    void this.conn!.send(events).catch(() => {})
  }

  private running$: Promise<BridgeExit> | undefined

  /** Runs until the session is deleted, the agent dies, the stream is refused, or `stop()`. Calling it again returns the same promise. */
  run(): Promise<BridgeExit> {
    return this.running$ ??= this.start().then((exit) => {
      this.resolveEnd(exit)
      return exit
    })
  }

  private async start(): Promise<BridgeExit> {
    const o = this.options
    if (o.create !== undefined) {
      const client = new ReinClient({ baseUrl: o.url, token: o.token, ...(o.fetch ? { fetch: o.fetch } : {}) })
      try {
        await client.createSession(o.sessionId, o.create.project !== undefined ? { project: o.create.project } : {})
        this.log(`created session ${o.sessionId}`)
      } catch (e) {
        if (!(e instanceof ReinError && e.status === 409)) {
          const message = unreachable(e, o.url) ?? `cannot create session ${o.sessionId}: ${(e as Error).message}`
          return { code: 1, reason: "startup_failed", message }
        }
      }
    }
    try {
      this.fs = await Fs.make(o.cwd)
    } catch (e) {
      return { code: 1, reason: "startup_failed", message: `cannot use --cwd ${o.cwd}: ${(e as Error).message}` }
    }
    this.terminals = new Terminals(this.fs, this.agentEnv)
    this.mapper = new UpdateMapper({ cwd: this.fs.cwd, terminalOutput: (id) => this.terminals.outputOf(id) })

    this.conn = new SandboxConnection({
      baseUrl: o.url,
      sessionId: o.sessionId,
      token: o.token,
      ...(o.fetch ? { fetch: o.fetch } : {}),
      onCommand: (c) => this.onCommand(c),
      onState: (s) => this.onStreamState(s),
      onError: (e, events) => this.onRejected(e, events),
      // One event the server refuses (a restarted agent reusing a tool call id) must not take a
      // turn_end down with it; posted singly in place, the order stays the agent's.
      postRefusedSingly: true,
      // What the agent said is kept until the server takes it, however long it is down (the
      // default gives up after about 30 s); stopping bounds its own wait (see finish).
      retry: { maxAttempts: Number.POSITIVE_INFINITY }
    })
    try {
      await this.conn.connect()
    } catch (e) {
      if (this.ending !== undefined) return this.ended
      await this.conn.close().catch(() => {})
      return { code: 1, reason: "refused", message: `cannot hold session ${o.sessionId}'s command stream: ${(e as Error).message}` }
    }
    this.log(`holding session ${o.sessionId} at ${o.url}`)
    if (this.ending !== undefined) return this.ended

    try {
      this.agent = await spawnAgent(o.command, o.args, { cwd: this.fs.cwd, env: this.agentEnv })
      o.onSpawned?.(this.agent.pid)
    } catch (e) {
      const message = (e as Error).message
      this.send({ type: "error", message, fatal: true })
      await this.conn.close().catch(() => {})
      return { code: 1, reason: "startup_failed", message }
    }
    void this.agent.exited.then((exit) => this.onAgentExit(exit))
    if (this.ending !== undefined) {
      // stop() came while the agent was starting: finish() did not see it.
      await this.agent.stop(o.graceMs ?? 5_000)
      return this.ended
    }

    // A program that is not an ACP agent (or one waiting for input on a terminal) never answers:
    // without a deadline the session would look live while nothing runs.
    const startTimeoutMs = o.startTimeoutMs ?? 120_000
    let startTimer: ReturnType<typeof setTimeout> | undefined
    const started = await Promise.race([
      this.startAgent(),
      new Promise<never>((_, reject) =>
        startTimer = setTimeout(
          () =>
            reject(
              new Error(
                `no answer to ${this.startStep} within ${startTimeoutMs} ms (is it an ACP agent speaking over stdio? Gemini CLI needs --acp)`
              )
            ),
          startTimeoutMs
        )
      )
    ]).then(() => undefined, (e: unknown) => e)
    clearTimeout(startTimer)
    if (started !== undefined && this.ending === undefined) {
      // An agent that died while starting says why on stderr: wait (briefly) for its exit to say so too.
      const exit = await Promise.race([this.agent.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1_000))])
      if (this.ending !== undefined) return this.ended
      const tail = this.agent.stderrTail().trim()
      const message = `the agent did not start an ACP session: ${errorText(started)}` +
        (exit !== undefined ? `; it ${describeExit(exit)}` : "") +
        (tail !== "" ? `; its stderr ended with:\n${tail}` : "")
      this.send({ type: "error", message, fatal: true })
      void this.finish({ code: 1, reason: "startup_failed", message })
    }
    if (this.ending === undefined) void this.pump()
    return this.ended
  }

  /** SIGINT/SIGTERM: a clean stop (a running turn ends cancelled), exit 0. */
  stop(): void {
    void this.finish({ code: 0, reason: "stopped", message: "stopped" })
  }

  /** The ACP request the start waits on, for the timeout's message. */
  private startStep = "initialize"

  private async startAgent(): Promise<void> {
    const o = this.options
    const conn = connect(this.agent, {
      onUpdate: (sessionId, update) => {
        // A resumed conversation is replayed while it loads: the transcript has it already.
        if (this.ending !== undefined || this.loading) return
        if (this.acpSessionId !== undefined && sessionId !== this.acpSessionId) return
        this.send(this.mapper.map(update))
      },
      requestPermission: (params, signal) => this.requestPermission(params, signal),
      readTextFile: (params) => this.fs.read(params),
      writeTextFile: async (params) => {
        const change = await this.fs.write(params)
        // Unless a tool call's diff already reported this very edit (one edit, one file_change).
        if (this.mapper.claimEdit(params.path, params.content)) this.send(change)
        return {}
      },
      createTerminal: (params) => this.terminals.create(params),
      terminalOutput: async (params) => this.terminals.output(params.terminalId),
      waitForTerminalExit: (params) => this.terminals.waitForExit(params.terminalId),
      killTerminal: async (params) => (this.terminals.kill(params.terminalId), {}),
      releaseTerminal: async (params) => (this.terminals.release(params.terminalId), {})
    })
    this.acpConn = conn
    this.startStep = "initialize"
    const init = await conn.agent.request(acp.methods.agent.initialize, {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities,
      clientInfo: { name: "rein-sandbox", version: o.clientVersion ?? "0.0.0" }
    })
    const info = init.agentInfo
    this.log(`agent: ${info ? `${info.name} ${info.version}` : "(no agentInfo)"}, ACP protocol ${init.protocolVersion}`)
    const method = chooseAuthMethod(init.authMethods, this.agentEnv)
    if (method !== undefined) {
      this.startStep = "authenticate"
      await conn.agent.request(acp.methods.agent.authenticate, { methodId: method })
      this.log(`authenticated with ${method}`)
    }
    let session: { readonly sessionId: string; readonly modes?: acp.SessionModeState | null | undefined } | undefined
    let resumed: "resumed" | "cannot" | "failed" | undefined
    if (o.resumeSessionId !== undefined) {
      if (init.agentCapabilities?.loadSession === true) {
        this.startStep = "session/load"
        this.loading = true
        try {
          const loaded = await conn.agent.request(acp.methods.agent.session.load, {
            sessionId: o.resumeSessionId,
            cwd: this.fs.cwd,
            mcpServers: []
          })
          session = { sessionId: o.resumeSessionId, modes: loaded?.modes }
          resumed = "resumed"
        } catch (e) {
          this.log(`session/load ${o.resumeSessionId} failed (${errorText(e)}): starting a new session`)
          resumed = "failed"
        } finally {
          this.loading = false
        }
      } else resumed = "cannot"
    }
    if (session === undefined) {
      this.startStep = "session/new"
      session = await conn.agent.request(acp.methods.agent.session.new, { cwd: this.fs.cwd, mcpServers: [] })
    }
    this.acpSessionId = session.sessionId
    o.onAcpSession?.(session.sessionId)
    const modes = session.modes
    this.send({
      type: "agent",
      // The agent runs: whatever a fatal error of an earlier agent left is over.
      started: true,
      ...(info ? { name: info.title ?? info.name, version: info.version } : {}),
      ...(modes
        ? {
          modes: modes.availableModes.map((m) => typeof m.description === "string" ? { id: m.id, name: m.name, description: m.description } : { id: m.id, name: m.name }),
          currentModeId: modes.currentModeId
        }
        : {})
    })
    this.log(`ACP session ${session.sessionId} in ${this.fs.cwd}`)
    if (resumed === "resumed") {
      this.send({
        type: "custom",
        name: "rein.resumed_conversation",
        data: { text: "The agent was started again and resumed its conversation (ACP session/load)." }
      })
    } else if (o.restarted === true) {
      const why = resumed === "failed" ? "it could not load the earlier one" : "it cannot resume the earlier one"
      this.send({
        type: "custom",
        name: "rein.new_conversation",
        data: { text: `The agent was started again: it begins a new conversation (${why}).` }
      })
    }
    if (o.initialPrompt !== undefined) {
      // Recorded as a prompt sent from a client is, then run as the first turn.
      this.send({ type: "user_message", text: o.initialPrompt })
      this.queue.push(o.initialPrompt)
    }
  }

  // --- Rein -> agent -------------------------------------------------------

  private onCommand(c: SandboxCommand): void {
    if (this.ending !== undefined) return
    switch (c.type) {
      case "prompt": {
        this.queue.push(c.text)
        if (this.running || this.acpSessionId === undefined) {
          this.send({ type: "custom", name: "rein.prompt_queued", data: { text: c.text, position: this.queue.length } })
        }
        void this.pump()
        return
      }
      case "abort":
        return this.abort()
      case "set_mode":
        return void this.setMode(c.modeId)
      case "permission_reply": {
        const pending = this.permissions.get(c.requestId)
        if (pending === undefined) return this.log(`permission reply for ${c.requestId}, which is not pending`)
        // The server completed the reply against the request's options; a decision alone (no option
        // of its kind) is matched here once more, so a reject without a reject option cancels.
        const optionId = c.optionId !== null && pending.options.some((o) => o.optionId === c.optionId)
          ? c.optionId
          : optionForDecision(pending.options, c.decision)
        this.permissions.delete(c.requestId)
        pending.resolve(optionId !== undefined ? { outcome: { outcome: "selected", optionId } } : { outcome: { outcome: "cancelled" } })
        return
      }
    }
  }

  private async setMode(modeId: string): Promise<void> {
    const sessionId = this.acpSessionId
    if (this.acpConn === undefined || sessionId === undefined) {
      this.send({ type: "error", message: `set_mode ${modeId}: the agent has no session yet` })
      return
    }
    try {
      await this.acpConn.agent.request(acp.methods.agent.session.setMode, { sessionId, modeId })
      this.send({ type: "agent", currentModeId: modeId })
    } catch (e) {
      this.send({ type: "error", message: `set_mode ${modeId}: ${errorText(e)}`, ...errorCode(e) })
    }
  }

  /** Cancels the running turn: `session/cancel`, every pending permission answered `cancelled`. */
  private abort(): void {
    if (this.turn === undefined || this.turn.cancelled) return
    this.turn.cancelled = true
    if (this.acpConn !== undefined && this.acpSessionId !== undefined) {
      void this.acpConn.agent.notify(acp.methods.agent.session.cancel, { sessionId: this.acpSessionId }).catch(() => {})
    }
    this.cancelPermissions()
  }

  private cancelPermissions(): void {
    for (const [id, p] of this.permissions) {
      this.permissions.delete(id)
      p.resolve({ outcome: { outcome: "cancelled" } })
    }
  }

  /** Runs queued prompts one at a time, in order. */
  private async pump(): Promise<void> {
    if (this.running || this.acpSessionId === undefined) return
    this.running = true
    try {
      // A closed connection runs nothing more: the prompts stay queued for finish to report.
      while (this.queue.length > 0 && this.ending === undefined && this.acpConn?.signal.aborted !== true) {
        await this.runTurn(this.queue.shift()!)
      }
    } finally {
      this.running = false
    }
  }

  private async runTurn(text: string): Promise<void> {
    const conn = this.acpConn!
    const turn = { cancelled: false }
    this.turn = turn
    this.mapper.newTurn()
    this.send({ type: "turn_start" })
    let stopReason: "end_turn" | "max_tokens" | "max_turn_requests" | "refusal" | "cancelled" | "error"
    try {
      const res = await conn.agent.request(acp.methods.agent.session.prompt, {
        sessionId: this.acpSessionId!,
        prompt: [{ type: "text", text }]
      })
      // ACP: after session/cancel the agent answers `cancelled`; whatever it says, the turn was cancelled.
      stopReason = turn.cancelled ? "cancelled" : stopReasons.has(res.stopReason) ? res.stopReason : "end_turn"
    } catch (e) {
      // The connection closed: the agent died, and onAgentExit (or finish) reports it and ends the turn.
      if (conn.signal.aborted || this.ending !== undefined) return
      if (turn.cancelled) stopReason = "cancelled"
      else {
        this.send({ type: "error", message: `session/prompt failed: ${errorText(e)}`, ...errorCode(e) })
        stopReason = "error"
      }
    }
    if (this.ending !== undefined) return
    this.cancelPermissions()
    this.turn = undefined
    this.send({ type: "turn_end", stopReason })
    if (this.options.onTurnEnd !== undefined) {
      const after = await this.options.onTurnEnd().catch(() => [])
      if (after.length > 0 && this.ending === undefined) this.send(after)
    }
  }

  // --- agent -> Rein -------------------------------------------------------

  private requestPermission(params: acp.RequestPermissionRequest, signal: AbortSignal): Promise<acp.RequestPermissionResponse> {
    if (this.ending !== undefined || this.turn?.cancelled === true) return Promise.resolve({ outcome: { outcome: "cancelled" } })
    const toolCall = params.toolCall as unknown as Record<string, unknown> | undefined
    const toolCallId = typeof toolCall?.toolCallId === "string" ? toolCall.toolCallId : undefined
    // The request's tool call is an update of it (ACP): its fields, and its start if it was never announced.
    if (toolCall !== undefined && toolCallId !== undefined) {
      const { status: _status, ...fields } = toolCall
      this.send(this.mapper.map({ ...fields, sessionUpdate: "tool_call_update" }))
    }
    const requestId = `perm-${randomUUID()}`
    const diff = toolCallId !== undefined ? this.mapper.proposedDiff(toolCallId) : undefined
    const options: ReadonlyArray<PermissionOption> | undefined = permissionOptionsOf(params.options)
    const title = typeof toolCall?.title === "string" && toolCall.title !== ""
      ? toolCall.title
      : (toolCallId !== undefined ? this.mapper.titleOf(toolCallId) : undefined) ?? "The agent asks for permission"
    return new Promise((resolve) => {
      this.permissions.set(requestId, { options: Array.isArray(params.options) ? params.options : [], resolve })
      // The agent withdrew the request ($/cancel_request): it needs no answer any more.
      signal.addEventListener("abort", () => {
        if (this.permissions.delete(requestId)) resolve({ outcome: { outcome: "cancelled" } })
      }, { once: true })
      this.send({
        type: "permission_request",
        requestId,
        title,
        ...(toolCallId !== undefined ? { toolCallId } : {}),
        ...(options !== undefined ? { options } : {}),
        ...(diff !== undefined ? { diff } : {})
      })
    })
  }

  /**
   * A batch is all or nothing: one event the server refuses (400) would take the others with it,
   * a `turn_end` among them. So a refused batch is posted again one event at a time (nothing of it
   * was applied, so nothing doubles), and only the refused event is lost (and logged).
   */
  private onRejected(error: ReinError, events: ReadonlyArray<Event>): void {
    this.log(`rein: ${events.length} event(s) refused: ${error.message}`)
  }

  // --- endings -------------------------------------------------------------

  /** Whether the command stream was ever open: a session missing from the start was never there. */
  private opened = false

  private onStreamState(s: ConnectionState): void {
    const status = s.status
    if (status === "gone" && !this.opened) {
      const o = this.options
      void this.finish({ code: 1, reason: "not_found", message: `session ${o.sessionId} not found at ${o.url} (--create creates it)` })
    } else if (status === "removed" || status === "gone") {
      // `removed`: the command stream said `session_removed`; `gone`: a reconnect found no session (404).
      void this.finish({ code: 0, reason: "removed", message: `session ${this.options.sessionId} was deleted` })
    } else if (status === "superseded") {
      // Another sandbox holds the session now: leave it to that one, and do not come back.
      void this.finish({
        code: 1,
        reason: "superseded",
        message: `another sandbox took session ${this.options.sessionId} over; this one stops`
      })
    } else if (status === "failed") {
      void this.finish({ code: 1, reason: "refused", message: `cannot hold session ${this.options.sessionId}'s command stream: ${s.error?.message ?? "refused"}` })
    } else if (status === "reconnecting" && s.attempt === 1) {
      const cause = unreachable(s.error, this.options.url)
      this.log(cause !== undefined ? `${cause}; reconnecting` : `rein: command stream lost (${s.error?.message ?? "dropped"}), reconnecting`)
    } else if (status === "open") {
      this.opened = true
      this.log("rein: command stream open")
    }
  }

  private async onAgentExit(exit: AgentExit): Promise<void> {
    // Before the ACP session exists, the startup path reports the failure (with the exit).
    if (this.ending !== undefined || this.acpSessionId === undefined) return
    // What it wrote before dying is still being read: let the connection drain (briefly: a child may hold the pipe).
    if (this.acpConn !== undefined) await Promise.race([this.acpConn.closed, new Promise((r) => setTimeout(r, 1_000))])
    if (this.ending !== undefined) return
    const tail = this.agent.stderrTail().trim()
    const message = `the agent ${describeExit(exit)}${tail !== "" ? `; its stderr ended with:\n${tail}` : ""}`
    this.send({ type: "error", message, code: exit.code ?? exit.signal ?? "exited", fatal: true })
    void this.finish({ code: 1, reason: "agent_exited", message })
  }

  /** The one way out: ends the turn when the session still exists, stops the agent's group, flushes, closes. */
  private async finish(exit: BridgeExit): Promise<void> {
    if (this.ending !== undefined) return
    this.ending = exit
    // Superseded, the session is another sandbox's to write to now.
    const sessionExists = exit.reason !== "removed" && exit.reason !== "not_found" && exit.reason !== "refused" &&
      exit.reason !== "superseded"
    if (this.turn !== undefined && sessionExists) {
      this.send({ type: "turn_end", stopReason: exit.reason === "stopped" ? "cancelled" : "error" })
    }
    this.turn = undefined
    if (this.queue.length > 0 && sessionExists) {
      // Said as the transcript said they were queued: nobody should wait for them.
      const n = this.queue.length
      this.send({
        type: "error",
        code: "prompts_not_run",
        message: `${n} queued prompt${n === 1 ? " was" : "s were"} not run: ${exit.message}`
      })
      this.queue.length = 0
    }
    this.cancelPermissions()
    this.terminals?.closeAll()
    this.acpConn?.close()
    if (this.agent !== undefined) await this.agent.stop(this.options.graceMs ?? 5_000)
    if (this.conn === undefined) return this.resolveEnd(exit)
    if (sessionExists) {
      // Posting what is left may wait for a server that is down; not forever.
      await Promise.race([this.conn.flush(), new Promise((r) => setTimeout(r, 15_000).unref())])
    }
    await Promise.race([this.conn.close(), new Promise((r) => setTimeout(r, 2_000).unref())]).catch(() => {})
    this.resolveEnd(exit)
  }
}

/**
 * A request that got no answer at all, said as `rein` says it: `cannot reach the Rein server at
 * <url>: ECONNREFUSED` (the system's code, not fetch's "fetch failed"); undefined for anything else.
 */
const unreachable = (e: unknown, url: string): string | undefined => {
  if (!(e instanceof ReinError) || e.status !== 0) return undefined
  const cause = (e as { cause?: { cause?: { code?: unknown; message?: unknown } } }).cause?.cause
  const why = typeof cause?.code === "string" ? cause.code : typeof cause?.message === "string" ? cause.message : e.message
  return `cannot reach the Rein server at ${url}: ${why}`
}

const errorText = (e: unknown): string =>
  e instanceof acp.RequestError ? `${e.message}${e.data !== undefined ? ` (${JSON.stringify(e.data)})` : ""}` : e instanceof Error ? e.message : String(e)

const errorCode = (e: unknown): { code?: number } => e instanceof acp.RequestError ? { code: e.code } : {}
