/**
 * `@rein-ai/server/client`: a typed client for browsers and Node.
 *
 * - `ReinClient` for dashboards and tools: sessions, commands, and live
 *   watches of the session list and of a session's artifacts.
 * - `SandboxConnection` for agents: the command stream and batched,
 *   idempotent, retried event posting.
 */
export { ReinError } from "./errors.js"
export {
  type ArtifactsPage,
  type ArtifactsState,
  ArtifactsWatch,
  type CreatedSession,
  type CreateSessionOptions,
  type PermissionChoice,
  type PermissionDecision,
  type PageOptions,
  ReinClient,
  type ReinClientOptions,
  type SessionFilter,
  type SessionsState,
  SessionsWatch,
  type WatchOptions,
  type WatchSessionOptions
} from "./ReinClient.js"
export { mergeDeltas, SandboxConnection, type SandboxConnectionOptions } from "./SandboxConnection.js"
export type { ConnectionState, ConnectionStatus } from "./stream.js"
export type { Fetch, RetryOptions } from "./util.js"
export { Watch, type WatchState } from "./watch.js"
export {
  compareSessions,
  formatCost,
  type Group,
  groupOf,
  groups,
  lastActivity,
  orderSessions,
  type SessionState,
  type StateKey,
  stateOf,
  totalCost
} from "./sessionState.js"
export type { Artifact, ArtifactKind } from "../Domain/Artifact.js"
export type { Command, Decision, PermissionReplyDelivered, SandboxCommand } from "../Domain/Command.js"
export type {
  AgentCommand,
  AgentMode,
  Event,
  Location,
  PermissionOption,
  PermissionOptionKind,
  PlanEntry,
  ToolKind
} from "../Domain/Event.js"
export type { Session, SessionFields, SessionStatus, Usage, Workspace } from "../Domain/Session.js"
export type { Job, RunnerAgent, RunnerInfo, RunnerOffer } from "../Domain/Runner.js"
