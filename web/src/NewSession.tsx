/**
 * "New session": a button above the list that opens a small dialog (a native `<dialog>`, modal:
 * Escape or Cancel closes it) asking for what a session is created with: an id (optional: one is
 * made up when left empty) and a project. Kept apart from the list so the dialog can grow more
 * fields (the agent, a repository, a first prompt) without the list changing.
 */
import { useRef, useState } from "preact/hooks"
import type { ReinClient } from "../../src/client/index.js"
import { ReinError } from "../../src/client/index.js"
import { navigate, sessionHref } from "./route.js"

export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/

/** An id for a session created without one: the project's name (when it makes a valid id), then a short random part. */
export const newSessionId = (project: string): string => {
  const stem = project.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+|-+$/g, "").slice(0, 40)
  const random = Math.random().toString(36).slice(2, 8).padEnd(6, "0")
  return `${stem === "" ? "session" : stem}-${random}`
}

export const NewSession = ({ client }: { client: ReinClient }) => {
  const dialog = useRef<HTMLDialogElement>(null)
  const [id, setId] = useState("")
  const [project, setProject] = useState("")
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | undefined>()

  const open = () => {
    setError(undefined)
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
    const chosen = given === "" ? newSessionId(project.trim()) : given
    setBusy(true)
    setError(undefined)
    try {
      await client.createSession(chosen, project.trim() ? { project: project.trim() } : {})
      setId("")
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
      <dialog ref={dialog} class="new-session-dialog" aria-labelledby="new-session-title">
        <form class="new-session-form" onSubmit={submit} aria-label="Create a session">
          <h2 id="new-session-title">New session</h2>
          <label>
            <span class="label">Session id</span>
            <input name="id" value={id} placeholder="optional, e.g. fix-login" autocomplete="off" onInput={(e) => setId((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            <span class="label">Project</span>
            <input name="project" value={project} placeholder="optional" onInput={(e) => setProject((e.target as HTMLInputElement).value)} />
          </label>
          {error && <p class="inline-error" role="alert">{error}</p>}
          <div class="dialog-actions">
            <button type="button" class="button" onClick={close}>Cancel</button>
            <button type="submit" class="button primary" disabled={busy}>Create session</button>
          </div>
        </form>
      </dialog>
    </>
  )
}
