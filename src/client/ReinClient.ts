/**
 * `ReinClient`: what a dashboard, a CLI or another service needs. Plain
 * requests for sessions and commands, and watches that keep a converged copy
 * of the session list or of one session's artifacts, live over SSE.
 */
import type { Artifact } from "../Domain/Artifact.js"
import type { Command } from "../Domain/Command.js"
import type { RunnerInfo } from "../Domain/Runner.js"
import type { Session, SessionFields } from "../Domain/Session.js"
import { errorFromResponse, networkError, type ReinError } from "./errors.js"
import { type ConnectionState, openStream, type SseMessage, type StreamHandle } from "./stream.js"
import { authHeaders, defaultFetch, type Fetch, joinUrl, type RetryOptions, segment } from "./util.js"
import { Watch, type WatchState } from "./watch.js"

export interface ReinClientOptions {
  /** The server, e.g. `http://127.0.0.1:4800`. In a browser, `location.origin`. */
  readonly baseUrl: string
  /** Bearer token, when the server runs with `--token`. */
  readonly token?: string | undefined
  /** A fetch implementation; default the global one. */
  readonly fetch?: Fetch | undefined
  /** Back-off of the watches' reconnects. */
  readonly retry?: RetryOptions | undefined
}

/** `POST /sessions/:id` with auth on also returns the session's sandbox token, once. */
export type CreatedSession = Session & { readonly sandboxToken?: string }

export interface CreateSessionOptions {
  readonly project?: string | null | undefined
  /** An agent profile a runner starts for the session. */
  readonly agent?: string | undefined
  /** With `agent`: the repository (as a runner lists it) to make the worktree of. */
  readonly repo?: string | undefined
  /** With `agent`: the worktree's base (default the repository's HEAD). */
  readonly baseRef?: string | undefined
  /** With `agent`: the first prompt. */
  readonly prompt?: string | undefined
  /** With `agent`: the runner (id or name). */
  readonly runner?: string | undefined
}

export type PermissionDecision = "allow_once" | "allow_always" | "reject"

/** A permission reply by option (the request's `options[].optionId`), optionally with the decision it stands for. */
export type PermissionChoice =
  | { readonly optionId: string; readonly decision?: PermissionDecision }
  | { readonly decision: PermissionDecision; readonly optionId?: string }

export interface SessionsState extends WatchState {
  /** Oldest first, as `GET /sessions` orders them. */
  readonly sessions: ReadonlyArray<Session>
}

export interface ArtifactsState extends WatchState {
  readonly sessionId: string
  /** Ordered by `seq`. An artifact's object changes only when the artifact does. */
  readonly artifacts: ReadonlyArray<Artifact>
}

export interface WatchOptions<S> {
  /** Called after each change, like `watch.subscribe`. */
  readonly onChange?: (state: S) => void
}

export interface WatchSessionOptions extends WatchOptions<ArtifactsState> {
  /**
   * Start from the last `tail` artifacts (1 to 1000) and the older ones still changing, not the
   * whole transcript (`?tail=`, on the first connection; reconnects resume by `Last-Event-ID`).
   * What lies before: `artifactsPage(id, { before })`.
   */
  readonly tail?: number | undefined
}

/** Which page of `artifactsPage`: before or after a seq (not both), or the newest; `limit` 1 to 1000, default 200. */
export interface PageOptions {
  readonly before?: number | undefined
  readonly after?: number | undefined
  readonly limit?: number | undefined
}

export interface ArtifactsPage {
  /** In seq order. */
  readonly artifacts: ReadonlyArray<Artifact>
  /** More lie beyond the page in its direction: older (`before`, or the newest page), newer (`after`). */
  readonly more: boolean
}

/** Which sessions a list shows: of one project, and/or only those that need someone. */
export interface SessionFilter {
  readonly project?: string | undefined
  /** Only sessions with pending permissions, or whose last turn ended in `error`. */
  readonly attention?: boolean | undefined
}

const query = (filter: SessionFilter): string => {
  const q = new URLSearchParams()
  if (filter.project !== undefined) q.set("project", filter.project)
  if (filter.attention === true) q.set("attention", "1")
  const s = q.toString()
  return s === "" ? "" : `?${s}`
}

const byCreation = (a: Session, b: Session) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

const parse = (m: SseMessage): any => (m.data === "" ? undefined : JSON.parse(m.data))

/** The session list, kept equal to the server's by `/sessions/stream`. */
export class SessionsWatch extends Watch<SessionsState> {
  private map = new Map<string, Session>()
  private pending: Map<string, Session> | undefined
  private stream: StreamHandle | undefined

  /** @internal */
  constructor(start: (watch: SessionsWatch) => StreamHandle) {
    super({ connection: { status: "connecting", attempt: 0 }, synced: false, sessions: [] })
    this.stream = start(this)
  }

  protected override stop(): void {
    this.stream?.close()
  }

  /** @internal A new connection: its snapshots replace the whole list once complete. */
  opened(): void {
    this.pending = new Map()
    this.emit({ synced: false })
  }

  /** @internal */
  message(m: SseMessage): void {
    const data = parse(m)
    switch (m.event) {
      case "session_snapshot":
        ;(this.pending ?? this.map).set(data.session.id, data.session)
        return
      case "snapshot_complete":
        if (this.pending) this.map = this.pending
        this.pending = undefined
        return this.emit({ synced: true, sessions: this.list() })
      case "session_created":
        this.map.set(data.session.id, data.session)
        return this.emit({ sessions: this.list() })
      case "session_updated": {
        const old = this.map.get(data.id)
        if (old === undefined) return
        this.map.set(data.id, { ...old, ...(data.fields as SessionFields) })
        return this.emit({ sessions: this.list() })
      }
      case "session_removed":
        if (this.map.delete(data.id)) this.emit({ sessions: this.list() })
        return
    }
  }

  /** @internal */
  connection(connection: ConnectionState): void {
    this.emit({ connection })
  }

  private list(): ReadonlyArray<Session> {
    return [...this.map.values()].sort(byCreation)
  }

  private emit(patch: Partial<SessionsState>): void {
    this.set({ ...this.state, ...patch })
  }
}

/** One session's artifacts, kept equal to the server's by `/sessions/:id/stream`. */
export class ArtifactsWatch extends Watch<ArtifactsState> {
  private map = new Map<number, Artifact>()
  private stream: StreamHandle | undefined

  /** @internal */
  constructor(sessionId: string, start: (watch: ArtifactsWatch) => StreamHandle) {
    super({ sessionId, connection: { status: "connecting", attempt: 0 }, synced: false, artifacts: [] })
    this.stream = start(this)
  }

  protected override stop(): void {
    this.stream?.close()
  }

  /** @internal */
  opened(): void {
    this.emit({ synced: false })
  }

  /** @internal Snapshots replace the copy; updates append or set one field. */
  message(m: SseMessage): void {
    switch (m.event) {
      case "artifact_snapshot":
      case "artifact_created": {
        const { artifact } = parse(m)
        this.map.set(artifact.seq, artifact)
        // Snapshots are shown together, once complete; live changes at once.
        if (m.event === "artifact_created" || this.state.synced) this.emit({ artifacts: this.list() })
        return
      }
      case "artifact_updated": {
        const u = parse(m)
        const a = this.map.get(u.seq)
        if (a === undefined) return
        const value = u.append !== undefined ? String(a[u.field] ?? "") + u.append : u.set
        this.map.set(u.seq, { ...a, [u.field]: value, updatedAt: u.updatedAt ?? a.updatedAt })
        return this.emit({ artifacts: this.list() })
      }
      case "snapshot_complete":
        return this.emit({ synced: true, artifacts: this.list() })
    }
  }

  /** @internal */
  connection(connection: ConnectionState): void {
    this.emit({ connection })
  }

  /** The seq to resume from: the id of the last event received. */
  get lastEventId(): string | undefined {
    return this.stream?.lastEventId()
  }

  private list(): ReadonlyArray<Artifact> {
    const out = [...this.map.values()]
    // Usually already in order (seqs arrive ascending); sort only when not.
    for (let i = 1; i < out.length; i++) {
      if (out[i - 1]!.seq > out[i]!.seq) return out.sort((a, b) => a.seq - b.seq)
    }
    return out
  }

  private emit(patch: Partial<ArtifactsState>): void {
    this.set({ ...this.state, ...patch })
  }
}

export class ReinClient {
  readonly baseUrl: string
  private readonly token: string | undefined
  private readonly fetchFn: Fetch
  private readonly retry: RetryOptions | undefined

  constructor(options: ReinClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "")
    this.token = options.token || undefined
    this.fetchFn = options.fetch ?? defaultFetch()
    this.retry = options.retry
  }

  /** `GET /sessions[?project=][&attention=1]`, oldest first; `attention`: only the sessions that need someone. */
  async listSessions(filter: SessionFilter = {}): Promise<ReadonlyArray<Session>> {
    return (await this.json("GET", `/sessions${query(filter)}`)) as ReadonlyArray<Session>
  }

  /** `GET /sessions/:id`; `undefined` when there is no such session. */
  async getSession(id: string): Promise<Session | undefined> {
    try {
      return (await this.json("GET", `/sessions/${segment(id)}`)) as Session
    } catch (e) {
      if ((e as ReinError).status === 404) return undefined
      throw e
    }
  }

  /**
   * `POST /sessions/:id`; rejects with a ReinError (409 `conflict` when it exists, 400 for a bad
   * id). With `agent`, a runner starts that agent profile for it in a worktree of `repo` (409
   * `no_runner` when none can: nothing is created).
   */
  async createSession(id: string, options: CreateSessionOptions = {}): Promise<CreatedSession> {
    const body = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
    return (await this.json("POST", `/sessions/${segment(id)}`, body)) as CreatedSession
  }

  /** `POST /sessions/:id/stop`: its runner stops the agent; session, transcript and worktree stay. */
  async stopSession(id: string): Promise<void> {
    await this.json("POST", `/sessions/${segment(id)}/stop`)
  }

  /** `POST /sessions/:id/start`: its runner starts the agent again in the same worktree. */
  async startSession(id: string): Promise<void> {
    await this.json("POST", `/sessions/${segment(id)}/start`)
  }

  /** `GET /runners`: every runner the hub knows, online or not, with what it offers. */
  async listRunners(): Promise<ReadonlyArray<RunnerInfo>> {
    return (await this.json("GET", "/runners")) as ReadonlyArray<RunnerInfo>
  }

  /** `POST /runners`: registers a runner; its token is in this answer only. */
  async createRunner(name: string): Promise<{ readonly id: string; readonly name: string; readonly token: string }> {
    return (await this.json("POST", "/runners", { name })) as { id: string; name: string; token: string }
  }

  /** `DELETE /runners/:id`: its token stops working and its job stream ends. */
  async deleteRunner(id: string): Promise<void> {
    await this.json("DELETE", `/runners/${segment(id)}`)
  }

  /** `DELETE /sessions/:id`; ends its streams and its sandbox's command stream. */
  async deleteSession(id: string): Promise<void> {
    await this.json("DELETE", `/sessions/${segment(id)}`)
  }

  /** `GET /sessions/:id/artifacts`, ordered by seq. */
  async artifacts(id: string): Promise<ReadonlyArray<Artifact>> {
    return (await this.json("GET", `/sessions/${segment(id)}/artifacts`)) as ReadonlyArray<Artifact>
  }

  /**
   * `GET /sessions/:id/artifacts?before=|after=&limit=`: one page, in seq order. With neither
   * bound, the newest page. 400 for a bad parameter, 404 when there is no such session.
   */
  async artifactsPage(id: string, page: PageOptions = {}): Promise<ArtifactsPage> {
    const q = new URLSearchParams()
    if (page.before !== undefined) q.set("before", String(page.before))
    if (page.after !== undefined) q.set("after", String(page.after))
    q.set("limit", String(page.limit ?? 200))
    const res = await this.request("GET", `/sessions/${segment(id)}/artifacts?${q}`)
    const artifacts = JSON.parse(await res.text()) as ReadonlyArray<Artifact>
    return { artifacts, more: res.headers.get("x-rein-more") === "1" }
  }

  /** `POST /sessions/:id/commands`: resolves once the sandbox stream has it; 409 `no_sandbox` without one. */
  async sendCommand(id: string, command: Command): Promise<void> {
    await this.json("POST", `/sessions/${segment(id)}/commands`, command)
  }

  prompt(id: string, text: string): Promise<void> {
    return this.sendCommand(id, { type: "prompt", text })
  }

  abort(id: string): Promise<void> {
    return this.sendCommand(id, { type: "abort" })
  }

  /**
   * Answers a permission request with a decision, or with one of its options (`{ optionId }`); the
   * server completes the other. 409 `conflict` when another client answered first; 400 when the
   * `optionId` is not one of the request's options.
   */
  replyPermission(id: string, requestId: string, reply: PermissionDecision | PermissionChoice): Promise<void> {
    return this.sendCommand(id, {
      type: "permission_reply",
      requestId,
      ...(typeof reply === "string" ? { decision: reply } : reply)
    })
  }

  /** `replyPermission` by the name the protocol gives it. */
  permissionReply(id: string, requestId: string, reply: PermissionDecision | PermissionChoice): Promise<void> {
    return this.replyPermission(id, requestId, reply)
  }

  /** Asks the agent to switch to one of the modes its `agent` artifact lists; 409 `no_sandbox` without a sandbox. */
  setMode(id: string, modeId: string): Promise<void> {
    return this.sendCommand(id, { type: "set_mode", modeId })
  }

  /**
   * The session list, live. With `attention`, only the sessions that need someone: one enters
   * the list when it starts to, and leaves it when it stops. Reconnects by itself; `close()` it when done. */
  watchSessions(options: WatchOptions<SessionsState> & SessionFilter = {}): SessionsWatch {
    const q = query(options)
    const watch = new SessionsWatch((w) =>
      openStream({
        fetch: this.fetchFn,
        url: joinUrl(this.baseUrl, `/sessions/stream${q}`),
        token: this.token,
        retry: this.retry,
        resume: false,
        onOpen: () => w.opened(),
        onMessage: (m) => w.message(m),
        onState: (s) => w.connection(s)
      })
    )
    if (options.onChange) watch.subscribe(options.onChange)
    return watch
  }

  /**
   * One session's artifacts, live, resuming with `Last-Event-ID` after a drop.
   * Ends with `connection.status` "gone" when the session is removed.
   */
  watchSession(id: string, options: WatchSessionOptions = {}): ArtifactsWatch {
    const url = joinUrl(this.baseUrl, `/sessions/${segment(id)}/stream`)
    const watch = new ArtifactsWatch(id, (w) =>
      openStream({
        fetch: this.fetchFn,
        url,
        firstUrl: options.tail !== undefined ? `${url}?tail=${options.tail}` : undefined,
        token: this.token,
        retry: this.retry,
        onOpen: () => w.opened(),
        onMessage: (m) => w.message(m),
        onState: (s) => w.connection(s)
      })
    )
    if (options.onChange) watch.subscribe(options.onChange)
    return watch
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    let res: Response
    try {
      res = await this.fetchFn(joinUrl(this.baseUrl, path), {
        method,
        headers: { ...authHeaders(this.token), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {})
      })
    } catch (e) {
      throw networkError(e)
    }
    if (!res.ok) throw await errorFromResponse(res)
    return res
  }

  private async json(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.request(method, path, body)
    const text = await res.text()
    return text === "" ? undefined : JSON.parse(text)
  }
}
