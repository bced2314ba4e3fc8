/**
 * The Files view of a session: every file its agent changed, each with its latest change (the
 * last `file_change` artifact naming it) and how many changes it had.
 */
import type { Artifact } from "../../src/client/index.js"
import { FileChange } from "./ArtifactView.js"

export interface ChangedFile {
  readonly path: string
  readonly latest: Artifact
  readonly changes: number
}

export const changedFiles = (artifacts: ReadonlyArray<Artifact>): Array<ChangedFile> => {
  const byPath = new Map<string, ChangedFile>()
  for (const a of artifacts) {
    if (a.kind !== "file_change" || typeof a.path !== "string") continue
    const seen = byPath.get(a.path)
    byPath.set(a.path, { path: a.path, latest: a, changes: (seen?.changes ?? 0) + 1 })
  }
  return [...byPath.values()].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0))
}

/** `partial`: older pages of the transcript are not loaded, so older changes are not counted. */
export const FilesView = ({ files, partial = false }: { files: ReadonlyArray<ChangedFile>; partial?: boolean }) => (
  <>
    {partial && (
      <p class="muted files-partial" role="note">
        From the loaded part of the transcript: scroll it up to load older changes.
      </p>
    )}
    {files.length === 0
      ? <p class="empty">No file changed yet.</p>
      : (
        <ul class="files" aria-label="Changed files">
          {files.map((f) => (
            <li class="changed-file" data-path={f.path} data-seq={f.latest.seq}>
              {f.changes > 1 && <p class="muted change-count">{f.changes} changes; the latest:</p>}
              <FileChange a={f.latest} />
            </li>
          ))}
        </ul>
      )}
  </>
)
