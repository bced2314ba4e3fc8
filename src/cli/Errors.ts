/**
 * Why a command failed, and the exit code it ends with: 1 when the server
 * said no (its message is shown) or the input was wrong, 2 when the server
 * could not be reached.
 */
import * as Data from "effect/Data"
import { ReinError } from "../client/errors.js"

/** The server answered with an error (4xx, 5xx). */
export class Rejected extends Data.TaggedError("Rejected")<{
  readonly status: number
  readonly code: string
  readonly message: string
}> {}

/** No answer from the server at all. */
export class Unreachable extends Data.TaggedError("Unreachable")<{
  readonly url: string
  readonly message: string
}> {}

/** The command cannot be done as asked (nothing pending to approve, empty prompt, ...). */
export class Usage extends Data.TaggedError("Usage")<{ readonly message: string }> {}

export type CliError = Rejected | Unreachable | Usage

export const exitCode = (e: CliError): number => (e._tag === "Unreachable" ? 2 : 1)

/** What is printed on stderr. */
export const describe = (e: CliError): string =>
  e._tag === "Unreachable" ? `cannot reach the Rein server at ${e.url}: ${e.message}` : e.message

const causeMessage = (e: ReinError): string => {
  const cause = (e as { cause?: { cause?: { code?: string; message?: string } } }).cause?.cause
  return cause?.code ?? cause?.message ?? e.message
}

/** A ReinError, or anything a fetch threw, as a CliError. */
export const fromUnknown = (url: string) => (e: unknown): CliError => {
  if (e instanceof ReinError) {
    return e.status === 0 ? new Unreachable({ url, message: causeMessage(e) }) : new Rejected({ status: e.status, code: e.code, message: e.message })
  }
  return new Unreachable({ url, message: e instanceof Error ? e.message : String(e) })
}
