/**
 * Markdown for untrusted agent output. markdown-it with `html: false`
 * escapes every character of raw HTML, so the output only holds the tags
 * markdown-it itself emits; links are kept only for http(s) and mailto;
 * images are off (they would load third-party URLs).
 */
import MarkdownIt from "markdown-it"

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: false })
md.disable(["image"])

const safeLink = /^(https?:|mailto:)/i
md.validateLink = (url: string) => safeLink.test(url.trim())

const defaultLinkOpen = md.renderer.rules.link_open ??
  ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options))
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  const token = tokens[idx]!
  token.attrSet("target", "_blank")
  token.attrSet("rel", "noopener noreferrer nofollow")
  return defaultLinkOpen(tokens, idx, options, env, self)
}

export const renderMarkdown = (source: string): string => md.render(source)
