/**
 * The ACP client connection to the agent over its stdio (JSON-RPC, one JSON
 * object per line), on @agentclientprotocol/sdk.
 *
 * One remedy: the SDK drops a `session/update` that fails its schema (real
 * agents send such updates, e.g. claude-agent-acp's `usage_update` with
 * `used: null`, and agents add variants over time). So incoming
 * `session/update` notifications are renamed to a private method with a
 * lenient parser on the way in; Mapping.ts checks every field itself.
 */
import * as acp from "@agentclientprotocol/sdk"
import { Readable, Writable } from "node:stream"
import type { AgentProcess } from "./Agent.js"

const lenientUpdate = "_rein/session_update"

/** What the bridge serves to the agent. Handlers may throw `acp.RequestError` to answer with a JSON-RPC error. */
export interface ClientHandlers {
  /** Called synchronously, in the order the agent sent them. */
  readonly onUpdate: (sessionId: unknown, update: unknown) => void
  readonly requestPermission: (
    params: acp.RequestPermissionRequest,
    signal: AbortSignal
  ) => Promise<acp.RequestPermissionResponse>
  readonly readTextFile: (params: acp.ReadTextFileRequest) => Promise<acp.ReadTextFileResponse>
  readonly writeTextFile: (params: acp.WriteTextFileRequest) => Promise<acp.WriteTextFileResponse>
  readonly createTerminal: (params: acp.CreateTerminalRequest) => Promise<acp.CreateTerminalResponse>
  readonly terminalOutput: (params: acp.TerminalOutputRequest) => Promise<acp.TerminalOutputResponse>
  readonly waitForTerminalExit: (params: acp.WaitForTerminalExitRequest) => Promise<acp.WaitForTerminalExitResponse>
  readonly killTerminal: (params: acp.KillTerminalRequest) => Promise<acp.KillTerminalResponse>
  readonly releaseTerminal: (params: acp.ReleaseTerminalRequest) => Promise<acp.ReleaseTerminalResponse>
}

export type AgentConnection = acp.ClientConnection

/** The capabilities the bridge really serves (Fs.ts, Terminals.ts). */
export const clientCapabilities: acp.ClientCapabilities = {
  fs: { readTextFile: true, writeTextFile: true },
  terminal: true
}

export const connect = (agent: AgentProcess, handlers: ClientHandlers): AgentConnection => {
  const raw = acp.ndJsonStream(
    Writable.toWeb(agent.child.stdin!) as WritableStream<Uint8Array>,
    Readable.toWeb(agent.child.stdout!) as unknown as ReadableStream<Uint8Array>
  )
  const rename = new TransformStream<acp.AnyMessage, acp.AnyMessage>({
    transform(message, controller) {
      const m = message as { method?: unknown; id?: unknown }
      controller.enqueue(
        m.method === acp.methods.client.session.update && m.id === undefined
          ? { ...message, method: lenientUpdate } as acp.AnyMessage
          : message
      )
    }
  })
  const stream: acp.Stream = { writable: raw.writable, readable: raw.readable.pipeThrough(rename) }
  const app = acp.client({ name: "rein-sandbox" })
    .onNotification(lenientUpdate, (params: unknown) => params, ({ params }) => {
      const p = params as { sessionId?: unknown; update?: unknown } | null
      handlers.onUpdate(p?.sessionId, p?.update)
    })
    .onRequest(acp.methods.client.session.requestPermission, ({ params, signal }) => handlers.requestPermission(params, signal))
    .onRequest(acp.methods.client.fs.readTextFile, ({ params }) => handlers.readTextFile(params))
    .onRequest(acp.methods.client.fs.writeTextFile, ({ params }) => handlers.writeTextFile(params))
    .onRequest(acp.methods.client.terminal.create, ({ params }) => handlers.createTerminal(params))
    .onRequest(acp.methods.client.terminal.output, ({ params }) => handlers.terminalOutput(params))
    .onRequest(acp.methods.client.terminal.waitForExit, ({ params }) => handlers.waitForTerminalExit(params))
    .onRequest(acp.methods.client.terminal.kill, ({ params }) => handlers.killTerminal(params))
    .onRequest(acp.methods.client.terminal.release, ({ params }) => handlers.releaseTerminal(params))
  return app.connect(stream)
}

/**
 * `authenticate` methods the bridge can complete without a person: the key
 * the user put in the agent's environment. (Codex's adapter requires
 * `openai-api-key`; Gemini CLI offers `gemini-api-key`.)
 */
const keyMethods: ReadonlyArray<readonly [methodId: string, envVar: string]> = [
  ["openai-api-key", "OPENAI_API_KEY"],
  ["codex-api-key", "CODEX_API_KEY"],
  ["gemini-api-key", "GEMINI_API_KEY"]
]

/** The first advertised method whose key is set, if any. */
export const chooseAuthMethod = (
  methods: ReadonlyArray<{ readonly id: string }> | null | undefined,
  env: NodeJS.ProcessEnv
): string | undefined => {
  for (const [id, variable] of keyMethods) {
    if (methods?.some((m) => m.id === id) && (env[variable] ?? "") !== "") return id
  }
  return undefined
}
