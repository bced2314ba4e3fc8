/**
 * The server as the commands see it: the typed `ReinClient`, its calls as
 * Effects failing with a `CliError`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ReinClient } from "../client/ReinClient.js"
import { type CliError, fromUnknown, Rejected } from "./Errors.js"

export interface ApiConfig {
  readonly url: string
  readonly token: string | undefined
}

export class Api extends Context.Tag("rein/cli/Api")<Api, {
  readonly url: string
  readonly client: ReinClient
  /** Runs one client call; a rejection becomes a CliError. */
  readonly call: <A>(f: (client: ReinClient) => Promise<A>) => Effect.Effect<A, CliError>
  /** What a client call or a watch failed with, as the user reads it. */
  readonly failure: (e: unknown) => CliError
}>() {}

/**
 * A failure in words: a 401 names the flag and the variable that give the token, a 403 says the
 * token given was refused; anything else as the server said it.
 */
export const explain = (config: ApiConfig, url: string) => (e: unknown): CliError => {
  const error = fromUnknown(url)(e)
  if (error._tag !== "Rejected") return error
  if (error.status === 401) {
    return new Rejected({
      ...error,
      message: config.token === undefined
        ? `the server at ${url} needs a token: pass --token TOKEN or set REIN_TOKEN`
        : `the server at ${url} did not accept the token (${error.message}); check --token / REIN_TOKEN`
    })
  }
  if (error.status === 403) {
    return new Rejected({ ...error, message: `the token (--token / REIN_TOKEN) was refused: ${error.message}` })
  }
  return error
}

export const make = (config: ApiConfig): typeof Api.Service => {
  const client = new ReinClient({ baseUrl: config.url, token: config.token, retry: { initialDelay: 200, maxDelay: 2_000 } })
  const failure = explain(config, client.baseUrl)
  return {
    url: client.baseUrl,
    client,
    call: (f) => Effect.tryPromise({ try: () => f(client), catch: failure }),
    failure
  }
}

export const layer = (config: ApiConfig): Layer.Layer<Api> => Layer.sync(Api, () => make(config))

/** A command for a session's sandbox: a 409 without one says so in words. */
export const noSandbox = (id: string) => (e: CliError): CliError =>
  e._tag === "Rejected" && e.code === "no_sandbox" ? new Rejected({ ...e, message: `no sandbox connected to ${id}` }) : e
