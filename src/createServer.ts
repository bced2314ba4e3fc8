/**
 * `createServer()`: a Promise facade over `Server.layer`, run by a
 * ManagedRuntime. No logic lives here.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { InvalidInput, type SessionExists, type StoreError } from "./Domain/Errors.js"
import type { Session } from "./Domain/Session.js"
import { SessionId } from "./Domain/Session.js"
import * as Server from "./Server.js"
import { SessionStore } from "./SessionStore.js"
import { Sessions } from "./Sessions.js"

export interface ReinServer {
  /** The port the server listens on (useful with `port: 0`). */
  readonly port: number
  /** The SessionStore service in use. */
  readonly store: typeof SessionStore.Service
  /** Rejects when the id is invalid or already exists. */
  readonly createSession: (id: string, project?: string) => Promise<Session>
  readonly getSession: (id: string) => Promise<Session | undefined>
  /** `attention`: only the sessions that need someone (pending permissions, or a last turn ended in `error`). */
  readonly getSessions: (filter?: { readonly project?: string; readonly attention?: boolean }) => Promise<ReadonlyArray<Session>>
  /** Ends every stream and timer, closes the store and frees the port. */
  readonly close: () => Promise<void>
}

const validId = Schema.decodeUnknownEither(SessionId)

export const createServer = async (options: Server.ServerOptions = {}): Promise<ReinServer> => {
  const runtime = ManagedRuntime.make(Server.layer(options))
  try {
    const { address, sessions, store } = await runtime.runPromise(
      Effect.all({ address: Effect.map(HttpServer.HttpServer, (s) => s.address), sessions: Sessions, store: SessionStore })
    )
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    // Reject with the domain error itself (SessionExists, ...), not a FiberFailure wrapper.
    const run = <A, E>(effect: Effect.Effect<A, E>) =>
      runtime.runPromise(Effect.either(effect)).then(Either.getOrThrowWith((e) => e))
    let closing: Promise<void> | undefined
    return {
      port: address.port,
      store,
      createSession: (id, project) =>
        run<Session, InvalidInput | SessionExists | StoreError>(Either.match(validId(id), {
          onLeft: () => Effect.fail(new InvalidInput({ message: `invalid session id ${JSON.stringify(id)}` })),
          onRight: (id) => sessions.create(id, project ?? null)
        })),
      getSession: (id) => run(Effect.map(Effect.option(sessions.get(id)), Option.getOrUndefined)),
      getSessions: (filter) => run(sessions.list(filter)),
      close: () => (closing ??= runtime.dispose())
    }
  } catch (e) {
    await runtime.dispose()
    throw e
  }
}
