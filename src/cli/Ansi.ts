/**
 * Terminal styling: SGR colours (off when NO_COLOR is set), cursor moves for
 * the live region, and the visible width of a styled string.
 */

const sgr = (open: number, close: number) => (s: string): string => `\x1b[${open}m${s}\x1b[${close}m`

export interface Style {
  readonly bold: (s: string) => string
  readonly dim: (s: string) => string
  readonly italic: (s: string) => string
  readonly inverse: (s: string) => string
  readonly red: (s: string) => string
  readonly green: (s: string) => string
  readonly yellow: (s: string) => string
  readonly blue: (s: string) => string
  readonly magenta: (s: string) => string
  readonly cyan: (s: string) => string
  readonly gray: (s: string) => string
}

const id = (s: string) => s

export const colors: Style = {
  bold: sgr(1, 22),
  dim: sgr(2, 22),
  italic: sgr(3, 23),
  inverse: sgr(7, 27),
  red: sgr(31, 39),
  green: sgr(32, 39),
  yellow: sgr(33, 39),
  blue: sgr(34, 39),
  magenta: sgr(35, 39),
  cyan: sgr(36, 39),
  gray: sgr(90, 39)
}

export const noColors: Style = {
  bold: id, dim: id, italic: id, inverse: id, red: id, green: id, yellow: id, blue: id, magenta: id, cyan: id, gray: id
}

/** Colours unless the user opted out (https://no-color.org). */
export const styleFor = (env: NodeJS.ProcessEnv): Style => (env.NO_COLOR !== undefined && env.NO_COLOR !== "" ? noColors : colors)

// CSI sequences (colours, cursor moves) and OSC sequences (hyperlinks, titles).
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g

export const strip = (s: string): string => s.replace(ANSI, "")

/** Control characters other than newline and tab, which a server's text must not smuggle into the terminal. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g

export const sanitize = (s: string): string => s.replace(CONTROL, "")

/** Code points shown, ignoring escape sequences (wide characters count as one). */
export const visibleWidth = (s: string): number => [...strip(s)].length

/** Rows a line takes on a terminal `columns` wide (at least one). */
export const rows = (line: string, columns: number): number => Math.max(1, Math.ceil(visibleWidth(line) / Math.max(1, columns)))

/** Cuts a plain (unstyled) string to `width` code points, with an ellipsis when cut. */
export const truncate = (s: string, width: number): string => {
  const chars = [...s]
  return chars.length <= width ? s : chars.slice(0, Math.max(0, width - 1)).join("") + "…"
}

/** Moves the cursor up `n` rows to column 0 and clears from there to the end of the screen. */
export const eraseUp = (n: number): string => (n > 0 ? `\r\x1b[${n}A\x1b[J` : "\r\x1b[J")
export const hideCursor = "\x1b[?25l"
export const showCursor = "\x1b[?25h"
