/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`,
 * driven by playwright-core) against a real server serving the built
 * dashboard, with the demo agent as the sandbox. Every wait is for a DOM
 * state or a server state, never for time. Screenshots of the main views go
 * to test/screenshots/.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ReinClient, SandboxConnection } from "../src/client/index.js"
import { type DemoAgent, startDemoAgent } from "../src/demo/agent.js"
import { chromiumPath, ensureDashboardBuilt, haveChromium, launch, root, shots } from "./chromium.js"
import { eventually, start, type TestServer, tempDir } from "./helpers.js"

if (!haveChromium) {
  console.warn(`${chromiumPath} is missing: browser tests ${process.env.CI ? "fail" : "are skipped"} (apt-get install chromium)`)
}

const T = 15_000

describe.skipIf(!haveChromium && !process.env.CI)("dashboard in Chromium", () => {
  let server: TestServer
  let client: ReinClient
  let browser: Browser
  const agents: Array<DemoAgent> = []
  const pageErrors: Array<string> = []

  beforeAll(async () => {
    ensureDashboardBuilt()
    mkdirSync(shots, { recursive: true })
    server = await start()
    client = new ReinClient({ baseUrl: server.url })
    browser = await launch()
  }, 120_000)

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop().catch(() => {})))
    await browser?.close()
    await server?.close()
  })

  const newPage = async (url: string, colorScheme: "light" | "dark" = "light") => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 }, colorScheme })
    page.setDefaultTimeout(T)
    page.on("pageerror", (e) => pageErrors.push(e.message))
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(m.text())
    })
    await page.goto(url)
    return page
  }

  const agentFor = async (sessionId: string) => {
    const agent = await startDemoAgent({ baseUrl: server.url, sessionId, pace: 0.3, cwd: root, heartbeatInterval: 60_000 })
    agents.push(agent)
    return agent
  }

  /** The transcript's artifacts as the page shows them: seq, kind and version. */
  const rendered = (page: Page) =>
    page.$$eval(".transcript [data-seq]", (els) =>
      els.map((el) => ({
        seq: Number(el.getAttribute("data-seq")),
        kind: el.getAttribute("data-kind"),
        updatedAt: Number(el.getAttribute("data-updated-at"))
      })))

  const expectConverged = async (page: Page, sessionId: string) => {
    const stored = await client.artifacts(sessionId)
    const want = stored.map((a) => ({ seq: a.seq, kind: a.kind, updatedAt: a.updatedAt }))
    await eventually(async () => JSON.stringify(await rendered(page)) === JSON.stringify(want), T, "the page to show the server's artifacts")
    return stored
  }

  const sessionBadge = (page: Page, id: string) => page.locator(`.session-item[data-session="${id}"] .session-status`)

  it("creates a session, shows the agent's streamed turn, and takes Allow on a permission request", async () => {
    const page = await newPage(server.url + "/")
    await page.getByRole("button", { name: "New session" }).click()
    const dialog = page.getByRole("dialog", { name: "New session" })
    await dialog.getByLabel("Session id").fill("b1")
    await dialog.getByLabel("Project", { exact: true }).fill("web")
    await dialog.getByRole("button", { name: "Create session" }).click()
    await expect.poll(() => page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash), { timeout: T }).toBe("#/sessions/b1")
    await page.locator('.session-item[data-session="b1"]').waitFor()
    expect(await sessionBadge(page, "b1").textContent()).toBe("starting")
    expect(await page.locator('.session-item[data-session="b1"] .project').textContent()).toContain("web")

    await agentFor("b1")
    await sessionBadge(page, "b1").and(page.locator('[data-status="live"]')).waitFor()
    await page.screenshot({ path: join(shots, "session-list.png") })

    // Keyboard: type the prompt and press Enter.
    await page.getByLabel("Prompt").fill("What is in this repository?")
    await page.getByLabel("Prompt").press("Enter")
    await page.locator(".kind-user_message", { hasText: "What is in this repository?" }).waitFor()
    await expect.poll(() => page.getByLabel("Prompt").inputValue()).toBe("")

    // Streamed Markdown text appears, then the permission request.
    const answer = page.locator(".kind-text .markdown").first()
    await answer.locator("strong", { hasText: "simulated agent, not a model" }).waitFor()
    const permission = page.locator(".kind-permission").first()
    await permission.getByRole("button", { name: "Allow", exact: true }).waitFor()
    expect(await page.locator(".kind-tool_call", { hasText: "write_file" }).locator(".badge").textContent()).toBe("running")
    // The directory listing is real.
    expect(await page.locator(".kind-tool_call", { hasText: "list_directory" }).locator(".tool-output").textContent()).toContain("package.json")
    // Reasoning is there, collapsed.
    expect(await page.locator("details.reasoning").first().evaluate((d) => (d as unknown as { open: boolean }).open)).toBe(false)
    await page.screenshot({ path: join(shots, "permission-request.png") })

    await permission.getByRole("button", { name: "Allow", exact: true }).click()
    await permission.locator(".decision", { hasText: "Allowed once" }).waitFor()
    await page.locator(".kind-file_change .diff-line.add", { hasText: "# Demo note" }).waitFor()
    await page.locator(".kind-usage").waitFor()
    await sessionBadge(page, "b1").and(page.locator('[data-status="idle"]')).waitFor()
    await page.locator(".kind-plan .plan-completed").nth(4).waitFor()
    expect(await page.locator(".kind-tool_call", { hasText: "write_file" }).locator(".badge").textContent()).toBe("done")
    expect(await page.locator(".session-header .summary").textContent()).toBe("Demo: What is in this repository?")

    const stored = await expectConverged(page, "b1")
    expect(stored.find((a) => a.kind === "permission")?.decision).toBe("allow_once")
    await page.screenshot({ path: join(shots, "session-view.png") })
    await page.emulateMedia({ colorScheme: "dark" })
    await page.screenshot({ path: join(shots, "session-view-dark.png") })
    await page.close()
  })

  it("Abort ends a running turn: the tool call and its unanswered permission are cancelled", async () => {
    const page = await newPage(`${server.url}/#/sessions/b1`)
    await page.locator('.connection[data-connection="open"]').first().waitFor()
    const before = await client.artifacts("b1")
    await page.getByLabel("Prompt").fill("Now write the file, please")
    await page.getByRole("button", { name: "Send" }).click()
    // The turn waits on its permission request: abort it there.
    const pending = page.locator(".kind-permission .permission.pending")
    await pending.getByRole("button", { name: "Allow", exact: true }).waitFor()
    await sessionBadge(page, "b1").and(page.locator('[data-status="live"]')).waitFor()
    await page.getByRole("button", { name: "Abort" }).click()

    const tool = page.locator(".kind-tool_call", { hasText: "write_file" }).last()
    await tool.locator(".badge", { hasText: "cancelled" }).waitFor()
    const cancelled = page.locator(".kind-permission").last()
    await cancelled.locator(".decision-cancelled", { hasText: "Cancelled" }).waitFor()
    expect(await cancelled.getByRole("button").count()).toBe(0)
    await sessionBadge(page, "b1").and(page.locator('[data-status="idle"]')).waitFor()
    expect(await page.getByRole("button", { name: "Abort" }).isDisabled()).toBe(true)
    // It reads "stopped", not "done", and the transcript says where the turn was stopped.
    expect(await sessionBadge(page, "b1").textContent()).toBe("stopped")
    await page.locator(".kind-turn_stopped", { hasText: "Turn stopped" }).last().waitFor()

    const stored = await expectConverged(page, "b1")
    const added = stored.slice(before.length)
    expect(added.find((a) => a.kind === "tool_call" && a.name === "write_file")?.status).toBe("cancelled")
    expect(added.find((a) => a.kind === "permission")?.decision).toBe("cancelled")
    expect(added.some((a) => a.kind === "file_change")).toBe(false)
    await page.close()
  })

  it("ACP details: tool titles, kinds and locations; option buttons by name send their optionId; the agent's modes and a mode switch; context; a cancelled permission", async () => {
    await client.createSession("acp1")
    const sandbox = new SandboxConnection({ baseUrl: server.url, sessionId: "acp1" })
    const received: Array<unknown> = []
    sandbox.onCommand((c) => received.push(c))
    await sandbox.connect()
    try {
      await sandbox.send([
        { type: "agent", name: "scripted-agent", version: "0.9", modes: [{ id: "ask", name: "Ask first" }, { id: "code", name: "Write code" }], currentModeId: "ask" },
        { type: "turn_start" },
        { type: "tool_call_start", toolCallId: "e1", name: "fs_edit", title: "Edit <b>src/app.ts</b>", kind: "edit", locations: [{ path: "src/app.ts", line: 12 }] },
        {
          type: "permission_request",
          requestId: "q1",
          toolCallId: "e1",
          title: "Apply the edit?",
          options: [
            { optionId: "yes-once", name: "Yes, this time", kind: "allow_once" },
            { optionId: "yes-all", name: "Yes, and don't ask again", kind: "allow_always" },
            { optionId: "nope", name: "No, keep it", kind: "reject_once" }
          ]
        },
        { type: "context", used: 50_000, size: 200_000 }
      ])
      const page = await newPage(`${server.url}/#/sessions/acp1`)
      const tool = page.locator(".kind-tool_call").first()
      // Untrusted text stays text: the title's markup is shown, not rendered.
      await tool.locator(".tool-title", { hasText: "Edit <b>src/app.ts</b>" }).waitFor()
      expect(await tool.locator("b").count()).toBe(0)
      expect(await tool.locator(".tool-name").textContent()).toBe("fs_edit")
      expect(await tool.locator(".tool-kind").textContent()).toBe("edit")
      expect(await tool.locator(".tool-locations").textContent()).toBe("src/app.ts:12")
      const agent = page.locator(".kind-agent")
      await agent.locator(".agent-name", { hasText: "scripted-agent" }).waitFor()
      expect(await agent.locator(".agent-version").textContent()).toBe("0.9")
      expect(await agent.locator(".mode.current").textContent()).toContain("Ask first")
      expect(await page.locator(".kind-usage .context").textContent()).toContain("50,000 / 200,000 (25%)")

      const permission = page.locator(".kind-permission").first()
      expect(await permission.getByRole("button").allTextContents()).toEqual(["Yes, this time", "Yes, and don't ask again", "No, keep it"])
      await page.screenshot({ path: join(shots, "permission-options.png") })
      await permission.getByRole("button", { name: "Yes, and don't ask again" }).click()
      await permission.locator(".decision", { hasText: "Chose “Yes, and don't ask again”" }).waitFor()
      await eventually(() => received.length === 1, T, "the reply to reach the sandbox")
      expect(received[0]).toEqual({ type: "permission_reply", requestId: "q1", decision: "allow_always", optionId: "yes-all" })

      await agent.locator("select").selectOption("code")
      await eventually(() => received.length === 2, T, "set_mode to reach the sandbox")
      expect(received[1]).toEqual({ type: "set_mode", modeId: "code" })
      await sandbox.send({ type: "agent", currentModeId: "code" })
      await agent.locator(".mode.current", { hasText: "Write code" }).waitFor()

      // A second request the turn's cancellation leaves unanswered: shown cancelled, without buttons.
      await sandbox.send({
        type: "permission_request",
        requestId: "q2",
        title: "Run the tests?",
        options: [{ optionId: "run", name: "Run them", kind: "allow_once" }]
      })
      const second = page.locator(".kind-permission").nth(1)
      await second.getByRole("button", { name: "Run them" }).waitFor()
      await sandbox.send({ type: "turn_end", stopReason: "cancelled" })
      await second.locator(".decision-cancelled").waitFor()
      expect(await second.getByRole("button").count()).toBe(0)
      await expectConverged(page, "acp1")
      expect(pageErrors).toEqual([])
      await page.close()
    } finally {
      await sandbox.close()
    }
  })

  it("a reload in the middle of a streamed turn converges to the server's transcript", async () => {
    const page = await newPage(`${server.url}/#/sessions/b1`)
    await page.locator('.connection[data-connection="open"]').first().waitFor()
    const texts = page.locator(".kind-text")
    const before = await texts.count()
    await page.getByLabel("Prompt").fill("Third time")
    await page.getByLabel("Prompt").press("Enter")
    // Reload as soon as this turn's answer starts streaming.
    await texts.nth(before).waitFor()
    await page.reload()
    await page.locator('.connection[data-connection="open"]').first().waitFor()
    const permission = page.locator(".kind-permission .permission.pending")
    await permission.getByRole("button", { name: "Allow", exact: true }).click()
    await sessionBadge(page, "b1").and(page.locator('[data-status="idle"]')).waitFor()
    const stored = await expectConverged(page, "b1")
    // The rendered text is the server's text, not a doubled or truncated copy.
    const answer = stored.filter((a) => a.kind === "text").at(-2)!
    const shown = await page.locator(`[data-seq="${answer.seq}"] .markdown`).innerText()
    expect(shown.replace(/\s+/g, " ")).toContain("I am a simulated agent, not a model. I answer every prompt")
    expect(shown.match(/Heads-up/g)).toHaveLength(1)
    expect(await page.locator(`[data-seq="${answer.seq}"] blockquote`).innerText()).toBe("Third time")
    await page.close()
  })

  it("agent output cannot run script: Markdown has no raw HTML and no unsafe links", async () => {
    await client.createSession("x1", { project: "evil" })
    const dialogs: Array<string> = []
    const payload = [
      "Hello <img src=x onerror=\"window.__xss='img'\"> and <script>window.__xss='script'</script>",
      "",
      "[click me](javascript:window.__xss='link') and [data](data:text/html,<script>window.__xss='data'</script>)",
      "",
      "<a href=\"javascript:window.__xss='raw'\">raw anchor</a> <iframe src=\"javascript:window.__xss='iframe'\"></iframe>",
      "",
      "![pixel](https://example.com/x.png\" onerror=\"window.__xss='image')",
      "",
      "A [safe link](https://example.com/docs) stays."
    ].join("\n")
    const events = [
      { type: "text_delta", delta: payload },
      { type: "tool_call_start", toolCallId: "t", name: "<img src=x onerror=window.__xss='name'>", input: "<script>window.__xss='input'</script>" },
      { type: "tool_call_end", toolCallId: "t", output: "<img src=x onerror=window.__xss='output'>" },
      { type: "permission_request", requestId: "r", title: "<img src=x onerror=window.__xss='title'>" },
      { type: "file_change", path: "<svg onload=window.__xss='path'>", action: "modify", diff: "+<script>window.__xss='diff'</script>" },
      { type: "error", message: "<img src=x onerror=window.__xss='error'>" },
      { type: "summary", text: "<img src=x onerror=window.__xss='summary'>" }
    ]
    expect((await server.request("POST", "/sessions/x1/events", events)).status).toBe(202)

    const page = await newPage(`${server.url}/#/sessions/x1`)
    page.on("dialog", (d) => {
      dialogs.push(d.message())
      void d.dismiss()
    })
    const markdown = page.locator(".kind-text .markdown")
    await markdown.getByText("safe link").waitFor()
    await page.locator(".kind-error").waitFor()
    await page.locator('.session-item[data-session="x1"] .session-summary', { hasText: "<img" }).waitFor()

    // Raw HTML shows as text; no element came from it.
    expect(await markdown.innerText()).toContain("<script>window.__xss='script'</script>")
    expect(await page.locator(".transcript img, .transcript script, .transcript iframe, .transcript svg, .sessions img").count()).toBe(0)
    // No element carries an event handler attribute.
    expect(await page.$$eval(".app *", (els) => els.flatMap((el) => (el.getAttributeNames() as Array<string>).filter((n: string) => n.startsWith("on"))))).toEqual([])
    // Links: only http(s) ones became anchors (the image is plain link text: images are off), opened safely.
    const hrefs = await page.$$eval(".transcript a", (as) => as.map((a) => [a.getAttribute("href"), a.getAttribute("rel"), a.getAttribute("target")]))
    expect(hrefs).toEqual([
      ["https://example.com/x.png", "noopener noreferrer nofollow", "_blank"],
      ["https://example.com/docs", "noopener noreferrer nofollow", "_blank"]
    ])
    await markdown.getByText("click me").click()
    await page.locator(".kind-permission").getByRole("button", { name: "Allow", exact: true }).hover()
    expect(await page.evaluate(() => (globalThis as { __xss?: string }).__xss)).toBeUndefined()
    expect(dialogs).toEqual([])
    await page.screenshot({ path: join(shots, "untrusted-output.png") })
    await page.close()
  })

  it("follows new output at the bottom, and stops following when the reader scrolls up", async () => {
    const page = await newPage(`${server.url}/#/sessions/b1`, "light")
    await page.locator('.session-view .connection[data-connection="open"]').waitFor()
    await expectConverged(page, "b1")
    const transcript = page.locator(".transcript")
    const metrics = () => transcript.evaluate((el) => ({ top: el.scrollTop, max: el.scrollHeight - el.clientHeight }))
    // Opened at the bottom of a transcript taller than the view.
    await expect.poll(async () => {
      const m = await metrics()
      return m.max > 200 && m.max - m.top < 2
    }, { timeout: T }).toBe(true)

    // Scrolled up: new output does not move the view; a button offers to jump.
    await transcript.evaluate((el) => el.scrollTo({ top: 0 }))
    await expect.poll(async () => (await metrics()).top).toBe(0)
    expect((await server.request("POST", "/sessions/b1/events", { type: "error", message: "first while reading" })).status).toBe(202)
    await page.locator(".kind-error", { hasText: "first while reading" }).waitFor()
    const jump = page.getByRole("button", { name: "New activity" })
    await jump.waitFor()
    expect((await metrics()).top).toBe(0)

    // Back at the bottom (by the button, from the keyboard), it follows again.
    await jump.focus()
    await page.keyboard.press("Enter")
    await expect.poll(async () => {
      const m = await metrics()
      return m.max - m.top < 2
    }).toBe(true)
    expect((await server.request("POST", "/sessions/b1/events", { type: "error", message: "second while following" })).status).toBe(202)
    await page.locator(".kind-error", { hasText: "second while following" }).waitFor()
    await expect.poll(async () => {
      const m = await metrics()
      return m.max - m.top < 2
    }, { timeout: T }).toBe(true)
    expect(await jump.count()).toBe(0)
    await page.close()
  })

  it("filters the list by project and deletes a session (with a confirming second click)", async () => {
    await client.createSession("d1", { project: "evil" })
    const page = await newPage(`${server.url}/#/sessions/d1`)
    await page.locator('.session-item[data-session="d1"]').waitFor()
    await page.getByLabel("Filter by project").selectOption("evil")
    await expect.poll(async () => (await page.locator(".session-item").evaluateAll((els) => els.map((e) => e.getAttribute("data-session")))).sort())
      .toEqual(["d1", "x1"])
    await page.getByLabel("Filter by project").selectOption("")
    expect(await page.locator('.session-item[data-session="b1"]').count()).toBe(1)

    await page.getByRole("button", { name: "Delete d1" }).click()
    await page.getByRole("button", { name: "Confirm delete d1" }).click()
    await page.locator('.session-item[data-session="d1"]').waitFor({ state: "detached" })
    // The open view says so, then the page goes back to the list.
    await page.locator('.session-view .connection[data-connection="gone"]', { hasText: "Session deleted" }).waitFor()
    await expect.poll(() => page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash), { timeout: T }).toBe("#/")
    expect(await client.getSession("d1")).toBeUndefined()
    await page.close()
  })

  it("with auth on, reads the token from #token=, keeps it out of the address bar, and asks for it when missing", async () => {
    const secured = await start({ token: "s3cret" })
    try {
      await secured.request("POST", "/sessions/a1", {}, { authorization: "Bearer s3cret" })
      const refused = await newPage(`${secured.url}/`)
      await refused.getByRole("alert").filter({ hasText: "requires a token" }).waitFor()
      await refused.getByLabel("Token").fill("s3cret")
      await refused.getByRole("button", { name: "Use token" }).click()
      await refused.locator('.session-item[data-session="a1"]').waitFor()
      await refused.close()

      const page = await newPage(`${secured.url}/#/sessions/a1&token=s3cret`)
      await page.locator('.session-item[data-session="a1"]').waitFor()
      await page.locator('.session-view .connection[data-connection="open"]').waitFor()
      expect(await page.evaluate(() => (globalThis as unknown as { location: { href: string } }).location.href)).toBe(`${secured.url}/#/sessions/a1`)
      await page.close()
    } finally {
      await secured.close()
    }
  })

  it("shows the reconnect state while the server is away and converges when it is back", async () => {
    const { dir, cleanup } = tempDir()
    const dbPath = join(dir, "rein.db")
    const first = await start({ dbPath })
    const port = first.port
    let second: TestServer | undefined
    try {
      await first.createSession("r1")
      expect((await first.request("POST", "/sessions/r1/events", { type: "text_delta", delta: "before the restart" })).status).toBe(202)
      const page = await newPage(`${first.url}/#/sessions/r1`)
      await page.locator(".kind-text", { hasText: "before the restart" }).waitFor()
      await page.locator('.session-view .connection[data-connection="open"]').waitFor()

      await first.close()
      await page.locator('.session-view .connection[data-connection="reconnecting"]', { hasText: "Reconnecting" }).waitFor()
      await page.locator('.brand .connection[data-connection="reconnecting"]').waitFor()
      await page.screenshot({ path: join(shots, "reconnecting.png") })

      second = await start({ dbPath, port })
      expect((await second.request("POST", "/sessions/r1/events", { type: "text_delta", delta: "and after" })).status).toBe(202)
      await page.locator(".kind-text", { hasText: "and after" }).waitFor({ timeout: 20_000 })
      await page.locator('.session-view .connection[data-connection="open"]').waitFor()
      const stored = await second.request("GET", "/sessions/r1/artifacts")
      await eventually(
        async () => JSON.stringify((await rendered(page)).map((a) => a.seq)) === JSON.stringify(stored.body.map((a: { seq: number }) => a.seq)),
        T,
        "the transcript to converge after the restart"
      )
      await page.close()
    } finally {
      await second?.close()
      await first.close()
      cleanup()
    }
  })

  it("the page raised no errors and loaded nothing that its CSP blocked", () => {
    expect(pageErrors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED|net::ERR/.test(e))).toEqual([])
  })
})
