/**
 * The runner (issue 20): starts and supervises agents for the hub, each in its own git worktree.
 * One code path with two homes: `rein-runner` on another machine, and the runner `rein-server`
 * embeds for its own machine (the same class over loopback). It connects out, holds its job
 * stream (`GET /runners/:id/jobs`, reconnecting by itself), says what it offers
 * (`PUT /runners/:id/offer`), and for each `start` job makes the worktree and runs the agent
 * through the same Bridge as `rein-sandbox`. Before it takes jobs it reconciles: agents it
 * started that still run (after a `kill -9`) are stopped, worktrees of deleted sessions removed.
 */
import { realpath } from "node:fs/promises"
import { resolve } from "node:path"
import { ReinClient } from "../client/ReinClient.js"
import { openStream, type StreamHandle } from "../client/stream.js"
import { authHeaders, defaultFetch, type Fetch, joinUrl, segment } from "../client/util.js"
import type { Job, RunnerOffer } from "../Domain/Runner.js"
import type { Event } from "../Domain/Event.js"
import { Bridge } from "../sandbox/Bridge.js"
import { processStartTime } from "./Processes.js"
import { agentEnv, type AgentProfile, commandLine, type Profiles } from "./Profiles.js"
import { reconcile } from "./Reconcile.js"
import { createWorktree, diffWorktree, freeDisk, listWorktrees, recordAcpSession, recordProcesses, removeWorktree } from "./Worktrees.js"

export interface RunnerOptions {
  /** The Rein server. */
  readonly url: string
  readonly id: string
  /**
   * Whose worktrees these are (default: `id`): reconciling touches only markers it made, so runners
   * that share a worktrees directory leave each other's alone.
   */
  readonly owner?: string | undefined
  /** The runner's token (null: the server runs without auth). */
  readonly token: string | null
  readonly profiles: Profiles
  /** The repositories it serves (absolute paths). */
  readonly repos: ReadonlyArray<string>
  /** Where worktrees go: `<worktrees>/<repo name>/<session id>`. */
  readonly worktrees: string
  readonly maxSessions?: number | null | undefined
  /** Jobs are refused below this many free bytes where worktrees go. Default 1 GiB. */
  readonly minFreeDisk?: number | undefined
  /** The program that runs the simulated `demo` agent (default: this package's dist/demo/acp-bin.js). */
  readonly demoAgent?: { readonly command: string; readonly args: ReadonlyArray<string> } | undefined
  /** The environment agents' allow-listed variables come from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** How long an agent gets after SIGTERM before its group is killed. Default 5 000 ms. */
  readonly graceMs?: number | undefined
  readonly log?: ((line: string) => void) | undefined
  readonly fetch?: Fetch | undefined
}

interface Running {
  readonly bridge: Bridge
  readonly path: string
  readonly done: Promise<void>
}

/** A worktree diff posted with each turn's end: enough for a review, bounded for the store. */
const maxChangesBytes = 512 * 1024

export class Runner {
  private readonly o: RunnerOptions
  private readonly log: (line: string) => void
  private readonly fetch: Fetch
  private readonly running = new Map<string, Running>()
  /** Sessions with a job in progress (start, stop, remove): one at a time each. */
  private readonly busy = new Map<string, Promise<void>>()
  private stream: StreamHandle | undefined
  private opens = 0
  private closing = false
  private resolveEnded!: (reason: string) => void
  /** Resolves when the runner stops for good (closed, or revoked: its token no longer works). */
  readonly ended = new Promise<string>((r) => (this.resolveEnded = r))

  private get owner(): string {
    return this.o.owner ?? this.o.id
  }

  constructor(options: RunnerOptions) {
    this.o = options
    this.log = options.log ?? (() => {})
    this.fetch = options.fetch ?? defaultFetch()
  }

  /**
   * Reconciles, then holds the job stream. Resolves once the hub has its offer (it can take jobs),
   * or once the first attempt failed (it keeps trying).
   */
  async start(): Promise<void> {
    await this.reconcile()
    let ready!: () => void
    const offered = new Promise<void>((r) => (ready = r))
    const url = joinUrl(this.o.url, `/runners/${segment(this.o.id)}/jobs`)
    this.stream = openStream({
      fetch: this.fetch,
      url,
      token: this.o.token ?? undefined,
      resume: false,
      finalEvent: "runner_revoked",
      supersededEvent: "superseded",
      onOpen: () => {
        // Back after a drop: what was deleted meanwhile (its remove job never came) is tidied first.
        const again = this.opens++ > 0
        void (again ? this.reconcile().catch((e) => this.log(`could not reconcile: ${(e as Error).message}`)) : Promise.resolve())
          .then(() => this.sendOffer()).finally(ready)
      },
      onMessage: (m) => {
        if (m.event !== "job") return
        try {
          this.take(JSON.parse(m.data) as Job)
        } catch (e) {
          this.log(`a job could not be read: ${(e as Error).message}`)
        }
      },
      onState: (s) => {
        if (s.status === "reconnecting" && s.attempt === 1) this.log(`job stream lost (${s.error?.message ?? "dropped"}), reconnecting`)
        if (s.status !== "open" && s.status !== "connecting") ready()
      }
    })
    void this.stream.done.then(async (s) => {
      if (this.closing) return
      this.closing = true
      await Promise.all([...this.busy.values()])
      const why = s.status === "removed"
        ? "this runner was revoked"
        : s.status === "superseded"
        ? "another process with this runner's token took its job stream over"
        : `its job stream ended (${s.status}${s.error ? `: ${s.error.message}` : ""})`
      this.log(`stopping: ${why}`)
      await this.stopAll()
      this.resolveEnded(why)
    })
    await offered
  }

  /** Stops every agent it runs (their sessions stay, disconnected) and the job stream. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    // Jobs in progress first (a start half-way must not leave an agent behind), then the agents,
    // and the hub told, so that the job stream ending after says nothing went wrong.
    await Promise.all([...this.busy.values()])
    await this.stopAll()
    await this.sendOffer()
    this.stream?.close()
    this.resolveEnded("closed")
  }

  private async stopAll(): Promise<void> {
    await Promise.all([...this.running.values()].map(async (r) => {
      r.bridge.stop()
      await r.done
    }))
  }

  /** The hub's word on whether a session still exists (reconcile leaves a worktree alone when unsure). */
  private async sessionExists(id: string): Promise<boolean> {
    const res = await this.fetch(joinUrl(this.o.url, `/runners/${segment(this.o.id)}/sessions/${segment(id)}`), {
      headers: authHeaders(this.o.token ?? undefined)
    })
    if (res.status === 404) return false
    if (!res.ok) throw new Error(`the server answered ${res.status}`)
    return true
  }

  private async reconcile(): Promise<void> {
    const report = await reconcile({
      root: this.o.worktrees,
      owner: this.owner,
      sessionExists: (id) => this.sessionExists(id),
      // What it runs or is starting now is its own business, not a leftover.
      active: new Set([...this.running.keys(), ...this.busy.keys()]),
      graceMs: this.o.graceMs
    })
    for (const p of report.stopped) this.log(`stopped agent ${p.pid} left running for session ${p.sessionId}`)
    for (const r of report.removed) {
      this.log(`removed the worktree of deleted session ${r.sessionId}${r.branchKept ? ` (branch ${r.branch} kept: it has commits)` : ""}`)
    }
    for (const k of report.kept) this.log(`kept the worktree of deleted session ${k.sessionId} at ${k.path}: ${k.reason} (${k.detail})`)
    for (const e of report.errors) this.log(`could not reconcile ${e.path}: ${e.message}`)
  }

  private offer(): RunnerOffer {
    return {
      agents: Object.values(this.o.profiles).map((p) => ({ id: p.id, name: p.name })),
      repos: [...this.o.repos],
      sessions: this.running.size,
      running: [...this.running.keys()],
      maxSessions: this.o.maxSessions ?? null,
      freeDisk: null
    }
  }

  private async sendOffer(): Promise<void> {
    try {
      const offer = { ...this.offer(), freeDisk: await freeDisk(this.o.worktrees).catch(() => null) }
      const res = await this.fetch(joinUrl(this.o.url, `/runners/${segment(this.o.id)}/offer`), {
        method: "PUT",
        headers: { "content-type": "application/json", ...authHeaders(this.o.token ?? undefined) },
        body: JSON.stringify(offer)
      })
      if (!res.ok) this.log(`the server refused this runner's offer: ${res.status}`)
    } catch (e) {
      this.log(`could not send this runner's offer: ${(e as Error).message}`)
    }
  }

  /** Jobs of one session run one after another; different sessions' run side by side. */
  private take(job: Job): void {
    const previous = this.busy.get(job.sessionId) ?? Promise.resolve()
    const next = previous.then(() => this.run(job)).catch((e) => this.log(`job ${job.type} ${job.sessionId} failed: ${(e as Error).message}`))
    this.busy.set(job.sessionId, next)
    void next.then(() => {
      if (this.busy.get(job.sessionId) === next) this.busy.delete(job.sessionId)
    })
  }

  private async run(job: Job): Promise<void> {
    switch (job.type) {
      case "start":
        return this.startSession(job)
      case "stop": {
        const r = this.running.get(job.sessionId)
        if (r === undefined) return
        r.bridge.stop()
        await r.done
        return
      }
      case "remove": {
        const r = this.running.get(job.sessionId)
        if (r !== undefined) {
          r.bridge.stop()
          await r.done
        }
        await this.removeWorktreeOf(job.sessionId)
        return
      }
    }
  }

  private async removeWorktreeOf(sessionId: string): Promise<void> {
    for (const w of await listWorktrees(this.o.worktrees)) {
      if (w.sessionId !== sessionId || (w.owner ?? "") !== this.owner) continue
      const result = await removeWorktree({ path: w.path })
      if (result.removed) {
        this.log(`removed the worktree of session ${sessionId}${result.branchKept ? ` (branch ${result.branch} kept: it has commits)` : ""}`)
      } else this.log(`kept the worktree of deleted session ${sessionId} at ${result.path}: ${result.kept} (${result.detail})`)
    }
  }

  /** Posts events to the session as its sandbox (before or without a bridge). */
  private async post(sessionId: string, token: string | null, events: ReadonlyArray<Event>): Promise<void> {
    const res = await this.fetch(joinUrl(this.o.url, `/sessions/${segment(sessionId)}/events`), {
      method: "POST",
      headers: { "content-type": "application/json", ...authHeaders(token ?? this.o.token ?? undefined) },
      body: JSON.stringify(events)
    })
    if (!res.ok && res.status !== 404) this.log(`session ${sessionId} refused what the runner posted: ${res.status}`)
  }

  /** A start that cannot happen: said in the session's transcript, which then needs someone. */
  private fail(job: Extract<Job, { type: "start" }>, message: string): Promise<void> {
    this.log(`session ${job.sessionId}: ${message}`)
    return this.post(job.sessionId, job.sandboxToken, [{ type: "error", message, fatal: true }])
  }

  /** Whether `repo` is one of its repositories (the same directory, however it is spelled). */
  private async serves(repo: string): Promise<boolean> {
    const real = (p: string) => realpath(p).catch(() => resolve(p))
    const wanted = await real(repo)
    for (const r of this.o.repos) if ((await real(r)) === wanted) return true
    return false
  }

  private agentCommand(profile: AgentProfile, cwd: string): { readonly command: string; readonly args: ReadonlyArray<string> } {
    const line = commandLine(profile, cwd)
    if (line !== undefined) return line
    const demo = this.o.demoAgent ?? { command: process.execPath, args: [new URL("../demo/acp-bin.js", import.meta.url).pathname] }
    const wrapper = (profile.wrapper ?? []).map((w) => w.replaceAll("{cwd}", cwd))
    const words = [...wrapper, demo.command, ...demo.args]
    return { command: words[0]!, args: words.slice(1) }
  }

  private async startSession(job: Extract<Job, { type: "start" }>): Promise<void> {
    if (this.closing || this.running.has(job.sessionId)) return
    const profile = this.o.profiles[job.agent]
    if (profile === undefined) return this.fail(job, `this runner has no agent ${job.agent}`)
    if (!(await this.serves(job.repo))) return this.fail(job, `this runner does not serve repository ${job.repo}`)
    const minFree = this.o.minFreeDisk ?? 1024 ** 3
    const free = await freeDisk(this.o.worktrees).catch(() => undefined)
    if (free !== undefined && free < minFree) {
      return this.fail(
        job,
        `not starting: ${Math.floor(free / 1024 ** 2)} MiB free in ${this.o.worktrees}, below this runner's ${Math.floor(minFree / 1024 ** 2)} MiB`
      )
    }
    if (!job.restart) {
      // A session created again under an earlier one's id starts clean: that one's worktree goes
      // (by the usual rule: kept, and this start refused, when it holds uncommitted work).
      for (const w of await listWorktrees(this.o.worktrees)) {
        if (w.sessionId !== job.sessionId || (w.owner ?? "") !== this.owner) continue
        const removed = await removeWorktree({ path: w.path })
        if (!removed.removed) {
          return this.fail(job, `an earlier session named ${job.sessionId} left its worktree at ${removed.path} (${removed.kept}: ${removed.detail}); it is kept`)
        }
      }
    }
    let worktree
    try {
      worktree = await createWorktree({
        repo: job.repo,
        sessionId: job.sessionId,
        root: this.o.worktrees,
        owner: this.owner,
        ...(job.baseRef !== null ? { baseRef: job.baseRef } : {})
      })
    } catch (e) {
      return this.fail(job, `could not make the session's worktree: ${(e as Error).message}`)
    }
    const path = worktree.path
    if (this.closing) return
    await this.post(job.sessionId, job.sandboxToken, [{
      type: "workspace",
      repo: worktree.repo,
      path,
      branch: worktree.branch,
      baseRef: worktree.baseRef
    }])
    if (this.closing) return
    const { args, command } = this.agentCommand(profile, path)
    const bridge = new Bridge({
      url: this.o.url,
      sessionId: job.sessionId,
      token: job.sandboxToken ?? this.o.token ?? undefined,
      cwd: path,
      command,
      args,
      env: agentEnv(profile, this.o.env ?? process.env),
      graceMs: this.o.graceMs ?? 5_000,
      log: (line) => this.log(`session ${job.sessionId}: ${line}`),
      ...(job.prompt !== null ? { initialPrompt: job.prompt } : {}),
      ...(job.restart ? { restarted: true } : {}),
      ...(job.restart && worktree.acpSessionId !== undefined ? { resumeSessionId: worktree.acpSessionId } : {}),
      onAcpSession: (acpSessionId) =>
        void recordAcpSession(path, acpSessionId).catch((e) =>
          this.log(`session ${job.sessionId}: could not record the ACP session: ${(e as Error).message}`)
        ),
      onSpawned: (pid) =>
        void processStartTime(pid).then((startTime) =>
          startTime === undefined ? undefined : recordProcesses(path, [{ pid, startTime }])
        ).catch((e) => this.log(`session ${job.sessionId}: could not record the agent's pid: ${(e as Error).message}`)),
      // The Changes view: the worktree against its base, after every turn.
      onTurnEnd: () =>
        diffWorktree({ path, maxBytes: maxChangesBytes }).then(
          (d) => [{ type: "changes", diff: d.patch, ...(d.truncated ? { truncated: true } : {}) }] as const,
          (e) => {
            this.log(`session ${job.sessionId}: could not diff the worktree: ${(e as Error).message}`)
            return []
          }
        )
    })
    const done = bridge.run().then((exit) => {
      this.log(`session ${job.sessionId}: agent ended (${exit.reason}${exit.message ? `: ${exit.message}` : ""})`)
    }, (e) => this.log(`session ${job.sessionId}: ${(e as Error).message}`)).finally(() => {
      if (this.running.get(job.sessionId)?.bridge === bridge) this.running.delete(job.sessionId)
      void this.sendOffer()
    })
    this.running.set(job.sessionId, { bridge, path, done })
    void this.sendOffer()
  }
}

/** The client the bins use to register or check a runner. */
export const runnerClient = (url: string, token: string | undefined) => new ReinClient({ baseUrl: url, token })
