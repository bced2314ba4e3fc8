/**
 * The runner `rein-server` embeds for its own machine (issue 20): the same `Runner` as
 * `rein-runner`, over loopback, registered in memory under the id `local` (stable, so that after
 * a restart it reconciles the worktrees it made before). Started once the server listens; stopped
 * before the server drains, so its agents' last events still reach the store.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { randomBytes } from "node:crypto"
import { homedir, hostname } from "node:os"
import { join } from "node:path"
import { Runners } from "../Runners.js"
import { loadProfiles } from "./Profiles.js"
import { Runner } from "./Runner.js"

export interface EmbeddedRunnerOptions {
  /** Its id (default `local`); instances sharing a database each need their own. */
  readonly id?: string | undefined
  /**
   * Whose worktrees it reconciles (default: a fresh one per process): the server's store names
   * it, so two servers on one machine sharing `~/.rein/worktrees` never touch each other's
   * agents, while a restarted server finds its own.
   */
  readonly owner?: string | undefined
  /** Repositories it serves (absolute paths). */
  readonly repos: ReadonlyArray<string>
  /** An agents file that adds or overrides profiles. */
  readonly agentsFile?: string | undefined
  /** Default `~/.rein/worktrees`. */
  readonly worktrees?: string | undefined
  readonly maxSessions?: number | undefined
  readonly minFreeDisk?: number | undefined
  /** The program that runs the `demo` agent (tests point it at their own build). */
  readonly demoAgent?: { readonly command: string; readonly args: ReadonlyArray<string> } | undefined
  /** The environment agents' allow-listed variables come from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  readonly log?: ((line: string) => void) | undefined
}

export const defaultWorktrees = () => join(homedir(), ".rein", "worktrees")

export const layer = (options: EmbeddedRunnerOptions): Layer.Layer<never, Error, Runners | HttpServer.HttpServer> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const runners = yield* Runners
    const { address } = yield* HttpServer.HttpServer
    if (address._tag !== "TcpAddress") return
    const profiles = yield* Effect.tryPromise({
      try: () => loadProfiles(options.agentsFile),
      catch: (e) => e instanceof Error ? e : new Error(String(e))
    })
    const { id, token } = yield* runners.registerEmbedded(options.id ?? "local", hostname())
    const host = address.hostname === "0.0.0.0" || address.hostname === "::" ? "127.0.0.1" : address.hostname
    const runner = new Runner({
      url: `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`,
      id,
      owner: options.owner ?? `${id}@${randomBytes(6).toString("hex")}`,
      token,
      profiles,
      repos: options.repos,
      worktrees: options.worktrees ?? defaultWorktrees(),
      maxSessions: options.maxSessions,
      minFreeDisk: options.minFreeDisk,
      demoAgent: options.demoAgent,
      env: options.env,
      log: options.log ?? ((line) => process.stderr.write(`rein-server: runner: ${line}\n`))
    })
    yield* Effect.acquireRelease(Effect.promise(() => runner.start()), () => Effect.promise(() => runner.close()))
  }))
