/**
 * Artifacts: the numbered, persisted results of reducing events, and the
 * changes that create and update them.
 */

export type ArtifactKind =
  | "text"
  | "reasoning"
  | "tool_call"
  | "permission"
  | "plan"
  | "file_change"
  | "error"
  | "usage"
  | "custom"
  | "user_message"
  | "agent"
  | "turn_stopped"
  | "changes"

export interface Artifact {
  readonly seq: number
  readonly kind: ArtifactKind
  readonly createdAt: number
  readonly updatedAt: number
  readonly [field: string]: unknown
}

/**
 * A change, as the reducer produces it. `rev` is the session's revision
 * counter, assigned when the change is committed; it orders every change of
 * a session and lets a stream skip what its snapshot already holds.
 */
export type ArtifactChange =
  | { readonly _tag: "created"; readonly artifact: Artifact }
  | {
    readonly _tag: "updated"
    readonly seq: number
    readonly field: string
    readonly append?: string
    readonly set?: unknown
    readonly at: number
  }

export type CommittedChange = ArtifactChange & { readonly rev: number }

/** Fields that grow by appends; stores keep them as append-only chunks. */
export const isAppendable = (field: string): boolean => field === "text" || field === "input"

/** Fold one change into a copy of the artifact: what every client does with live events. */
export const applyChange = (artifact: Artifact | undefined, change: ArtifactChange): Artifact => {
  if (change._tag === "created") return change.artifact
  if (artifact === undefined) throw new Error(`update for unknown artifact ${change.seq}`)
  const value = change.append !== undefined ? String(artifact[change.field] ?? "") + change.append : change.set
  return { ...artifact, [change.field]: value, updatedAt: change.at }
}

/** The `artifact_updated` payload on the wire. `updatedAt` lets a client converge exactly. */
export const updatedPayload = (change: Extract<ArtifactChange, { _tag: "updated" }>) =>
  change.append !== undefined
    ? { seq: change.seq, field: change.field, append: change.append, updatedAt: change.at }
    : { seq: change.seq, field: change.field, set: change.set, updatedAt: change.at }
