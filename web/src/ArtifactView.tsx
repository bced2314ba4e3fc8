/**
 * One artifact of the transcript. Every string from the agent is rendered as
 * text (escaped by Preact), except `text` artifacts, which go through the
 * safe Markdown renderer.
 */
import { memo } from "preact/compat"
import { useMemo, useState } from "preact/hooks"
import type { Artifact, PermissionDecision, ReinClient } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { integer, prettyJson } from "./format.js"
import { renderMarkdown } from "./markdown.js"

const str = (v: unknown): string => (typeof v === "string" ? v : v === null || v === undefined ? "" : String(v))

const Markdown = ({ source }: { source: string }) => {
  const html = useMemo(() => renderMarkdown(source), [source])
  // Safe: markdown-it runs with html: false (raw HTML is escaped) and only http(s)/mailto links.
  return <div class="markdown" dangerouslySetInnerHTML={{ __html: html }} />
}

const StatusBadge = ({ status }: { status: string }) => <span class={`badge status-${status}`}>{status}</span>

const ToolCall = ({ a }: { a: Artifact }) => {
  const input = prettyJson(a.input)
  const output = str(a.output)
  return (
    <section class="card tool" aria-label={`Tool call ${str(a.name)}`}>
      <header>
        <span class="card-kind">Tool</span>
        <code class="tool-name">{str(a.name)}</code>
        <StatusBadge status={str(a.status)} />
      </header>
      {input !== "" && (
        <div class="io">
          <div class="io-label">Input</div>
          <pre class="tool-input">{input}</pre>
        </div>
      )}
      {a.output !== null && a.output !== undefined && (
        <div class="io">
          <div class="io-label">Output</div>
          <pre class={`tool-output${a.status === "error" ? " is-error" : ""}`}>{output}</pre>
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
  reject: "Rejected"
}

/** The decisions a request offers: those named in `options` (strings or `{kind|id|decision}`), else all three. */
const offered = (options: unknown): Array<PermissionDecision> => {
  const all = Object.keys(decisionLabels) as Array<PermissionDecision>
  if (!Array.isArray(options)) return all
  const named = new Set(
    options.map((o) => (typeof o === "string" ? o : o && typeof o === "object" ? (o.kind ?? o.decision ?? o.id) : undefined))
  )
  const picked = all.filter((d) => named.has(d))
  return picked.length > 0 ? picked : all
}

const Permission = ({ a, client, sessionId, toolCall }: { a: Artifact; client: ReinClient; sessionId: string; toolCall?: Artifact | undefined }) => {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()
  const decision = a.decision as string | null
  const expired = decision === null && toolCall !== undefined && toolCall.status !== "running"
  const answer = async (d: PermissionDecision) => {
    setBusy(true)
    setError(undefined)
    try {
      await client.replyPermission(sessionId, str(a.requestId), d)
    } catch (e) {
      setError(e instanceof ReinError && e.status === 409 ? `Not sent: ${e.message}` : `Not sent: ${(e as Error).message}`)
    } finally {
      setBusy(false)
    }
  }
  return (
    <section class={`card permission${decision === null && !expired ? " pending" : ""}`} aria-label="Permission request">
      <header>
        <span class="card-kind">Permission</span>
        <strong class="permission-title">{str(a.title)}</strong>
      </header>
      {decision !== null
        ? <p class={`decision decision-${decision}`}>{decidedLabels[decision] ?? decision}</p>
        : expired
        ? <p class="decision decision-expired">Expired: the tool call ended ({str(toolCall?.status)})</p>
        : (
          <div class="actions">
            {offered(a.options).map((d) => (
              <button type="button" class={`button ${d === "reject" ? "danger" : "primary"}`} disabled={busy} onClick={() => answer(d)}>
                {decisionLabels[d]}
              </button>
            ))}
          </div>
        )}
      {error && <p class="inline-error" role="alert">{error}</p>}
    </section>
  )
}

const planIcons: Record<string, string> = { pending: "○", in_progress: "◐", completed: "●" }
const planLabels: Record<string, string> = { pending: "pending", in_progress: "in progress", completed: "done" }

const Plan = ({ a }: { a: Artifact }) => {
  const entries = Array.isArray(a.entries) ? (a.entries as Array<{ content: string; status: string }>) : []
  const done = entries.filter((e) => e.status === "completed").length
  return (
    <section class="card plan" aria-label="Plan">
      <header>
        <span class="card-kind">Plan</span>
        <span class="muted">{done}/{entries.length} done</span>
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

const diffClass = (line: string) =>
  line.startsWith("+++") || line.startsWith("---") ? "meta" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : ""

const FileChange = ({ a }: { a: Artifact }) => {
  const diff = str(a.diff)
  return (
    <section class="card file-change" aria-label={`File change ${str(a.path)}`}>
      <header>
        <span class="card-kind">File</span>
        <span class={`badge action-${str(a.action)}`}>{str(a.action)}</span>
        <code class="file-path">{str(a.path)}</code>
      </header>
      {diff !== "" && (
        <pre class="diff">{diff.split("\n").map((line) => <span class={`diff-line ${diffClass(line)}`}>{line + "\n"}</span>)}</pre>
      )}
    </section>
  )
}

const Usage = ({ a }: { a: Artifact }) => (
  <p class="usage">
    <span class="card-kind">Usage</span> {integer(a.inputTokens)} input tokens · {integer(a.outputTokens)} output tokens
    {typeof a.costUsd === "number" && <> · ${a.costUsd.toFixed(4)}</>}
  </p>
)

const Body = ({ a, client, sessionId, toolCall }: Props) => {
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
      return <ToolCall a={a} />
    case "permission":
      return <Permission a={a} client={client} sessionId={sessionId} toolCall={toolCall} />
    case "plan":
      return <Plan a={a} />
    case "file_change":
      return <FileChange a={a} />
    case "error":
      return (
        <div class="card agent-error">
          <strong>Error</strong> {str(a.message)}
          {a.code !== null && a.code !== undefined && <code class="error-code">{str(a.code)}</code>}
        </div>
      )
    case "usage":
      return <Usage a={a} />
    default:
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
}

/** Re-renders only when its artifact (or the guarded tool call) changed. */
export const ArtifactView = memo((props: Props) => (
  <div class={`artifact kind-${props.a.kind}`} data-seq={props.a.seq} data-kind={props.a.kind} data-updated-at={props.a.updatedAt}>
    <Body {...props} />
  </div>
))
