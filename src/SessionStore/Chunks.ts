/**
 * Chunks: how the SQL store keeps appendable text (`text`, `input`). A field's text is a run of
 * chunks of up to `chunkSize` escaped characters; an append extends the last chunk or starts
 * the next, so persisting a delta costs what the delta costs. The append planner (`planWrites`)
 * turns a commit's changes into the row writes both commit paths of `Sql.ts` make; `assemble`
 * reads artifacts back. Pure: no SQL is run here.
 */
import { type Artifact, type ArtifactKind, type CommittedChange, isAppendable } from "../Domain/Artifact.js"

/** A chunk grows by appends up to this many characters, then a new one starts. */
export const chunkSize = 2048

export interface ArtifactRow {
  readonly seq: number
  readonly kind: ArtifactKind
  readonly fields: string
  readonly created_at: number
  readonly updated_at: number
}

export interface ChunkRow {
  readonly seq: number
  readonly field: string
  readonly text: string
}

/**
 * Chunk text is stored JSON-escaped: a delta may end inside a surrogate pair,
 * and a lone surrogate would not survive SQLite's UTF-8. Escaped pieces
 * concatenate into the escape of the whole.
 */
const escape = (s: string) => JSON.stringify(s).slice(1, -1)
const unescape = (s: string): string => JSON.parse(`"${s}"`)

/**
 * A new artifact as stored: its appendable fields empty in `fields`, their text as chunks to
 * append (so later appends extend them), the rest as they are.
 */
const splitCreated = (artifact: Artifact) => {
  const { createdAt, kind, seq, updatedAt, ...rest } = artifact
  const fields: Record<string, unknown> = {}
  const chunks: Array<[string, string]> = []
  for (const [field, value] of Object.entries(rest)) {
    if (isAppendable(field) && typeof value === "string") {
      fields[field] = ""
      if (value !== "") chunks.push([field, value])
    } else fields[field] = value
  }
  return { createdAt, kind, seq, updatedAt, fields, chunks }
}

/** Coalesce runs of appends to the same field: a batch of 100 deltas becomes one write. */
export const coalesce = (changes: ReadonlyArray<CommittedChange>): ReadonlyArray<CommittedChange> => {
  const out: Array<CommittedChange> = []
  let i = 0
  while (i < changes.length) {
    const c = changes[i]!
    let j = i + 1
    if (c._tag === "updated" && c.append !== undefined) {
      while (j < changes.length) {
        const n = changes[j]!
        if (n._tag !== "updated" || n.append === undefined || n.seq !== c.seq || n.field !== c.field) break
        j++
      }
    }
    if (j === i + 1) out.push(c)
    else {
      // One join for the whole run; the last change carries its rev and time.
      const parts: Array<string> = []
      for (let k = i; k < j; k++) parts.push((changes[k] as { readonly append: string }).append)
      out.push({ ...changes[j - 1]!, append: parts.join("") } as CommittedChange)
    }
    i = j
  }
  return out
}

/** A field's tail chunk: its number and (escaped) length. */
export type Tail = { readonly n: number; readonly len: number }
/** A field without chunks: the next append starts chunk 0. */
export const noTail: Tail = { n: -1, len: chunkSize }
export const tailKey = (seq: number, field: string) => `${seq}\u0000${field}`

/** One row write of a commit, in the order the commit makes them. */
export type Write =
  | {
    readonly _tag: "artifact"
    readonly seq: number
    readonly kind: ArtifactKind
    readonly fields: string
    readonly createdAt: number
    readonly updatedAt: number
    readonly rev: number
  }
  /** Appends `text` (escaped) to chunk `n`. */
  | { readonly _tag: "extend"; readonly seq: number; readonly field: string; readonly n: number; readonly text: string }
  /** Starts chunk `n` with `text` (escaped). */
  | { readonly _tag: "chunk"; readonly seq: number; readonly field: string; readonly n: number; readonly text: string }
  /** The artifact's update time and rev, after an append. */
  | { readonly _tag: "touch"; readonly seq: number; readonly at: number; readonly rev: number }
  /** Deletes a field's chunks (it is being set). */
  | { readonly _tag: "clear"; readonly seq: number; readonly field: string }
  /** Sets top-level field `field` of the artifact's JSON, with its time and rev. */
  | {
    readonly _tag: "set"
    readonly seq: number
    readonly field: string
    readonly value: unknown
    readonly at: number
    readonly rev: number
  }

export interface Plan {
  readonly writes: ReadonlyArray<Write>
  /** The tails of the fields written, after the writes, the most recently written last. */
  readonly tails: ReadonlyMap<string, Tail>
}

/**
 * The append planner, for every commit path: what a commit's changes write, given the tails known
 * before it (`known`; a field missing from it has a tail only the database knows). When some are
 * unknown it answers which, so the caller can read them and plan again, or give up on a path
 * that cannot read. A new artifact's appendable text goes to chunks like any append, so later
 * appends extend it; a string set on an appendable field starts its chunks over.
 */
export const planWrites = (
  changes: ReadonlyArray<CommittedChange>,
  known: ReadonlyMap<string, Tail>
): Plan | { readonly missing: ReadonlyArray<{ readonly seq: number; readonly field: string }> } => {
  const writes: Array<Write> = []
  const tails = new Map<string, Tail>()
  const missing: Array<{ readonly seq: number; readonly field: string }> = []
  const setTail = (key: string, tail: Tail) => {
    tails.delete(key)
    tails.set(key, tail)
  }
  const append = (seq: number, field: string, raw: string) => {
    // Nothing to write (an empty delta): not even an update of a chunk that may not exist.
    if (raw === "") return
    const key = tailKey(seq, field)
    const tail = tails.get(key) ?? known.get(key)
    if (tail === undefined) {
      missing.push({ seq, field })
      // Planned on regardless, only to find every missing tail in one pass.
      return setTail(key, noTail)
    }
    const text = escape(raw)
    if (tail.len + text.length <= chunkSize) {
      writes.push({ _tag: "extend", seq, field, n: tail.n, text })
      setTail(key, { n: tail.n, len: tail.len + text.length })
    } else {
      writes.push({ _tag: "chunk", seq, field, n: tail.n + 1, text })
      setTail(key, { n: tail.n + 1, len: text.length })
    }
  }
  for (const change of changes) {
    if (change._tag === "created") {
      const { chunks, createdAt, fields, kind, seq, updatedAt } = splitCreated(change.artifact)
      writes.push({ _tag: "artifact", seq, kind, fields: JSON.stringify(fields), createdAt, updatedAt, rev: change.rev })
      for (const [field, value] of chunks) {
        setTail(tailKey(seq, field), noTail)
        append(seq, field, value)
      }
    } else if (change.append !== undefined) {
      append(change.seq, change.field, change.append)
      writes.push({ _tag: "touch", seq: change.seq, at: change.at, rev: change.rev })
    } else if (isAppendable(change.field)) {
      writes.push({ _tag: "clear", seq: change.seq, field: change.field })
      setTail(tailKey(change.seq, change.field), noTail)
      // A string goes to the chunks, as at creation, so later appends extend it.
      const text = typeof change.set === "string"
      writes.push({ _tag: "set", seq: change.seq, field: change.field, value: text ? "" : change.set, at: change.at, rev: change.rev })
      if (text && change.set !== "") append(change.seq, change.field, change.set as string)
    } else {
      writes.push({ _tag: "set", seq: change.seq, field: change.field, value: change.set, at: change.at, rev: change.rev })
    }
  }
  return missing.length > 0 ? { missing } : { writes, tails }
}

/** Artifacts from their rows and their chunks (in (seq, field, n) order). */
export const assemble = (rows: ReadonlyArray<ArtifactRow>, chunks: ReadonlyArray<ChunkRow>): Array<Artifact> => {
  const bySeq = new Map<number, Record<string, unknown>>()
  const out: Array<Artifact> = []
  for (const r of rows) {
    const a: Record<string, unknown> = {
      seq: r.seq,
      kind: r.kind,
      ...JSON.parse(r.fields),
      createdAt: Number(r.created_at),
      updatedAt: Number(r.updated_at)
    }
    bySeq.set(r.seq, a)
    out.push(a as Artifact)
  }
  // Chunks arrive in (seq, field, n) order: join each field's run, then unescape once.
  let joined: Array<string> = []
  let at: ChunkRow | undefined
  const flush = () => {
    const a = at && bySeq.get(at.seq)
    if (a !== undefined && at !== undefined) a[at.field] = unescape(joined.join(""))
    joined = []
  }
  for (const c of chunks) {
    if (at !== undefined && (at.seq !== c.seq || at.field !== c.field)) flush()
    at = c
    joined.push(c.text)
  }
  flush()
  return out
}
