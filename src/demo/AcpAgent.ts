/**
 * The simulated demo agent as a real ACP agent over stdio (`node dist/demo/acp-bin.js`), written
 * on the SDK's agent side: what the hub's built-in `demo` profile starts through the same bridge
 * as every real agent (`rein-sandbox ... -- node dist/demo/acp-bin.js`). A script, not a model:
 * no network, no keys. Each prompt gets what agent.ts (`npm run demo`) answers (script.ts holds
 * the words):
 *
 * - reasoning (`agent_thought_chunk`, streamed) and a plan, kept current at each step;
 * - a `list_directory` tool call (kind `read`) that really lists the session's working
 *   directory, completed with the listing as its content;
 * - Markdown about it (`agent_message_chunk`, streamed in small chunks with small pauses);
 * - a pretend write of a note: a tool call (kind `edit`) whose content is the `diff` of a new
 *   file, then `session/request_permission` (Allow / Always allow / Reject). Allowed, the call
 *   completes (nothing is written to disk); rejected, it fails. "Always allow" switches the
 *   session to the `auto` mode, which does not ask (`session/set_mode` switches back to `ask`);
 * - `usage_update` (an estimate of the context used, cost 0), and on the first prompt a title
 *   (`session_info_update`). A prompt that says "error" ends its turn with a JSON-RPC error.
 *
 * `session/cancel` ends the running turn at once with `stopReason: "cancelled"`, also while a
 * permission request waits (the client answers it `cancelled`; the turn does not wait for that).
 */
import * as acp from "@agentclientprotocol/sdk"
import { createRequire } from "node:module"
import { isAbsolute, join } from "node:path"
import { Readable, Writable } from "node:stream"
import {
  chunkPause,
  chunks,
  doneText,
  emptyListing,
  errorMessage,
  estimateTokens,
  findings,
  type Listing,
  listDirectory,
  note,
  notePath,
  plan,
  pretendWritten,
  reasoning,
  rejectedOutput,
  rejectedText,
  summary,
  wantsError,
  writeOptions,
  writeTitle
} from "./script.js"

export interface DemoAcpAgentOptions {
  /** Multiplies every pause: 1 reads naturally, 0 answers at once (tests). Default 1. */
  readonly pace?: number
}

/** The agent's name in `initialize` (`title` is what dashboards show). */
export const demoAgentInfo = { name: "rein-demo", title: "Demo (simulated agent)" } as const

/** `ask`: ask before the pretend write (the default); `auto`: pretend-write without asking. */
export const demoModes: ReadonlyArray<acp.SessionMode> = [
  { id: "ask", name: "Ask", description: "Ask before the pretend write" },
  { id: "auto", name: "Auto", description: "Pretend-write without asking" }
]

/** The context window the usage estimate is reported against. */
const contextSize = 200_000
/** What the script pretends its system prompt costs, in tokens. */
const systemTokens = 1_200

const version = (() => {
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version
  } catch {
    return "0.0.0"
  }
})()

class Cancelled extends Error {}

interface DemoSession {
  readonly id: string
  readonly cwd: string
  mode: string
  turns: number
  /** Tokens the conversation holds so far (an estimate), for `usage_update`. */
  context: number
  turn: AbortController | undefined
}

/** The agent-side app: register it on any stream with `.connect(stream)`. */
export const demoAcpAgent = (options: DemoAcpAgentOptions = {}): acp.AgentApp => {
  const pace = Math.max(0, options.pace ?? 1)
  const sessions = new Map<string, DemoSession>()
  /** Ids unique across runs, as real agents make them (a restarted agent must not continue an old message). */
  const run = Math.random().toString(36).slice(2, 8)
  let sessionCount = 0

  const sessionOf = (sessionId: string): DemoSession => {
    const session = sessions.get(sessionId)
    if (session === undefined) throw acp.RequestError.invalidParams({ sessionId }, `no session ${sessionId}`)
    return session
  }

  const runTurn = async (
    session: DemoSession,
    prompt: string,
    client: acp.AgentContext,
    signal: AbortSignal
  ): Promise<acp.PromptResponse> => {
    const n = ++session.turns
    const sessionId = session.id
    const cwd = session.cwd
    const update = (u: acp.SessionUpdate) => client.notify(acp.methods.client.session.update, { sessionId, update: u })
    const check = () => {
      if (signal.aborted) throw new Cancelled()
    }
    const pause = (ms: number) =>
      new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(new Cancelled())
        const onAbort = () => {
          clearTimeout(timer)
          reject(new Cancelled())
        }
        const timer = setTimeout(() => {
          signal.removeEventListener("abort", onAbort)
          resolve()
        }, ms * pace)
        signal.addEventListener("abort", onAbort, { once: true })
      })
    let output = ""
    let parts = 0
    /** Streams `text` as one message (or one thought) in small chunks. */
    const stream = async (kind: "agent_message_chunk" | "agent_thought_chunk", text: string) => {
      output += text
      const messageId = `${sessionId}-${n}-${++parts}`
      for (const piece of chunks(text)) {
        check()
        await update({ sessionUpdate: kind, messageId, content: { type: "text", text: piece } })
        await pause(chunkPause())
      }
    }
    const showPlan = (step: number, rejected = false) =>
      update({ sessionUpdate: "plan", entries: plan(step, rejected).map((e) => ({ ...e, priority: "medium" as const })) })
    /** The client's answer, or cancelled as soon as the turn is (ACP: the client answers it cancelled too). */
    const askPermission = (params: acp.RequestPermissionRequest) =>
      new Promise<acp.RequestPermissionResponse>((resolve, reject) => {
        if (signal.aborted) return reject(new Cancelled())
        const onAbort = () => reject(new Cancelled())
        signal.addEventListener("abort", onAbort, { once: true })
        client.request(acp.methods.client.session.requestPermission, params).then(
          (r) => (signal.removeEventListener("abort", onAbort), resolve(r)),
          (e) => (signal.removeEventListener("abort", onAbort), reject(e))
        )
      })

    try {
      await stream("agent_thought_chunk", reasoning(prompt))
      await showPlan(1)
      await pause(300)

      const listId = `ls-${n}`
      await update({
        sessionUpdate: "tool_call",
        toolCallId: listId,
        name: "list_directory",
        title: `List ${cwd}`,
        kind: "read",
        status: "in_progress",
        rawInput: { path: cwd },
        locations: [{ path: cwd }]
      })
      await pause(400)
      let listing: Listing
      try {
        listing = await listDirectory(cwd)
        check()
        await update({
          sessionUpdate: "tool_call_update",
          toolCallId: listId,
          status: "completed",
          content: [{ type: "content", content: { type: "text", text: listing.text } }]
        })
      } catch (e) {
        if (e instanceof Cancelled) throw e
        listing = emptyListing
        await update({
          sessionUpdate: "tool_call_update",
          toolCallId: listId,
          status: "failed",
          content: [{ type: "content", content: { type: "text", text: String(e) } }]
        })
      }
      await showPlan(2)

      const path = notePath(n)
      const absolute = join(cwd, path)
      await stream("agent_message_chunk", findings(prompt, cwd, listing, path))
      await showPlan(3)

      const writeId = `write-${n}`
      const content = note(prompt, cwd, listing)
      const diff: acp.ToolCallContent = { type: "diff", path: absolute, oldText: null, newText: content }
      await update({
        sessionUpdate: "tool_call",
        toolCallId: writeId,
        name: "write_file",
        title: writeTitle(path),
        kind: "edit",
        status: "pending",
        rawInput: { path, content },
        locations: [{ path: absolute }],
        content: [diff]
      })
      await pause(200)
      let choice: "allow" | "always" | "reject" = "always"
      if (session.mode !== "auto") {
        const answer = await askPermission({
          sessionId,
          toolCall: { toolCallId: writeId },
          options: writeOptions.map((o) => ({ ...o }))
        })
        if (answer.outcome.outcome === "cancelled") throw new Cancelled()
        const id = answer.outcome.optionId
        choice = id === "allow" || id === "always" ? id : "reject"
      }
      check()
      if (choice === "reject") {
        await update({
          sessionUpdate: "tool_call_update",
          toolCallId: writeId,
          status: "failed",
          content: [{ type: "content", content: { type: "text", text: rejectedOutput } }]
        })
        await showPlan(4, true)
        await stream("agent_message_chunk", rejectedText)
      } else {
        if (choice === "always" && session.mode !== "auto") {
          session.mode = "auto"
          await update({ sessionUpdate: "current_mode_update", currentModeId: "auto" })
        }
        await update({ sessionUpdate: "tool_call_update", toolCallId: writeId, status: "in_progress" })
        await pause(150)
        await update({
          sessionUpdate: "tool_call_update",
          toolCallId: writeId,
          status: "completed",
          content: [diff, { type: "content", content: { type: "text", text: pretendWritten(path, content) } }]
        })
        await showPlan(4)
        await stream("agent_message_chunk", doneText(choice === "always"))
      }

      await showPlan(5, choice === "reject")
      session.context = Math.min(
        contextSize,
        session.context + estimateTokens(prompt) + estimateTokens(output + content)
      )
      await update({ sessionUpdate: "usage_update", used: session.context, size: contextSize, cost: { amount: 0, currency: "USD" } })
      if (n === 1) await update({ sessionUpdate: "session_info_update", title: summary(prompt) })
      if (wantsError(prompt)) throw new acp.RequestError(-32603, errorMessage, { code: "demo_error" })
      return { stopReason: "end_turn" }
    } catch (e) {
      if (e instanceof Cancelled || signal.aborted) return { stopReason: "cancelled" }
      throw e
    }
  }

  return acp.agent({ name: demoAgentInfo.name })
    .onRequest(acp.methods.agent.initialize, () => ({
      protocolVersion: acp.PROTOCOL_VERSION,
      agentCapabilities: { loadSession: false },
      agentInfo: { ...demoAgentInfo, version },
      authMethods: []
    }))
    .onRequest(acp.methods.agent.session.new, ({ params }) => {
      if (!isAbsolute(params.cwd)) throw acp.RequestError.invalidParams({ cwd: params.cwd }, "cwd must be an absolute path")
      const id = `demo-${run}-${++sessionCount}`
      sessions.set(id, { id, cwd: params.cwd, mode: "ask", turns: 0, context: systemTokens, turn: undefined })
      return { sessionId: id, modes: { currentModeId: "ask", availableModes: [...demoModes] } }
    })
    .onRequest(acp.methods.agent.session.setMode, async ({ params, client }) => {
      const session = sessionOf(params.sessionId)
      if (!demoModes.some((m) => m.id === params.modeId)) {
        throw acp.RequestError.invalidParams({ modeId: params.modeId }, `no mode ${params.modeId} (ask, auto)`)
      }
      session.mode = params.modeId
      await client.notify(acp.methods.client.session.update, {
        sessionId: session.id,
        update: { sessionUpdate: "current_mode_update", currentModeId: params.modeId }
      })
      return {}
    })
    .onNotification(acp.methods.agent.session.cancel, ({ params }) => {
      sessions.get(params.sessionId)?.turn?.abort()
    })
    .onRequest(acp.methods.agent.session.prompt, async ({ params, client, signal }) => {
      const session = sessionOf(params.sessionId)
      // One turn at a time (ACP clients wait for the answer): a second prompt cancels the first.
      session.turn?.abort()
      const controller = new AbortController()
      session.turn = controller
      // The request withdrawn ($/cancel_request) or the connection gone: the turn ends too.
      const onGone = () => controller.abort()
      signal.addEventListener("abort", onGone, { once: true })
      const text = params.prompt
        .map((b) => b.type === "text" ? b.text : b.type === "resource_link" ? `@${b.uri}` : "")
        .join("")
        .trim()
      try {
        return await runTurn(session, text === "" ? "(an empty prompt)" : text, client, controller.signal)
      } finally {
        signal.removeEventListener("abort", onGone)
        if (session.turn === controller) session.turn = undefined
      }
    })
}

/** Serves the demo agent on this process's stdin/stdout; the connection ends when stdin does. */
export const serveStdio = (options: DemoAcpAgentOptions = {}): acp.AgentConnection =>
  demoAcpAgent(options).connect(
    acp.ndJsonStream(
      Writable.toWeb(process.stdout) as WritableStream<Uint8Array>,
      Readable.toWeb(process.stdin) as unknown as ReadableStream<Uint8Array>
    )
  )
