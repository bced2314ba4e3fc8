/**
 * The Changes view of a session a runner started (issue 20): its worktree's diff against its base,
 * committed and uncommitted, new files included, as the runner posts it after every turn (the
 * session's `changes` artifact, its `diff` replaced each time), one card a file.
 */
import { useMemo } from "preact/hooks"
import type { Artifact } from "../../src/client/index.js"
import { DiffView, patchFiles } from "./Diff.js"

/** The session's `changes` artifact (the last one, should there be several). */
export const changesOf = (artifacts: ReadonlyArray<Artifact>): Artifact | undefined => {
  for (let i = artifacts.length - 1; i >= 0; i--) if (artifacts[i]!.kind === "changes") return artifacts[i]
  return undefined
}

const statusLabels = { added: "added", deleted: "deleted", modified: "modified", renamed: "renamed", binary: "binary" } as const

export const ChangesView = ({ changes }: { changes: Artifact | undefined }) => {
  const diff = typeof changes?.diff === "string" ? changes.diff : ""
  const files = useMemo(() => patchFiles(diff), [diff])
  const truncated = changes?.truncated === true
  if (changes === undefined || files.length === 0) {
    return (
      <p class="empty changes-empty">
        {changes === undefined ? "No changes yet." : "No changes yet: the worktree matches its base."}
        {truncated && <span class="changes-truncated"> (truncated)</span>}
      </p>
    )
  }
  return (
    <div class="changes" data-seq={changes.seq} data-updated-at={changes.updatedAt}>
      <p class="muted changes-summary">
        {files.length} file{files.length === 1 ? "" : "s"} changed against the base, committed and uncommitted; updated after each turn.
        {truncated && <strong class="changes-truncated"> (truncated: the diff was cut at its size limit)</strong>}
      </p>
      <ul class="files" aria-label="Changed files">
        {files.map((f) => (
          <li class="changed-file" data-path={f.path} data-status={f.status}>
            <section class="card file-change" aria-label={`Changes to ${f.path}`}>
              <header>
                <span class={`badge change-${f.status}`}>{statusLabels[f.status]}</span>
                <code class="file-path">{f.oldPath !== undefined ? `${f.oldPath} → ${f.path}` : f.path}</code>
              </header>
              {f.rows !== undefined
                ? <DiffView rows={f.rows} label={`Diff of ${f.path}`} />
                : f.status === "binary"
                ? <p class="muted">Binary file: no text diff.</p>
                : f.status === "renamed" && !/^@@/m.test(f.raw)
                ? <p class="muted">Renamed; the content is the same.</p>
                : <pre class="diff-raw">{f.raw}</pre>}
            </section>
          </li>
        ))}
      </ul>
    </div>
  )
}
