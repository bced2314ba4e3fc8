/**
 * Where the commands read and write: the process's streams and environment,
 * as a service so nothing else touches `process`.
 */
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import { type Style, styleFor } from "./Ansi.js"

export class Io extends Context.Tag("rein/cli/Io")<Io, {
  readonly stdout: NodeJS.WriteStream
  readonly stderr: NodeJS.WriteStream
  readonly stdin: NodeJS.ReadStream
  readonly env: NodeJS.ProcessEnv
  /** The working directory, which relative paths given on the command line start from. */
  readonly cwd: string
  /** stdout is a terminal: colour, Markdown, redrawing in place. */
  readonly tty: boolean
  /** Colours for stdout (none when piped or with NO_COLOR). */
  readonly style: Style
  readonly out: (s: string) => void
  readonly err: (s: string) => void
}>() {}

export const layerProcess: Layer.Layer<Io> = Layer.sync(Io, () => {
  const tty = process.stdout.isTTY === true
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    tty,
    style: tty ? styleFor(process.env) : styleFor({ NO_COLOR: "1" }),
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s)
  }
})
