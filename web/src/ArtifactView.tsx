/**
 * One artifact of the transcript. Every string from the agent is rendered as
 * text (escaped by Preact), except `text` artifacts, which go through the
 * safe Markdown renderer.
 */
import type { ComponentChildren } from "preact"
import { memo } from "preact/compat"
import { useMemo, useState } from "preact/hooks"
import type { Artifact, PermissionDecision, ReinClient } from "../../src/client/index.js"
import { formatCost, ReinError } from "../../src/client/index.js"
import { DiffView, PatchView, permissionDiff, toolCallDiff } from "./Diff.js"
import { integer, prettyJson } from "./format.js"
import { renderMarkdown } from "./markdown.js"

const str = (v: unknown): string => (typeof v === "string" ? v : v === null || v === undefined ? "" : String(v))

const Markdown = ({ source }: { source: string }) => {
  const html = useMemo(() => renderMarkdown(source), [source])
  // Safe: markdown-it runs with html: false (raw HTML is escaped) and only http(s)/mailto links.
  return <div class="markdown" dangerouslySetInnerHTML={{ __html: html }} />
}

const StatusBadge = ({ status }: { status: string }) => <span class={`badge status-${status}`}>{status}</span>

interface Location {
  readonly path: string
  readonly line?: number
}

const locationsOf = (u: unknown): Array<Location> =>
  Array.isArray(u) ? u.filter((l): l is Location => typeof l === "object" && l !== null && typeof l.path === "string") : []

type Segment = { readonly text: string } | { readonly code: string; readonly lang: string }

/**
 * Tool output split at its Markdown code fences (```lang … ``` or ~~~): agents (Claude's adapter)
 * wrap a command's output in one. Only fences are read; the text between them stays as it is.
 * An unclosed fence runs to the end, as in Markdown.
 */
export const fencedSegments = (output: string): Array<Segment> => {
  const segments: Array<Segment> = []
  const lines = output.split("\n")
  let text: Array<string> = []
  let i = 0
  const flushText = () => {
    const t = text.join("\n")
    if (t.trim() !== "") segments.push({ text: t.replace(/^\n+|\n+$/g, "") })
    text = []
  }
  while (i < lines.length) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/.exec(lines[i]!)
    if (open === null) {
      text.push(lines[i]!)
      i++
      continue
    }
    flushText()
    const fence = open[1]!
    const code: Array<string> = []
    i++
    while (i < lines.length && !new RegExp(`^ {0,3}${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`).test(lines[i]!)) code.push(lines[i++]!)
    i++
    segments.push({ code: code.join("\n"), lang: open[2] ?? "" })
  }
  flushText()
  return segments
}

/** Tool output or input longer than CLIP_LINES lines or CLIP_CHARS characters is shown collapsed, until expanded. */
const CLIP_LINES = 24
const CLIP_CHARS = 3_000
/** What a collapsed text shows: its first lines, at most HEAD_CHARS characters. */
const HEAD_LINES = 10
const HEAD_CHARS = 1_500

/** `text`'s head for a collapsed view, and how many lines it has; undefined when it is short enough to show whole. */
export const clipped = (text: string): { readonly head: string; readonly lines: number } | undefined => {
  if (text.length <= CLIP_CHARS && text.split("\n", CLIP_LINES + 1).length <= CLIP_LINES) return undefined
  const lines = text.split("\n")
  const head = lines.slice(0, HEAD_LINES).join("\n")
  return { head: head.length > HEAD_CHARS ? `${head.slice(0, HEAD_CHARS)}…` : head, lines: lines.length }
}

/** What of a long text is shown expanded, kept while its artifact scrolls out of the DOM and back. */
const expanded = new Set<string>()

/** A long tool output or input, collapsed to its first lines with a button to show it all (and to collapse it again). */
const Collapsible = ({ text, id, what, children }: { text: string; id: string; what: string; children: (shown: string) => ComponentChildren }) => {
  const clip = useMemo(() => clipped(text), [text])
  const [open, setOpen] = useState(() => expanded.has(id))
  if (clip === undefined) return <>{children(text)}</>
  const toggle = () => {
    if (open) expanded.delete(id)
    else expanded.add(id)
    setOpen(!open)
  }
  return (
    <div class={`clip${open ? " open" : " collapsed"}`}>
      {children(open ? text : clip.head)}
      <button type="button" class="button secondary clip-toggle" aria-expanded={open} onClick={toggle}>
        {open ? `Collapse the ${what}` : `Show all ${integer(clip.lines)} line${clip.lines === 1 ? "" : "s"} of the ${what}`}
      </button>
    </div>
  )
}

const ToolOutput = ({ output, error }: { output: string; error: boolean }) => {
  const segments = useMemo(() => fencedSegments(output), [output])
  const cls = `tool-output${error ? " is-error" : ""}`
  if (!segments.some((s) => "code" in s)) return <pre class={cls}>{output}</pre>
  return (
    <div class={`${cls} fenced`}>
      {segments.map((s) =>
        "code" in s
          ? <pre class="code-block" data-lang={s.lang || undefined}><code>{s.code}</code></pre>
          : <p class="plain">{s.text}</p>
      )}
    </div>
  )
}

const ToolCall = ({ a, sessionId }: { a: Artifact; sessionId: string }) => {
  const input = prettyJson(a.input)
  const output = str(a.output)
  const title = str(a.title)
  const locations = locationsOf(a.locations)
  return (
    <section class="card tool" aria-label={`Tool call ${title || str(a.name)}`}>
      <header>
        <span class="card-kind">Tool</span>
        {title !== "" ? <strong class="tool-title">{title}</strong> : <code class="tool-name">{str(a.name)}</code>}
        {title !== "" && <code class="tool-name muted">{str(a.name)}</code>}
        {typeof a.toolKind === "string" && <span class={`badge tool-kind kind-${a.toolKind}`}>{a.toolKind.replace("_", " ")}</span>}
        <StatusBadge status={str(a.status)} />
      </header>
      {locations.length > 0 && (
        <ul class="tool-locations" aria-label="Locations">
          {locations.map((l) => <li><code>{l.line === undefined ? l.path : `${l.path}:${l.line}`}</code></li>)}
        </ul>
      )}
      {input !== "" && (
        <div class="io">
          <div class="io-label">Input</div>
          <Collapsible text={input} id={`${sessionId}/${a.seq}/input`} what="input">
            {(shown) => <pre class="tool-input">{shown}</pre>}
          </Collapsible>
        </div>
      )}
      {a.output !== null && a.output !== undefined && (
        <div class="io">
          <div class="io-label">Output</div>
          <Collapsible text={output} id={`${sessionId}/${a.seq}/output`} what="output">
            {(shown) => <ToolOutput output={shown} error={a.status === "error"} />}
          </Collapsible>
        </div>
      )}
    </section>
  )
}

const decisionLabels: Record<PermissionDecision, string> = {
  allow_once: "Allow",
  allow_always: "Always allow",
  reject: "Reject"
}
const decidedLabels: Record<string, string> = {
  allow_once: "Allowed once",
  allow_always: "Always allowed",
  reject: "Rejected",
  cancelled: "Cancelled: the turn ended before an answer"
}

interface PermissionOption {
  readonly optionId: string
  readonly name: string
  readonly kind: string
}

/** The request's own options (`{optionId, name, kind}`), or none: then the three plain decisions are offered. */
const typedOptions = (u: unknown): Array<PermissionOption> =>
  Array.isArray(u)
    ? u.filter((o): o is PermissionOption =>
      typeof o === "object" && o !== null && typeof o.optionId === "string" && typeof o.name === "string" && typeof o.kind === "string"
    )
    : []

const decisions = Object.keys(decisionLabels) as Array<PermissionDecision>

/**
 * A button's look by the option's kind: allowing once is the primary action, rejecting once the
 * danger one; the "always" options are secondary (plain), so the big blue button means the same
 * for every agent. The server sorts the options (allow once, allow always, reject once, reject
 * always); they are shown in the order given.
 */
const optionClass = (kind: string): string =>
  kind === "allow_once"
    ? "primary"
    : kind === "reject_once" || kind === "reject"
    ? "danger"
    : kind === "reject_always"
    ? "secondary danger-text"
    : "secondary"

/** The answers a pending permission request offers, as buttons; also on the session list's rows. */
export const PermissionActions = ({ a, client, sessionId }: { a: Artifact; client: ReinClient; sessionId: string }) => {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const options = typedOptions(a.options)
  const answer = async (reply: PermissionDecision | { readonly optionId: string }) => {
    setBusy(true)
    setError(undefined)
    try {
      await client.replyPermission(sessionId, str(a.requestId), reply)
    } catch (e) {
      setError(e instanceof ReinError && e.status === 409 ? `Not sent: ${e.message}` : `Not sent: ${(e as Error).message}`)
    } finally {
      setBusy(false)
    }
  }
  return (
    <>
      {options.length > 0
        ? (
          <div class="actions">
            {options.map((o) => (
              <button
                type="button"
                class={`button ${optionClass(o.kind)}`}
                data-option-id={o.optionId}
                data-option-kind={o.kind}
                disabled={busy}
                onClick={() => answer({ optionId: o.optionId })}
              >
                {o.name}
              </button>
            ))}
          </div>
        )
        : (
          <div class="actions">
            {decisions.map((d) => (
              <button type="button" class={`button ${optionClass(d)}`} data-option-kind={d} disabled={busy} onClick={() => answer(d)}>
                {decisionLabels[d]}
              </button>
            ))}
          </div>
        )}
      {error && <p class="inline-error" role="alert">{error}</p>}
    </>
  )
}

const Permission = ({ a, client, sessionId, toolCall }: { a: Artifact; client: ReinClient; sessionId: string; toolCall?: Artifact | undefined }) => {
  const decision = a.decision as string | null
  const expired = decision === null && toolCall !== undefined && toolCall.status !== "running" && toolCall.status !== "pending"
  const chosen = typedOptions(a.options).find((o) => o.optionId === a.optionId)
  // What the guarded tool call would change, next to the buttons: the user sees what they approve.
  // The request's own diff (what the sandbox says approving changes), else one read from the call's input.
  const change = useMemo(
    () =>
      decision !== null || expired
        ? undefined
        : permissionDiff(a.diff) ?? (toolCall !== undefined ? toolCallDiff(toolCall.input) : undefined),
    [decision, expired, a.diff, toolCall?.input]
  )
  return (
    <section class={`card permission${decision === null && !expired ? " pending" : ""}`} aria-label="Permission request">
      <header>
        <span class="card-kind">Permission</span>
        <strong class="permission-title">{str(a.title)}</strong>
      </header>
      {decision !== null
        ? (
          <p class={`decision decision-${decision}`}>
            {chosen !== undefined ? <>Chose “{chosen.name}” <span class="muted">({decidedLabels[decision] ?? decision})</span></> : (decidedLabels[decision] ?? decision)}
          </p>
        )
        : expired
        ? <p class="decision decision-expired">Expired: the tool call ended ({str(toolCall?.status)})</p>
        : (
          <div class={`permission-body${change !== undefined ? " with-diff" : ""}`}>
            {change !== undefined && (
              <div class="permission-diff">
                {change.path !== undefined && <code class="file-path">{change.path}</code>}
                <DiffView rows={change.rows} label={`Proposed change${change.path !== undefined ? ` to ${change.path}` : ""}`} />
              </div>
            )}
            <PermissionActions a={a} client={client} sessionId={sessionId} />
          </div>
        )}
    </section>
  )
}

const planIcons: Record<string, string> = { pending: "○", in_progress: "◐", completed: "●" }
const planLabels: Record<string, string> = { pending: "pending", in_progress: "in progress", completed: "done" }

/** A plan; `stopped`: its turn was stopped before it was finished (it is not running any more). */
const Plan = ({ a, stopped }: { a: Artifact; stopped: boolean }) => {
  const entries = Array.isArray(a.entries) ? (a.entries as Array<{ content: string; status: string }>) : []
  const done = entries.filter((e) => e.status === "completed").length
  const halted = stopped && done < entries.length
  return (
    <section class={`card plan${halted ? " stopped" : ""}`} aria-label="Plan">
      <header>
        <span class="card-kind">Plan</span>
        <span class="muted plan-progress">{halted ? `stopped at ${done}/${entries.length}` : `${done}/${entries.length} done`}</span>
      </header>
      <ul class="checklist">
        {entries.map((e) => (
          <li class={`plan-${e.status}`}>
            <span class="plan-icon" aria-hidden="true">{planIcons[e.status] ?? "○"}</span>
            <span class="plan-content">{str(e.content)}</span>
            <span class="sr-only"> ({planLabels[e.status] ?? e.status})</span>
          </li>
        ))}
      </ul>
    </section>
  )
}

export const FileChange = ({ a }: { a: Artifact }) => {
  const diff = str(a.diff)
  return (
    <section class="card file-change" aria-label={`File change ${str(a.path)}`}>
      <header>
        <span class="card-kind">File</span>
        <span class={`badge action-${str(a.action)}`}>{str(a.action)}</span>
        <code class="file-path">{str(a.path)}</code>
      </header>
      {diff !== "" && <PatchView patch={diff} label={`Diff of ${str(a.path)}`} />}
    </section>
  )
}

const contextOf = (u: unknown): { used: number; size: number } | undefined =>
  typeof u === "object" && u !== null && typeof (u as any).used === "number" && typeof (u as any).size === "number"
    ? (u as { used: number; size: number })
    : undefined

const Usage = ({ a }: { a: Artifact }) => {
  const context = contextOf(a.context)
  return (
    <p class="usage">
      <span class="card-kind">Usage</span> {integer(a.inputTokens)} input tokens · {integer(a.outputTokens)} output tokens
      {typeof a.costUsd === "number" && <> · <span class="usage-cost" title={`$${a.costUsd.toFixed(4)}`}>{formatCost(a.costUsd)}</span></>}
      {context !== undefined && (
        <span class="context">
          {" "}· context {integer(context.used)} / {integer(context.size)}
          {context.size > 0 && <> ({Math.min(100, Math.round((context.used / context.size) * 100))}%)</>}
        </span>
      )}
    </p>
  )
}

interface Mode {
  readonly id: string
  readonly name: string
  readonly description?: string
}

const modesOf = (u: unknown): Array<Mode> =>
  Array.isArray(u) ? u.filter((m): m is Mode => typeof m === "object" && m !== null && typeof m.id === "string" && typeof m.name === "string") : []

/** Who the agent is, its modes (the current one marked, and a selector that asks for another), its commands. */
const Agent = ({ a, client, sessionId }: { a: Artifact; client: ReinClient; sessionId: string }) => {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const modes = modesOf(a.modes)
  const current = typeof a.currentModeId === "string" ? a.currentModeId : undefined
  const commands = Array.isArray(a.commands) ? (a.commands as Array<{ name?: unknown; description?: unknown }>) : []
  const choose = async (modeId: string) => {
    if (modeId === "" || modeId === current) return
    setBusy(true)
    setError(undefined)
    try {
      await client.setMode(sessionId, modeId)
    } catch (e) {
      setError(e instanceof ReinError && e.code === "no_sandbox" ? "Not sent: no agent is connected." : `Not sent: ${(e as Error).message}`)
    } finally {
      setBusy(false)
    }
  }
  return (
    <section class="card agent" aria-label="Agent">
      <header>
        <span class="card-kind">Agent</span>
        <strong class="agent-name">{str(a.name) || "unnamed agent"}</strong>
        {typeof a.version === "string" && <span class="muted agent-version">{a.version}</span>}
      </header>
      {modes.length > 0 && (
        <div class="agent-modes">
          <ul class="modes" aria-label="Modes">
            {modes.map((m) => (
              <li class={m.id === current ? "mode current" : "mode"} data-mode-id={m.id} title={str(m.description)}>
                {m.name}
                {m.id === current && <span class="sr-only"> (current)</span>}
              </li>
            ))}
          </ul>
          <label class="mode-select">
            <span>Switch mode</span>
            <select value={current ?? ""} disabled={busy} onChange={(e) => void choose((e.target as HTMLSelectElement).value)}>
              {current === undefined && <option value="">(none)</option>}
              {modes.map((m) => <option value={m.id}>{m.name}</option>)}
            </select>
          </label>
        </div>
      )}
      {commands.length > 0 && (
        <details class="agent-commands">
          <summary>{commands.length} command{commands.length === 1 ? "" : "s"}</summary>
          <ul>
            {commands.map((c) => <li><code>/{str(c.name)}</code> {str(c.description)}</li>)}
          </ul>
        </details>
      )}
      {error && <p class="inline-error" role="alert">{error}</p>}
    </section>
  )
}

/** The worktree's diff, posted after a turn: a line here, the diff itself in the Changes tab. */
const ChangesLine = ({ a }: { a: Artifact }) => {
  const diff = str(a.diff)
  const files = (diff.match(/^diff --git /gm) ?? []).length
  return (
    <p class="changes-line muted" role="note">
      <span class="card-kind">Changes</span>{" "}
      {files === 0 ? "no change against the base" : `${files} file${files === 1 ? "" : "s"} changed against the base`}
      {a.truncated === true && " (truncated)"} · see the Changes tab
    </p>
  )
}

const Body = ({ a, client, sessionId, toolCall, stopped }: Props) => {
  switch (a.kind) {
    case "user_message":
      return (
        <div class="message user">
          <div class="who">You</div>
          <p class="plain">{str(a.text)}</p>
        </div>
      )
    case "text":
      return (
        <div class="message agent">
          <div class="who">Agent</div>
          <Markdown source={str(a.text)} />
        </div>
      )
    case "reasoning":
      return (
        <details class="reasoning">
          <summary>Reasoning</summary>
          <p class="plain">{str(a.text)}</p>
        </details>
      )
    case "tool_call":
      return <ToolCall a={a} sessionId={sessionId} />
    case "permission":
      return <Permission a={a} client={client} sessionId={sessionId} toolCall={toolCall} />
    case "plan":
      return <Plan a={a} stopped={stopped === true} />
    case "file_change":
      return <FileChange a={a} />
    case "error":
      // The message keeps its line breaks: an agent that crashed reports its stderr's last lines.
      return (
        <div class="card agent-error">
          <header>
            <strong>Error</strong>
            {a.code !== null && a.code !== undefined && <code class="error-code">{str(a.code)}</code>}
          </header>
          <div class="error-message">{str(a.message)}</div>
        </div>
      )
    case "turn_stopped":
      return (
        <p class="turn-stopped" role="note">
          <span aria-hidden="true">■</span> Turn stopped
        </p>
      )
    case "usage":
      return <Usage a={a} />
    case "agent":
      return <Agent a={a} client={client} sessionId={sessionId} />
    case "changes":
      return <ChangesLine a={a} />
    default:
      if (a.kind === "custom" && (a.name === "rein.new_conversation" || a.name === "rein.resumed_conversation")) {
        const data = a.data as { text?: unknown } | null
        return (
          <p class="new-conversation" role="note" title={typeof data?.text === "string" ? data.text : undefined}>
            <span aria-hidden="true">↻</span>{" "}
            {a.name === "rein.new_conversation" ? "Agent started again: a new conversation" : "Agent started again: it resumed its conversation"}
          </p>
        )
      }
      return (
        <details class="card custom">
          <summary>
            <span class="card-kind">{a.kind === "custom" ? "Custom" : str(a.kind)}</span> {str(a.name)}
          </summary>
          <pre>{JSON.stringify(a.kind === "custom" ? a.data : a, null, 2)}</pre>
        </details>
      )
  }
}

interface Props {
  readonly a: Artifact
  readonly client: ReinClient
  readonly sessionId: string
  /** For a permission: the tool call it guards, to tell when it expired. */
  readonly toolCall?: Artifact | undefined
  /** For a plan: its turn was stopped (a `turn_stopped` follows it in the same turn). */
  readonly stopped?: boolean | undefined
}

/** Re-renders only when its artifact (or the guarded tool call) changed. */
export const ArtifactView = memo((props: Props) => (
  <div class={`artifact kind-${props.a.kind}`} data-seq={props.a.seq} data-kind={props.a.kind} data-updated-at={props.a.updatedAt}>
    <Body {...props} />
  </div>
))
