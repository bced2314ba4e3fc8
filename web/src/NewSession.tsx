/**
 * "New session": a button above the list that opens a small dialog (a native `<dialog>`, modal:
 * Escape or Cancel closes it) asking for what a session is created with: the agent a runner starts
 * for it (from the online runners' profiles, or none: a sandbox connects by itself), the repository
 * its worktree is made of (from the runners that offer that agent), a first prompt, an id (optional:
 * one is made up from the prompt when left empty) and a project.
 */
import { useMemo, useRef, useState } from "preact/hooks"
import type { ReinClient, RunnerInfo } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { navigate, sessionHref } from "./route.js"
import { useRunners } from "./Runners.js"
import { keepSandboxToken } from "./sandboxTokens.js"

export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

const randomPart = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0")

const slug = (text: string, words: number, max: number) =>
  text.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "").split(/[^a-z0-9]+/).filter((w) => w !== "").slice(0, words)
    .join("-").slice(0, max).replace(/-+$/, "")

/**
 * An id for a session created without one: a short slug of the prompt's first words (else the
 * project's name), then a short random part, e.g. `write-notes-txt-k3x9ab`.
 */
export const newSessionId = (project: string, prompt = ""): string => {
  const stem = slug(prompt, 4, 32) || slug(project, 6, 40)
  return `${stem === "" ? "session" : stem}-${randomPart()}`
}

/** The agents the online runners offer, each once (by id), in the order first offered. */
export const offeredAgents = (runners: ReadonlyArray<RunnerInfo>): Array<{ id: string; name: string }> => {
  const seen = new Map<string, { id: string; name: string }>()
  for (const r of runners) if (r.online) for (const a of r.agents) if (!seen.has(a.id)) seen.set(a.id, { id: a.id, name: a.name })
  return [...seen.values()]
}

/** The repositories of the online runners that offer `agent`, each once. */
export const reposFor = (runners: ReadonlyArray<RunnerInfo>, agent: string): Array<string> => [
  ...new Set(runners.filter((r) => r.online && r.agents.some((a) => a.id === agent)).flatMap((r) => r.repos))
]

/** A repository shown by its last part, then its full path. */
const repoLabel = (path: string) => {
  const name = path.replace(/\/+$/, "").split("/").pop() ?? path
  return name === path ? path : `${name} (${path})`
}

const NONE = ""

export const NewSession = ({ client }: { client: ReinClient }) => {
  const dialog = useRef<HTMLDialogElement>(null)
  const [isOpen, setOpen] = useState(false)
  const { runners, error: runnersError } = useRunners(client, 5000, isOpen)
  const agents = useMemo(() => offeredAgents(runners ?? []), [runners])
  const [id, setId] = useState("")
  const [project, setProject] = useState("")
  const [agentChoice, setAgentChoice] = useState<string | undefined>()
  const [repoChoice, setRepoChoice] = useState<string | undefined>()
  const [prompt, setPrompt] = useState("")
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()

  // Until someone chooses, the first agent offered (a session with an agent needs no other command).
  const agent = agentChoice ?? agents[0]?.id ?? NONE
  const repos = useMemo(() => (agent === NONE ? [] : reposFor(runners ?? [], agent)), [runners, agent])
  const repo = repoChoice !== undefined && repos.includes(repoChoice) ? repoChoice : repos[0]
  // The agents are not known yet: creating now would make a session with none.
  const loading = isOpen && runners === undefined && runnersError === undefined

  const open = () => {
    setError(undefined)
    setOpen(true)
    dialog.current?.showModal()
  }
  const close = () => dialog.current?.close()

  const submit = async (e: Event) => {
    e.preventDefault()
    const given = id.trim()
    if (given !== "" && (!ID_PATTERN.test(given) || given === "stream")) {
      setError("Use letters, digits and . _ : - (starting with a letter or digit); \"stream\" is reserved.")
      return
    }
    const text = agent === NONE ? "" : prompt.trim()
    const chosen = given === "" ? newSessionId(project.trim(), text) : given
    setBusy(true)
    setError(undefined)
    try {
      const created = await client.createSession(chosen, {
        ...(project.trim() ? { project: project.trim() } : {}),
        ...(agent !== NONE ? { agent, ...(repo !== undefined ? { repo } : {}), ...(text !== "" ? { prompt: text } : {}) } : {})
      })
      if (created.sandboxToken !== undefined) keepSandboxToken(chosen, created.sandboxToken)
      setId("")
      setPrompt("")
      close()
      navigate(sessionHref(chosen))
    } catch (err) {
      setError(err instanceof ReinError ? err.message : String(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <>
      <button type="button" class="button primary small new-session" onClick={open} aria-haspopup="dialog">
        New session
      </button>
      <dialog ref={dialog} class="new-session-dialog" aria-labelledby="new-session-title" onClose={() => setOpen(false)}>
        <form class="new-session-form" onSubmit={submit} aria-label="Create a session">
          <h2 id="new-session-title">New session</h2>
          <label>
            <span class="label">Agent</span>
            <select
              name="agent"
              value={agent}
              onChange={(e) => {
                setAgentChoice((e.target as HTMLSelectElement).value)
                setError(undefined)
              }}
            >
              {agents.map((a) => <option value={a.id}>{a.name === a.id ? a.id : `${a.name} (${a.id})`}</option>)}
              <option value={NONE}>none: connect a sandbox yourself</option>
            </select>
          </label>
          {runners !== undefined && agents.length === 0 && (
            <p class="hint muted">No runner is online, so no agent can be started here: connect one with <code>rein-sandbox</code> after creating the session.</p>
          )}
          {runnersError !== undefined && <p class="hint muted">Cannot read the runners: {runnersError}</p>}
          {agent !== NONE && (
            <>
              <label>
                <span class="label">Repository</span>
                <select name="repo" value={repo ?? ""} disabled={repos.length === 0} onChange={(e) => setRepoChoice((e.target as HTMLSelectElement).value)}>
                  {repos.length === 0 && <option value="">no repository offered</option>}
                  {repos.map((p) => <option value={p}>{repoLabel(p)}</option>)}
                </select>
              </label>
              <label>
                <span class="label">First prompt</span>
                <textarea
                  name="prompt"
                  rows={3}
                  value={prompt}
                  placeholder="optional: what the agent should do first"
                  onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)}
                />
              </label>
            </>
          )}
          <label>
            <span class="label">Session id</span>
            <input
              name="id"
              value={id}
              placeholder={agent !== NONE && prompt.trim() !== "" ? "optional: made up from the prompt" : "optional, e.g. fix-login"}
              autocomplete="off"
              onInput={(e) => setId((e.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            <span class="label">Project</span>
            <input name="project" value={project} placeholder="optional" onInput={(e) => setProject((e.target as HTMLInputElement).value)} />
          </label>
          {error && <p class="inline-error" role="alert">{error}</p>}
          <div class="dialog-actions">
            <button type="button" class="button" onClick={close}>Cancel</button>
            <button type="submit" class="button primary" disabled={busy || loading}>Create session</button>
          </div>
        </form>
      </dialog>
    </>
  )
}
