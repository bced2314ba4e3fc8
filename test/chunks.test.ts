/**
 * The append planner (SessionStore/Chunks.ts) on its own: a model of the chunk table takes a
 * plan's writes, and the text read back must be the text the changes describe, whether the
 * planner knew every tail (the cache) or had to be told the missing ones (the database), with
 * no chunk grown past its size by an append.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { Artifact, CommittedChange } from "../src/Domain/Artifact.js"
import { assemble, type ChunkRow, chunkSize, noTail, planWrites, type Tail, tailKey, type Write } from "../src/SessionStore/Chunks.js"

/** The rows a store would hold: artifacts (fields as stored) and chunks (escaped text). */
class Model {
  readonly artifacts = new Map<number, { kind: Artifact["kind"]; fields: Record<string, unknown>; createdAt: number; updatedAt: number }>()
  readonly chunks = new Map<string, Array<string>>()

  apply(w: Write) {
    const key = "field" in w ? tailKey(w.seq, w.field) : ""
    switch (w._tag) {
      case "artifact":
        expect(this.artifacts.has(w.seq)).toBe(false)
        this.artifacts.set(w.seq, { kind: w.kind, fields: JSON.parse(w.fields), createdAt: w.createdAt, updatedAt: w.updatedAt })
        return
      case "extend": {
        const run = this.chunks.get(key)
        expect(run?.length, `extend of chunk ${w.n} of ${key}`).toBe(w.n + 1)
        run![w.n] += w.text
        expect(run![w.n]!.length).toBeLessThanOrEqual(chunkSize)
        return
      }
      case "chunk": {
        const run = this.chunks.get(key) ?? []
        expect(run.length, `new chunk ${w.n} of ${key}`).toBe(w.n)
        run.push(w.text)
        this.chunks.set(key, run)
        return
      }
      case "touch":
        this.artifacts.get(w.seq)!.updatedAt = w.at
        return
      case "clear":
        this.chunks.delete(key)
        return
      case "set":
        this.artifacts.get(w.seq)!.fields[w.field] = w.value
        this.artifacts.get(w.seq)!.updatedAt = w.at
        return
    }
  }

  /** What the database would answer for a tail: the last chunk's number and length. */
  tail(seq: number, field: string): Tail {
    const run = this.chunks.get(tailKey(seq, field))
    return run === undefined || run.length === 0 ? noTail : { n: run.length - 1, len: run[run.length - 1]!.length }
  }

  read(): Array<Artifact> {
    const rows = [...this.artifacts].sort(([a], [b]) => a - b).map(([seq, a]) => ({
      seq,
      kind: a.kind,
      fields: JSON.stringify(a.fields),
      created_at: a.createdAt,
      updated_at: a.updatedAt
    }))
    const chunks: Array<ChunkRow> = []
    for (const [key, run] of [...this.chunks].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const [seq, field] = key.split("\u0000") as [string, string]
      for (const text of run) chunks.push({ seq: Number(seq), field, text })
    }
    chunks.sort((a, b) => a.seq - b.seq || (a.field < b.field ? -1 : a.field > b.field ? 1 : 0))
    return assemble(rows, chunks)
  }
}

/** Text with what escaping must survive: quotes, backslashes, NUL, halves of surrogate pairs. */
const piece = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("\"", "\\", "\u0000", "\uD83D", "\uDE00", "🙂"),
  fc.integer({ min: 1, max: 3000 }).map((n) => "x".repeat(n))
)

type Op = { readonly op: "create" | "append" | "set"; readonly seq: number; readonly text: string }
const op = fc.record({ op: fc.constantFrom<Op["op"]>("create", "append", "append", "append", "set"), seq: fc.integer({ min: 1, max: 3 }), text: piece })

/** Commits of changes built from ops, and the text each artifact must end with. */
const scenario = fc.array(fc.array(op, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 8 }).map((batches) => {
  const expected = new Map<number, string>()
  let rev = 0
  const commits: Array<Array<CommittedChange>> = []
  for (const batch of batches) {
    const changes: Array<CommittedChange> = []
    for (const { op, seq, text } of batch) {
      rev++
      if (!expected.has(seq)) {
        expected.set(seq, text)
        changes.push({ _tag: "created", rev, artifact: { seq, kind: "text", text, createdAt: rev, updatedAt: rev } as Artifact })
      } else if (op === "set") {
        expected.set(seq, text)
        changes.push({ _tag: "updated", rev, seq, field: "text", set: text, at: rev })
      } else {
        expected.set(seq, expected.get(seq)! + text)
        changes.push({ _tag: "updated", rev, seq, field: "text", append: text, at: rev })
      }
    }
    commits.push(changes)
  }
  return { commits, expected }
})

describe("the append planner", () => {
  it("writes the text the changes describe, from known tails or from tails it asked for", () => {
    fc.assert(
      fc.property(scenario, fc.boolean(), ({ commits, expected }, cached) => {
        const model = new Model()
        /** The tails the store's cache would hold for this session. */
        let known = new Map<string, Tail>()
        for (const changes of commits) {
          let plan = planWrites(changes, cached ? known : new Map())
          if ("missing" in plan) {
            expect(cached && plan.missing.some(({ field, seq }) => known.has(tailKey(seq, field)))).toBe(false)
            const read = new Map(plan.missing.map(({ field, seq }) => [tailKey(seq, field), model.tail(seq, field)] as const))
            plan = planWrites(changes, new Map([...(cached ? known : []), ...read]))
          }
          if ("missing" in plan) throw new Error("still missing tails after reading them")
          for (const w of plan.writes) model.apply(w)
          // What the plan says it left is what the rows hold.
          for (const [key, tail] of plan.tails) {
            const [seq, field] = key.split("\u0000") as [string, string]
            expect(tail).toEqual(model.tail(Number(seq), field))
          }
          known = new Map([...known, ...plan.tails])
        }
        const texts = new Map(model.read().map((a) => [a.seq, a.text]))
        expect(texts).toEqual(expected)
      }),
      { numRuns: 300 }
    )
  })

  it("asks for an unknown tail instead of guessing, and needs none for a new artifact", () => {
    const append: CommittedChange = { _tag: "updated", rev: 2, seq: 1, field: "text", append: "more", at: 2 }
    expect(planWrites([append], new Map())).toEqual({ missing: [{ seq: 1, field: "text" }] })
    const created: CommittedChange = { _tag: "created", rev: 1, artifact: { seq: 1, kind: "text", text: "hi", createdAt: 1, updatedAt: 1 } as Artifact }
    const plan = planWrites([created, append], new Map())
    expect("writes" in plan && plan.writes.map((w) => w._tag)).toEqual(["artifact", "chunk", "extend", "touch"])
  })
})
