/**
 * @rein-ai/server: the hub between AI coding agents and the people who
 * watch and steer them.
 */
export { createServer, type ReinServer } from "./createServer.js"
export * as Server from "./Server.js"
export type { ServerOptions } from "./Server.js"
export * as Sessions from "./Sessions.js"
export * as SessionStore from "./SessionStore.js"
export { layerMemory } from "./SessionStore.js"
export * as SqliteStore from "./SessionStore/Sqlite.js"
export * as PgStore from "./SessionStore/Pg.js"
export * as EventBus from "./EventBus.js"
export * as Reducer from "./Reducer.js"
export * as Artifact from "./Domain/Artifact.js"
export * as Command from "./Domain/Command.js"
export * as Event from "./Domain/Event.js"
export * as Errors from "./Domain/Errors.js"
export * as Session from "./Domain/Session.js"
export type { Artifact as ArtifactRecord } from "./Domain/Artifact.js"
export type { Session as SessionRecord } from "./Domain/Session.js"
