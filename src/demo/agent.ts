/**
 * A simulated coding agent for demos and tests: a script, not a model. It
 * holds a session's command stream through `SandboxConnection` and answers
 * each prompt with the events a real agent sends: reasoning, a plan, a tool
 * call that really lists the working directory, streamed Markdown, a
 * permission request before a pretend write (nothing touches the disk), a
 * diff, usage, a summary and `turn_end`. An abort ends the turn at once with
 * `turn_end {stopReason: "cancelled"}`.
 *
 * What it says is script.ts, shared with the same agent speaking ACP over stdio (AcpAgent.ts).
 */
import type { SandboxCommand } from "../Domain/Command.js"
import type { Event, PlanEntry } from "../Domain/Event.js"
import type { ReinError } from "../client/errors.js"
import { SandboxConnection } from "../client/SandboxConnection.js"
import { isFinal } from "../client/stream.js"
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
  plan as planSteps,
  pretendWritten,
  reasoning,
  rejectedOutput,
  rejectedText,
  short,
  summary,
  wantsError,
  writeOptions,
  writeTitle
} from "./script.js"

export { listDirectory } from "./script.js"

export interface DemoAgentOptions {
  readonly baseUrl: string
  readonly sessionId: string
  /** The client token or the session's sandbox token, when the server runs with auth. */
  readonly token?: string | undefined
  /** The directory the `list_directory` tool lists. Default `process.cwd()`. */
  readonly cwd?: string
  /** Multiplies every pause: 1 reads naturally, 0.2 is quick (tests). Default 1. */
  readonly pace?: number
  /** A heartbeat between turns this often, in ms. Default 10 000. */
  readonly heartbeatInterval?: number
  readonly log?: (line: string) => void
}

export interface DemoAgent {
  readonly sessionId: string
  readonly connection: SandboxConnection
  /** Resolves when the agent stopped: `stop()`, or its session was deleted. */
  readonly done: Promise<void>
  /** Turns finished so far, whatever their stop reason. */
  readonly turnsFinished: () => number
  /** Cancels a running turn, posts what is pending, and closes the command stream. */
  readonly stop: () => Promise<void>
}

type Decision = "allow_once" | "allow_always" | "reject"

class Aborted extends Error {}

const plan = (step: number, rejected = false): Array<PlanEntry> => planSteps(step, rejected)

const diffOf = (path: string, content: string) => {
  const lines = content.split("\n")
  if (lines[lines.length - 1] === "") lines.pop()
  return [`--- /dev/null`, `+++ b/${path}`, `@@ -0,0 +1,${lines.length} @@`, ...lines.map((l) => `+${l}`)].join("\n")
}

export const startDemoAgent = async (options: DemoAgentOptions): Promise<DemoAgent> => {
  const pace = options.pace ?? 1
  const cwd = options.cwd ?? process.cwd()
  const heartbeatInterval = options.heartbeatInterval ?? 10_000
  const log = options.log ?? (() => {})
  const prompts: Array<string> = []
  const waiters = new Map<string, (decision: Decision) => void>()
  let turn: AbortController | undefined
  let wake: (() => void) | undefined
  let stopping = false
  let alwaysAllow = false
  let turnNumber = 0
  let finished = 0

  const onCommand = (command: SandboxCommand) => {
    switch (command.type) {
      case "prompt":
        prompts.push(command.text)
        wake?.()
        return
      case "abort":
        turn?.abort()
        return
      case "permission_reply":
        waiters.get(command.requestId)?.(command.decision)
        return
    }
  }

  const connection = new SandboxConnection({
    baseUrl: options.baseUrl,
    sessionId: options.sessionId,
    token: options.token,
    onCommand,
    onState: (s) => {
      if (!isFinal(s.status)) return
      // The session was deleted (or the stream closed): end the turn and the loop.
      turn?.abort()
      wake?.()
    },
    onError: (e: ReinError) => {
      if (e.status !== 404) log(`${options.sessionId}: events not posted: ${e.message}`)
    }
  })
  await connection.connect()

  const runTurn = async (prompt: string, signal: AbortSignal) => {
    const n = ++turnNumber
    const send = (e: Event | ReadonlyArray<Event>) => void connection.send(e)
    let output = ""
    const pause = (ms: number) =>
      new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(new Aborted())
        const timer = setTimeout(() => {
          signal.removeEventListener("abort", onAbort)
          resolve()
        }, ms * pace)
        const onAbort = () => {
          clearTimeout(timer)
          reject(new Aborted())
        }
        signal.addEventListener("abort", onAbort, { once: true })
      })
    const stream = async (type: "text_delta" | "reasoning_delta", text: string) => {
      output += text
      for (const delta of chunks(text)) {
        send({ type, delta })
        await pause(chunkPause())
      }
    }
    const permission = (requestId: string) =>
      new Promise<Decision>((resolve, reject) => {
        if (signal.aborted) return reject(new Aborted())
        const onAbort = () => {
          waiters.delete(requestId)
          reject(new Aborted())
        }
        waiters.set(requestId, (decision) => {
          waiters.delete(requestId)
          signal.removeEventListener("abort", onAbort)
          resolve(decision)
        })
        signal.addEventListener("abort", onAbort, { once: true })
      })

    try {
      send({ type: "turn_start" })
      await stream("reasoning_delta", reasoning(prompt))
      send({ type: "plan", entries: plan(1) })
      await pause(300)
      const listId = `ls-${n}`
      send({ type: "tool_call_start", toolCallId: listId, name: "list_directory", input: JSON.stringify({ path: cwd }) })
      await pause(400)
      let listing: Listing
      try {
        listing = await listDirectory(cwd)
        send({ type: "tool_call_end", toolCallId: listId, output: listing.text })
      } catch (e) {
        listing = emptyListing
        send({ type: "tool_call_end", toolCallId: listId, output: String(e), isError: true })
      }
      send({ type: "plan", entries: plan(2) })
      const path = notePath(n)
      await stream("text_delta", findings(prompt, cwd, listing, path))
      send({ type: "plan", entries: plan(3) })
      const writeId = `write-${n}`
      const content = note(prompt, cwd, listing)
      send({ type: "tool_call_start", toolCallId: writeId, name: "write_file" })
      const input = JSON.stringify({ path, content })
      for (let i = 0; i < input.length; i += 40) {
        send({ type: "tool_call_input_delta", toolCallId: writeId, delta: input.slice(i, i + 40) })
        await pause(15)
      }
      let decision: Decision = "allow_always"
      if (!alwaysAllow) {
        const requestId = `perm-${n}`
        const answer = permission(requestId)
        send({
          type: "permission_request",
          requestId,
          toolCallId: writeId,
          title: writeTitle(path),
          options: [...writeOptions]
        })
        await connection.flush()
        decision = await answer
      }
      if (decision === "reject") {
        send({ type: "tool_call_end", toolCallId: writeId, output: rejectedOutput, isError: true })
        send({ type: "plan", entries: plan(4, true) })
        await stream("text_delta", rejectedText)
      } else {
        if (decision === "allow_always") alwaysAllow = true
        send({
          type: "tool_call_end",
          toolCallId: writeId,
          output: pretendWritten(path, content)
        })
        send({ type: "file_change", path, action: "create", diff: diffOf(path, content) })
        send({ type: "plan", entries: plan(4) })
        await stream("text_delta", doneText(decision === "allow_always"))
      }
      if (wantsError(prompt)) {
        send({ type: "error", message: errorMessage, code: "demo_error" })
      }
      send({ type: "plan", entries: plan(5) })
      send({ type: "usage", inputTokens: 1200 + estimateTokens(prompt), outputTokens: estimateTokens(output + input), costUsd: 0 })
      send({ type: "summary", text: summary(prompt) })
      send({ type: "turn_end", stopReason: "end_turn" })
      await connection.flush()
    } catch (e) {
      if (e instanceof Aborted) {
        send({ type: "turn_end", stopReason: "cancelled" })
      } else {
        send({ type: "error", message: `the demo agent failed: ${e instanceof Error ? e.message : String(e)}` })
        send({ type: "turn_end", stopReason: "error" })
      }
      await connection.flush()
    }
  }

  const loop = async () => {
    let lastBeat = Date.now()
    while (!stopping && !isFinal(connection.state.status)) {
      const prompt = prompts.shift()
      if (prompt === undefined) {
        if (Date.now() - lastBeat >= heartbeatInterval) {
          lastBeat = Date.now()
          void connection.send({ type: "heartbeat" })
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(10, heartbeatInterval - (Date.now() - lastBeat)))
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        wake = undefined
        continue
      }
      const controller = new AbortController()
      turn = controller
      log(`${options.sessionId}: prompt "${short(prompt)}"`)
      await runTurn(prompt, controller.signal)
      turn = undefined
      finished++
      lastBeat = Date.now()
    }
  }
  const done = loop().catch((e) => log(`${options.sessionId}: the demo agent stopped: ${e instanceof Error ? e.message : String(e)}`))

  return {
    sessionId: options.sessionId,
    connection,
    done,
    turnsFinished: () => finished,
    stop: async () => {
      stopping = true
      turn?.abort()
      wake?.()
      await done
      await connection.close()
    }
  }
}
