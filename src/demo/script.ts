/**
 * The demo agent's script, shared by both of its forms: the one that speaks Rein's HTTP protocol
 * (agent.ts, `npm run demo`) and the ACP agent over stdio (AcpAgent.ts, the hub's `demo`
 * profile). What it says and in which order: reasoning, a plan, a real listing of the working
 * directory, Markdown about it, a permission request before a pretend write of a note (nothing
 * touches the disk), the outcome, usage and a summary.
 */
import type { Dirent } from "node:fs"
import { readdir } from "node:fs/promises"

/** Splits text into small chunks that keep their whitespace, like a model's tokens. */
export const chunks = (text: string): Array<string> => {
  const words = text.match(/\s*\S+\s*/g) ?? [text]
  const out: Array<string> = []
  for (let i = 0; i < words.length; i += 2) out.push(words.slice(i, i + 2).join(""))
  return out
}

/** The pause between two streamed chunks, in ms at pace 1. */
export const chunkPause = () => 25 + Math.random() * 35

/** One line, at most `max` characters. */
export const short = (text: string, max = 60) => {
  const one = text.replace(/\s+/g, " ").trim()
  return one.length > max ? `${one.slice(0, max - 1)}…` : one
}

export interface Listing {
  readonly text: string
  readonly dirs: number
  readonly files: number
  readonly names: ReadonlyArray<string>
}

const MAX_LISTED = 60

/** The real `list_directory` tool: folders first (with a trailing `/`), then files, each sorted. */
export const listDirectory = async (dir: string): Promise<Listing> => {
  const entries: Array<Dirent> = await readdir(dir, { withFileTypes: true })
  const names = entries
    .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
    .sort((a, b) => Number(b.endsWith("/")) - Number(a.endsWith("/")) || a.localeCompare(b))
  const dirs = names.filter((n) => n.endsWith("/")).length
  const shown = names.slice(0, MAX_LISTED)
  const more = names.length > MAX_LISTED ? `\n… and ${names.length - MAX_LISTED} more` : ""
  return { text: (shown.join("\n") || "(empty directory)") + more, dirs, files: names.length - dirs, names }
}

/** What a failed listing leaves to talk about. */
export const emptyListing: Listing = { text: "", dirs: 0, files: 0, names: [] }

export interface PlanStep {
  readonly content: string
  readonly status: "pending" | "in_progress" | "completed"
}

/** The plan with steps before `step` completed and `step` in progress (5: all completed). */
export const plan = (step: number, rejected = false): Array<PlanStep> => {
  const entries = ["Read the request", "List the working directory", "Explain what I found", "Write a note (pretend)", "Summarise"]
  return entries.map((content, i) => ({
    content: i === 3 && rejected ? "Write a note (pretend): rejected" : content,
    status: i < step ? "completed" : i === step ? "in_progress" : "pending"
  }))
}

/** Where turn `n` would write its note, relative to the working directory. */
export const notePath = (n: number) => `notes/demo-${n}.md`

/** The note the pretend write would write. */
export const note = (prompt: string, cwd: string, listing: Listing) =>
  [
    "# Demo note",
    "",
    `Prompt: ${short(prompt, 200)}`,
    "",
    `\`${cwd}\` holds ${listing.dirs} folders and ${listing.files} files.`,
    "",
    "This file was never written: the demo agent is a simulation.",
    ""
  ].join("\n")

/** The reasoning that opens every turn. */
export const reasoning = (prompt: string) =>
  `The prompt is "${short(prompt)}". I am a scripted demo, not a model, so I follow my script: ` +
  `list the working directory, describe it, and ask before (pretending to) write a note about it.`

/** The Markdown that says what the listing found and asks to write the note. */
export const findings = (prompt: string, cwd: string, listing: Listing, path: string) => {
  const examples = listing.names.slice(0, 6).map((name) => `\`${name}\``).join(", ")
  return `**Heads-up: I am a simulated agent, not a model.** I answer every prompt with the same script, ` +
    `so you can see everything the dashboard shows.\n\n` +
    `You asked:\n\n${prompt.split("\n").map((l) => `> ${l}`).join("\n")}\n\n` +
    `I listed \`${cwd}\`: **${listing.dirs}** folders and **${listing.files}** files` +
    (examples ? `, among them ${examples}.` : ".") +
    `\n\nNext I would like to write a short note to \`${path}\`. That is a write, so I ask first ` +
    `(and even if you allow it, nothing is written: it is pretend).`
}

/** The permission request's title (and the write's, in the ACP agent). */
export const writeTitle = (path: string) => `Write ${path}? (pretend: nothing is written to disk)`

/** What the permission request offers. */
export const writeOptions = [
  { optionId: "allow", name: "Allow", kind: "allow_once" },
  { optionId: "always", name: "Always allow", kind: "allow_always" },
  { optionId: "reject", name: "Reject", kind: "reject_once" }
] as const

/** The write tool's output when it was allowed. */
export const pretendWritten = (path: string, content: string) =>
  `Pretend write of ${path} (${content.split("\n").length - 1} lines). Nothing was written to disk: this agent is a simulation.`

export const rejectedOutput = "Rejected by the user: nothing written."

/** The closing Markdown after a rejection. */
export const rejectedText = "Understood: I will not write the note. Nothing changed."

/** The closing Markdown after the write was allowed (`always`: it will not ask again). */
export const doneText = (always: boolean) =>
  `Done: the diff above is the note I *would* have written` +
  (always ? " (and I will not ask again in this session)" : "") +
  `. Send another prompt, or press **Abort** while I am working to stop a turn.`

/** A prompt that mentions "error" gets a simulated one. */
export const wantsError = (prompt: string) => /\berror\b/i.test(prompt)
export const errorMessage = "Simulated error: the prompt asked for one, so here it is."

/** The session's summary (its title). */
export const summary = (prompt: string) => `Demo: ${short(prompt)}`

export const estimateTokens = (text: string) => Math.max(1, Math.round(text.length / 4))
