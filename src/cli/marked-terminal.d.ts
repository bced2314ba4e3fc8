// marked-terminal ships no types (DefinitelyTyped's pin marked < 12); what we use of it.
declare module "marked-terminal" {
  import type { MarkedExtension } from "marked"
  export interface TerminalRendererOptions {
    readonly width?: number
    readonly reflowText?: boolean
    readonly showSectionPrefix?: boolean
    readonly tab?: number
    readonly emoji?: boolean
  }
  export function markedTerminal(options?: TerminalRendererOptions, highlightOptions?: Record<string, unknown>): MarkedExtension
}
