/**
 * Markdown for the terminal: `marked` parses, `marked-terminal` renders with
 * colours, reflowed to the terminal's width.
 */
import { Marked } from "marked"
import { markedTerminal } from "marked-terminal"
import { sanitize, strip } from "./Ansi.js"

const renderers = new Map<number, Marked>()

const rendererFor = (width: number): Marked => {
  let m = renderers.get(width)
  if (m === undefined) {
    m = new Marked(markedTerminal({ width, reflowText: true, showSectionPrefix: false, emoji: false }))
    renderers.set(width, m)
  }
  return m
}

/** The lines of `text` rendered for a terminal `width` columns wide; plain when `color` is off. */
export const renderMarkdown = (text: string, width: number, color: boolean): Array<string> => {
  let out: string
  try {
    out = rendererFor(Math.max(20, width)).parse(sanitize(text), { async: false })
  } catch {
    out = sanitize(text)
  }
  out = out.replace(/\n+$/, "")
  return (color ? out : strip(out)).split("\n")
}
