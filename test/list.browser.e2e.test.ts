/**
 * What a person running several agents sees (issue 21), in real Chromium against a real server:
 * the list's order (needs you, working, the rest by last activity) and its status filter; "stopped"
 * after an abort; an agent that crashed counted as needing you; compact rows whose cost never runs
 * into Delete, and no dash for an unknown cost; "New session" as a dialog; a stopped turn in the
 * transcript; permission options in the server's order with "always" secondary; diff headers and
 * file names; Markdown fences in tool output; the error card's line breaks; "Notify me" over plain
 * HTTP on a LAN address; a phone not focusing the prompt. Every wait is for a DOM or server state.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { orderSessions, ReinClient } from "../src/client/index.js"
import { chromiumPath, ensureDashboardBuilt, haveChromium, launch, shots } from "./chromium.js"
import { eventually, type SseClient, sse, start, type TestServer } from "./helpers.js"

if (!haveChromium) {
  console.warn(`${chromiumPath} is missing: browser tests ${process.env.CI ? "fail" : "are skipped"} (apt-get install chromium)`)
}

const T = 15_000

describe.skipIf(!haveChromium && !process.env.CI)("dashboard: a list you can trust (issue 21)", () => {
  let server: TestServer
  let client: ReinClient
  let browser: Browser
  const open: Array<{ close: () => unknown }> = []
  const pageErrors: Array<string> = []

  beforeAll(async () => {
    ensureDashboardBuilt()
    mkdirSync(shots, { recursive: true })
    server = await start()
    client = new ReinClient({ baseUrl: server.url })
    browser = await launch()
  }, 120_000)

  afterEach(async () => {
    for (const c of open.splice(0).reverse()) await c.close()
    expect(pageErrors.splice(0)).toEqual([])
  })

  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  const newContext = async (options: { width?: number; height?: number; notifications?: boolean; hasTouch?: boolean; isMobile?: boolean } = {}) => {
    const context = await browser.newContext({
      viewport: { width: options.width ?? 1280, height: options.height ?? 860 },
      ...(options.hasTouch === true && { hasTouch: true }),
      ...(options.isMobile === true && { isMobile: true })
    })
    open.push(context)
    if (options.notifications === true) {
      await context.grantPermissions(["notifications"], { origin: server.url })
      await context.addInitScript(() => {
        const w = globalThis as any
        const Real = w.Notification
        w.__notes = []
        w.Notification = new Proxy(Real, {
          construct(target, args) {
            let n: any
            try {
              n = new target(...args)
            } catch {
              n = new EventTarget()
              n.close = () => {}
            }
            w.__notes.push({ title: args[0], body: args[1]?.body, n })
            return n
          }
        })
      })
    }
    return context
  }

  const newPage = async (context: BrowserContext, url: string) => {
    const page = await context.newPage()
    page.setDefaultTimeout(T)
    page.on("pageerror", (e) => pageErrors.push(e.message))
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().includes("Failed to load resource")) pageErrors.push(m.text())
    })
    await page.goto(url)
    return page
  }

  /** A session with a sandbox holding its command stream; events posted as that sandbox. */
  const session = async (id: string, project?: string) => {
    expect((await server.request("POST", `/sessions/${id}`, project === undefined ? {} : { project })).status).toBe(201)
    const commands: SseClient = await sse(`${server.url}/sessions/${id}/commands`)
    open.push(commands)
    await commands.waitFor((e) => e.event === "snapshot_complete")
    const post = async (...events: Array<unknown>) => {
      const r = await server.request("POST", `/sessions/${id}/events`, events)
      expect(r.status, JSON.stringify(r.body)).toBe(202)
    }
    return { id, commands, post }
  }

  const row = (page: Page, id: string) => page.locator(`.session-item[data-session="${id}"]`)
  const state = (page: Page, id: string) => row(page, id).locator(".session-status")
  const shown = (page: Page, prefix: string) =>
    page.locator(".session-item").evaluateAll((els, p) => els.map((e) => e.getAttribute("data-session")!).filter((id) => id.startsWith(p)), prefix)
  const title = (page: Page) => page.evaluate(() => (globalThis as any).document.title as string)
  const notes = (page: Page) => page.evaluate(() => ((globalThis as any).__notes as Array<{ title: string; body: string }>).map(({ body, title }) => ({ title, body })))
  const disconnect = async (s: { id: string; commands: SseClient }) => {
    s.commands.close()
    await eventually(async () => (await client.getSession(s.id))?.status === "disconnected", T, `${s.id} disconnected`)
  }

  it("orders needs you, working, the rest by last activity; filters by status; reads stopped and a crashed agent; leaves out unknown costs", async () => {
    const done = await session("q-done")
    const ask = await session("q-ask")
    const work = await session("q-work")
    const crash = await session("q-crash")
    const stop = await session("q-stop")
    const gone = await session("q-gone")
    const none = await session("q-none")
    await done.post({ type: "turn_start" }, { type: "usage", inputTokens: 10, outputTokens: 5, costUsd: 0.004 }, { type: "turn_end", stopReason: "end_turn" })
    await ask.post({ type: "turn_start" }, { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 1.5 }, { type: "permission_request", requestId: "r1", title: "Delete the build folder?" })
    await work.post({ type: "turn_start" }, { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.25 })
    await stop.post({ type: "turn_start" }, { type: "turn_end", stopReason: "cancelled" })
    await none.post({ type: "turn_start" }, { type: "turn_end", stopReason: "end_turn" })
    // The agent was killed: the sandbox reports it (with stderr's last lines), then goes away.
    await crash.post({ type: "turn_start" }, { type: "error", message: "agent exited with code 137\nstderr:\nKilled", fatal: true })
    await disconnect(crash)
    await disconnect(gone)

    const page = await newPage(await newContext(), server.url + "/")
    await state(page, "q-ask").and(page.locator('[data-state="approval"]')).waitFor()
    await state(page, "q-crash").and(page.locator('[data-state="error"][data-status="disconnected"]')).waitFor()
    expect(await state(page, "q-crash").textContent()).toBe("error")
    expect(await state(page, "q-stop").textContent()).toBe("stopped")
    expect(await state(page, "q-done").textContent()).toBe("done")
    expect(await state(page, "q-work").textContent()).toBe("working")
    expect(await state(page, "q-gone").textContent()).toBe("disconnected")

    // The order is the shared rule's, applied to the server's records: needs you, working, the rest.
    const records = (await client.listSessions()).filter((s) => s.id.startsWith("q-"))
    const want = orderSessions(records).map((s) => s.id)
    await expect.poll(() => shown(page, "q-"), { timeout: T }).toEqual(want)
    expect(want.slice(0, 2).sort()).toEqual(["q-ask", "q-crash"])
    expect(want[2]).toBe("q-work")
    // The crashed agent needs you as a pending request does: the title, the overview.
    await expect.poll(() => title(page), { timeout: T }).toBe("(2) Rein")
    expect(await page.locator(".waiting").textContent()).toBe("2 need you")
    expect(await page.getByLabel("Needs approval first").count()).toBe(0)

    // Costs: "<$0.01" for a small one, nothing for none reported, never a dash.
    expect(await row(page, "q-done").locator(".session-cost").textContent()).toBe("<$0.01")
    expect(await row(page, "q-none").locator(".session-cost").count()).toBe(0)
    expect(await page.locator(".total-cost").textContent()).toBe("total $1.75")
    expect(await page.locator(".sidebar").innerText()).not.toContain("–")

    // The status filter.
    const filter = page.getByRole("group", { name: "Filter by status" })
    const pick = async (name: string, ids: Array<string>) => {
      await filter.getByRole("button", { name: new RegExp(`^${name}`) }).click()
      await expect.poll(async () => (await shown(page, "q-")).sort(), { timeout: T }).toEqual([...ids].sort())
      expect(await filter.getByRole("button", { name: new RegExp(`^${name}`) }).getAttribute("aria-pressed")).toBe("true")
    }
    await pick("Needs you", ["q-ask", "q-crash"])
    await page.screenshot({ path: join(shots, "list-needs-you.png") })
    await pick("Working", ["q-work"])
    await pick("Idle", ["q-done", "q-stop", "q-none"])
    await pick("Disconnected", ["q-gone"])
    await pick("All", want)
    expect(await shown(page, "q-")).toEqual(want)

    // The crash's error card keeps stderr's line breaks.
    await row(page, "q-crash").locator(".session-link").click()
    const card = page.locator(".kind-error .error-message")
    await card.waitFor()
    expect(await card.evaluate((el) => (globalThis as any).getComputedStyle(el).whiteSpace)).toBe("pre-wrap")
    expect((await card.innerText()).split("\n")).toEqual(["agent exited with code 137", "stderr:", "Killed"])
    for (const s of [done, ask, work, crash, stop, gone, none]) await client.deleteSession(s.id)
  })

  it("compact rows at 1280 px: 30 sessions, most of them visible; a cost never overlaps Delete", async () => {
    const ids: Array<string> = []
    for (let i = 0; i < 30; i++) {
      const id = `c-${String(i).padStart(2, "0")}-${i % 3 === 0 ? "a-rather-long-session-name-for-the-row" : "fix"}`
      ids.push(id)
      await client.createSession(id, i % 4 === 0 ? { project: "website" } : {})
      const events: Array<unknown> = [{ type: "summary", text: `Summary of session ${i}: refactoring the parser and its tests` }]
      if (i % 2 === 0) events.push({ type: "usage", inputTokens: 1, outputTokens: 1, costUsd: i === 0 ? 0.003 : i * 1.37 })
      expect((await server.request("POST", `/sessions/${id}/events`, events)).status).toBe(202)
    }
    const page = await newPage(await newContext({ width: 1280, height: 900 }), server.url + "/")
    await row(page, ids[29]!).waitFor()
    await expect.poll(async () => (await shown(page, "c-")).length, { timeout: T }).toBe(30)

    const boxes = await page.locator(".session-item").evaluateAll((els) =>
      els.map((el) => {
        const rect = (e: any) => {
          const r = e?.getBoundingClientRect()
          return r === undefined ? null : { left: r.left, right: r.right, top: r.top, bottom: r.bottom }
        }
        return {
          id: el.getAttribute("data-session"),
          row: rect(el)!,
          cost: rect(el.querySelector(".session-cost")),
          time: rect(el.querySelector(".session-time")),
          del: rect(el.querySelector(".session-side button")),
          link: rect(el.querySelector(".session-link"))
        }
      })
    )
    const overlap = (a: { left: number; right: number; top: number; bottom: number }, b: typeof a) =>
      a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5
    for (const b of boxes) {
      // About 40 px a row.
      expect(b.row.bottom - b.row.top, b.id!).toBeLessThanOrEqual(44)
      expect(overlap(b.del!, b.time!), `${b.id}: time and Delete`).toBe(false)
      expect(overlap(b.del!, b.link!), `${b.id}: link and Delete`).toBe(false)
      if (b.cost !== null) {
        expect(overlap(b.cost, b.del!), `${b.id}: cost and Delete`).toBe(false)
        expect(overlap(b.cost, b.time!), `${b.id}: cost and time`).toBe(false)
        expect(overlap(b.cost, b.link!), `${b.id}: cost and link`).toBe(false)
      }
    }
    const visible = boxes.filter((b) => b.row.bottom <= 900).length
    expect(visible).toBeGreaterThanOrEqual(17)
    await page.screenshot({ path: join(shots, "list-1280.png") })
    for (const id of ids) await client.deleteSession(id)
  })

  it("New session opens a dialog: with an id, or without one (an id is made up); the list keeps its room", async () => {
    const page = await newPage(await newContext(), server.url + "/")
    await page.locator(".brand .connection[data-connection=\"open\"]").waitFor()
    // No form above the list: the first row starts right under the toolbar and the filter.
    expect(await page.locator("form:visible").count()).toBe(0)
    await page.getByRole("button", { name: "New session" }).click()
    const dialog = page.getByRole("dialog", { name: "New session" })
    await dialog.waitFor()
    await page.screenshot({ path: join(shots, "new-session-dialog.png") })
    await dialog.getByLabel("Session id").fill("bad id!")
    await dialog.getByRole("button", { name: "Create session" }).click()
    await dialog.getByRole("alert").waitFor()
    await dialog.getByLabel("Session id").fill("ns-1")
    await dialog.getByLabel("Project").fill("web")
    await dialog.getByRole("button", { name: "Create session" }).click()
    await expect.poll(() => page.evaluate(() => (globalThis as any).location.hash), { timeout: T }).toBe("#/sessions/ns-1")
    await dialog.waitFor({ state: "hidden" })
    await row(page, "ns-1").locator(".project", { hasText: "web" }).waitFor()
    expect((await client.getSession("ns-1"))?.project).toBe("web")

    // Without an id: one is made up from the project.
    await page.getByRole("button", { name: "New session" }).click()
    await dialog.getByLabel("Project").fill("Docs Site")
    await dialog.getByRole("button", { name: "Create session" }).click()
    await expect.poll(() => page.evaluate(() => (globalThis as any).location.hash), { timeout: T }).toMatch(/^#\/sessions\/docs-site-[a-z0-9]{6}$/)
    const made = (await page.evaluate(() => (globalThis as any).location.hash as string)).slice("#/sessions/".length)
    expect((await client.getSession(made))?.project).toBe("Docs Site")

    // Escape closes it without creating anything.
    const before = (await client.listSessions()).length
    await page.getByRole("button", { name: "New session" }).click()
    await dialog.waitFor()
    await page.keyboard.press("Escape")
    await dialog.waitFor({ state: "hidden" })
    expect((await client.listSessions()).length).toBe(before)
    for (const id of ["ns-1", made]) await client.deleteSession(id)
  })

  it("a stopped turn: \"Turn stopped\" in the transcript, its unfinished plan greyed as stopped; notifications for a crashed agent", async () => {
    const s = await session("st-1")
    const watcher = await session("st-2")
    const context = await newContext({ notifications: true })
    const page = await newPage(context, `${server.url}/#/sessions/st-1`)
    await page.getByRole("button", { name: "Notify me" }).click()
    await page.getByRole("button", { name: "Notifying" }).waitFor()

    const entries = ["Read", "Plan", "Edit", "Test", "Commit"].map((content, i) => ({ content, priority: "medium", status: i === 0 ? "completed" : i === 1 ? "in_progress" : "pending" }))
    await s.post({ type: "user_message", text: "Refactor it" }, { type: "turn_start" }, { type: "plan", entries })
    const plan = page.locator(".kind-plan .plan")
    await plan.locator(".plan-progress", { hasText: "1/5 done" }).waitFor()
    expect(await plan.getAttribute("class")).not.toContain("stopped")
    await s.post({ type: "turn_end", stopReason: "cancelled" })
    await page.locator(".kind-turn_stopped", { hasText: "Turn stopped" }).waitFor()
    await plan.locator(".plan-progress", { hasText: "stopped at 1/5" }).waitFor()
    expect(await plan.getAttribute("class")).toContain("stopped")
    expect(Number(await plan.evaluate((el) => (globalThis as any).getComputedStyle(el).opacity))).toBeLessThan(1)
    await state(page, "st-1").and(page.locator('[data-state="stopped"]')).waitFor()
    await page.locator(".session-header .session-status", { hasText: "stopped" }).waitFor()
    await page.locator(".transcript").screenshot({ path: join(shots, "turn-stopped.png") })

    // A later turn's plan, finished normally, is not marked stopped.
    await s.post({ type: "user_message", text: "Again" }, { type: "turn_start" }, { type: "plan", entries: entries.map((e) => ({ ...e, status: "completed" })) }, { type: "turn_end", stopReason: "end_turn" })
    await page.locator(".kind-plan .plan").nth(1).locator(".plan-progress", { hasText: "5/5 done" }).waitFor()
    expect(await page.locator(".kind-plan .plan.stopped").count()).toBe(1)

    // Another session's agent dies mid-turn: a notification, and it counts in the title.
    await watcher.post({ type: "turn_start" })
    await state(page, "st-2").and(page.locator('[data-state="working"]')).waitFor()
    await watcher.post({ type: "error", message: "spawn /nonexistent/agent ENOENT", fatal: true })
    await disconnect(watcher)
    await expect.poll(() => notes(page), { timeout: T }).toEqual([
      { title: "st-2: error", body: "The agent stopped: it crashed or could not start." }
    ])
    await expect.poll(() => title(page), { timeout: T }).toBe("(1) Rein")
    for (const id of ["st-1", "st-2"]) await client.deleteSession(id)
  })

  it("permission options in the order given, \"always\" secondary; diff headers and absolute paths; fences in tool output; a turn's cost", async () => {
    const s = await session("pd-1")
    await s.post(
      { type: "turn_start" },
      {
        type: "tool_call_start",
        toolCallId: "t1",
        name: "Bash",
        kind: "execute",
        input: JSON.stringify({ command: "ls" })
      },
      { type: "tool_call_end", toolCallId: "t1", output: "Ran it:\n```console\n$ ls\nREADME.md\npackage.json\n```\nexit 0" },
      {
        type: "permission_request",
        requestId: "q1",
        title: "Create /tmp/new.txt?",
        // Given in an agent's own order; the server sorts them by kind.
        options: [
          { optionId: "always", name: "Always Allow", kind: "allow_always" },
          { optionId: "never", name: "Never", kind: "reject_always" },
          { optionId: "once", name: "Allow", kind: "allow_once" },
          { optionId: "no", name: "Reject", kind: "reject_once" }
        ],
        diff: ["--- /dev/null", "+++ b//tmp/new.txt", "@@ -0,0 +1,7 @@", ...[1, 2, 3, 4, 5, 6, 7].map((n) => `+line ${n}`)].join("\n") + "\n"
      },
      { type: "file_change", path: "/tmp/gone.txt", action: "delete", diff: ["--- a//tmp/gone.txt", "+++ /dev/null", "@@ -1,2 +0,0 @@", "-a", "-b"].join("\n") + "\n" },
      { type: "usage", inputTokens: 100, outputTokens: 20, costUsd: 0.0042 }
    )
    const page = await newPage(await newContext(), `${server.url}/#/sessions/pd-1`)
    const permission = page.locator(".kind-permission")
    await permission.getByRole("button", { name: "Allow", exact: true }).waitFor()
    const stored = (await client.artifacts("pd-1")).find((a) => a.kind === "permission")!
    const order = (stored.options as Array<{ name: string }>).map((o) => o.name)
    expect(await permission.getByRole("button").allTextContents()).toEqual(order)
    // The big primary button is "allow once", whatever the agent listed first; "always" is secondary.
    const looks = await permission.getByRole("button").evaluateAll((els) =>
      els.map((el) => {
        const style = (globalThis as any).getComputedStyle(el)
        return { kind: el.getAttribute("data-option-kind"), primary: el.classList.contains("primary"), bg: style.backgroundColor as string }
      })
    )
    expect(looks.filter((l) => l.primary).map((l) => l.kind)).toEqual(["allow_once"])
    const once = looks.find((l) => l.kind === "allow_once")!
    const always = looks.find((l) => l.kind === "allow_always")!
    expect(always.bg).not.toBe(once.bg)

    // The new file's hunk header as written, and its absolute path as one.
    const diff = permission.locator(".permission-diff")
    expect(await diff.locator(".diff-line.hunk").textContent()).toBe("@@ -0,0 +1,7 @@")
    expect(await diff.locator(".file-path").textContent()).toBe("/tmp/new.txt")
    expect(await diff.locator(".diff-line.add").first().getAttribute("data-new")).toBe("1")
    const deleted = page.locator(".kind-file_change")
    expect(await deleted.locator(".diff-line.hunk").textContent()).toBe("@@ -1,2 +0,0 @@")
    expect(await deleted.locator(".diff-line.del").last().getAttribute("data-old")).toBe("2")
    await permission.screenshot({ path: join(shots, "permission-order.png") })

    // The tool's output: the fence is a code block, not backticks.
    const output = page.locator(".kind-tool_call .tool-output")
    await output.locator("pre.code-block").waitFor()
    expect(await output.locator("pre.code-block code").textContent()).toBe("$ ls\nREADME.md\npackage.json")
    expect(await output.innerText()).not.toContain("```")
    expect(await output.innerText()).toContain("Ran it:")
    expect(await output.innerText()).toContain("exit 0")
    // A turn's cost by the same rule as the list's (exact in its title).
    expect(await page.locator(".kind-usage .usage-cost").textContent()).toBe("<$0.01")
    expect(await page.locator(".kind-usage .usage-cost").getAttribute("title")).toBe("$0.0042")
    await client.deleteSession("pd-1")
  })

  it("\"Notify me\" over plain HTTP on a LAN address says notifications need a secure context", async () => {
    const lan = await launch(["--host-resolver-rules=MAP lan.test 127.0.0.1"])
    open.push(lan)
    const context = await lan.newContext({ viewport: { width: 1280, height: 860 } })
    const page = await newPage(context, `http://lan.test:${server.port}/`)
    await page.locator('.brand .connection[data-connection="open"]').waitFor()
    expect(await page.evaluate(() => (globalThis as any).isSecureContext)).toBe(false)
    const button = page.getByRole("button", { name: "Notify me" })
    expect(await button.isDisabled()).toBe(true)
    const why = await page.locator(".notify-blocked").textContent()
    expect(why).toContain("secure context")
    expect(why).toContain("HTTPS or on localhost")
    expect(why).not.toContain("settings")
    expect(await button.getAttribute("title")).toBe(why)
  })

  it("on a phone, opening a session does not focus the prompt (the keyboard would cover the request); on a desktop it does", async () => {
    const s = await session("ph-1")
    await s.post({ type: "turn_start" }, { type: "permission_request", requestId: "p", title: "Run the tests?" })
    const phone = await newPage(await newContext({ width: 390, height: 844, hasTouch: true, isMobile: true }), server.url + "/")
    await row(phone, "ph-1").locator(".session-link").click()
    await phone.locator(".kind-permission").getByRole("button", { name: "Allow", exact: true }).waitFor()
    expect(await phone.evaluate(() => (globalThis as any).document.activeElement?.id ?? null)).not.toBe("prompt")

    const desktop = await newPage(await newContext(), `${server.url}/#/sessions/ph-1`)
    await desktop.locator(".kind-permission").waitFor()
    await expect.poll(() => desktop.evaluate(() => (globalThis as any).document.activeElement?.id ?? null), { timeout: T }).toBe("prompt")
    await client.deleteSession("ph-1")
  })
})
