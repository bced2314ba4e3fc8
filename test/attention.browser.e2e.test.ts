/**
 * Knowing at a glance which agent needs you (issue 16), in real Chromium against a real server:
 * the list's states, order, costs and the title count, cleared when another client answers;
 * approving from a row; notifications for other sessions and none on a reload; diffs with line
 * numbers, the Files view and a permission's proposed change; the phone layout. Every wait is
 * for a DOM or server state. Screenshots of each state go to test/screenshots/.
 */
import { mkdirSync } from "node:fs"
import { join } from "node:path"
import type { Browser, BrowserContext, Page } from "playwright-core"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { ReinClient } from "../src/client/index.js"
import { chromiumPath, ensureDashboardBuilt, haveChromium, launch, shots } from "./chromium.js"
import * as Effect from "effect/Effect"
import { SessionStore } from "../src/SessionStore.js"
import * as Sqlite from "../src/SessionStore/Sqlite.js"
import { eventually, type SseClient, sse, start, type TestServer, tempDir } from "./helpers.js"

if (!haveChromium) {
  console.warn(`${chromiumPath} is missing: browser tests ${process.env.CI ? "fail" : "are skipped"} (apt-get install chromium)`)
}

const T = 15_000

describe.skipIf(!haveChromium && !process.env.CI)("dashboard: what needs you", () => {
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

  const newContext = async (options: { width?: number; height?: number; notifications?: boolean; origin?: string } = {}) => {
    const context = await browser.newContext({ viewport: { width: options.width ?? 1280, height: options.height ?? 860 } })
    open.push(context)
    if (options.notifications === true) {
      await context.grantPermissions(["notifications"], { origin: options.origin ?? server.url })
      // Every notification the page creates is recorded (and kept, to click it later).
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
  const order = (page: Page) => page.locator(".session-item").evaluateAll((els) => els.map((e) => e.getAttribute("data-session")))
  const title = (page: Page) => page.evaluate(() => (globalThis as any).document.title as string)
  const notes = (page: Page) => page.evaluate(() => ((globalThis as any).__notes as Array<{ title: string; body: string }>).map(({ body, title }) => ({ title, body })))

  it("the list: states as a person reads them, needs you first, costs, the title count; cleared by another client", async () => {
    const done = await session("l-done")
    const ask = await session("l-ask")
    const work = await session("l-work")
    const failed = await session("l-failed")
    const gone = await session("l-gone")
    await done.post(
      { type: "turn_start" },
      { type: "usage", inputTokens: 10, outputTokens: 5, costUsd: 0.5 },
      { type: "summary", text: "Release notes drafted" },
      { type: "turn_end", stopReason: "end_turn" }
    )
    await ask.post(
      { type: "turn_start" },
      { type: "summary", text: "Cleaning up the build" },
      { type: "permission_request", requestId: "r1", title: "Delete the build folder?" }
    )
    await work.post({ type: "turn_start" }, { type: "summary", text: "Fixing the login form" }, { type: "usage", inputTokens: 1, outputTokens: 1, costUsd: 0.25 })
    await failed.post({ type: "turn_start" }, { type: "summary", text: "Upgrading the parser" }, { type: "turn_end", stopReason: "error" })
    gone.commands.close()
    await eventually(async () => (await client.getSession("l-gone"))?.status === "disconnected", T, "l-gone disconnected")

    const page = await newPage(await newContext(), server.url + "/")
    await state(page, "l-ask").and(page.locator('[data-state="approval"]')).waitFor()
    expect(await state(page, "l-ask").textContent()).toBe("Needs approval (1)")
    expect(await state(page, "l-done").textContent()).toBe("done")
    expect(await state(page, "l-work").textContent()).toBe("working")
    expect(await state(page, "l-failed").textContent()).toBe("error")
    await state(page, "l-gone").and(page.locator('[data-state="disconnected"]')).waitFor()
    // Needs you first (a request, a turn that ended in an error), then working, then the rest.
    const ids = (await order(page)).filter((id) => id?.startsWith("l-"))
    expect(ids.slice(0, 2).sort()).toEqual(["l-ask", "l-failed"])
    expect(ids[2]).toBe("l-work")
    expect(ids.slice(3).sort()).toEqual(["l-done", "l-gone"])
    expect(await row(page, "l-done").locator(".session-cost").textContent()).toBe("$0.50")
    // No cost reported: none shown (no dash).
    expect(await row(page, "l-ask").locator(".session-cost").count()).toBe(0)
    expect(await page.locator(".total-cost").textContent()).toBe("total $0.75")
    await expect.poll(() => title(page), { timeout: T }).toBe("(2) Rein")

    // More requests: the count on the row, and a third session in the title.
    await ask.post({ type: "permission_request", requestId: "r2", title: "And the cache?" })
    await state(page, "l-ask").getByText("Needs approval (2)").waitFor()
    await done.post({ type: "permission_request", requestId: "d1", title: "Push to main?" })
    await expect.poll(() => title(page), { timeout: T }).toBe("(3) Rein")
    expect(await page.locator(".waiting").textContent()).toBe("3 need you")
    expect((await order(page)).filter((id) => id?.startsWith("l-")).slice(0, 3).sort()).toEqual(["l-ask", "l-done", "l-failed"])
    await page.screenshot({ path: join(shots, "needs-approval-list.png") })

    // Another client answers: the badges and the title clear.
    await client.replyPermission("l-ask", "r1", "allow_once")
    await state(page, "l-ask").getByText("Needs approval (1)").waitFor()
    await client.replyPermission("l-ask", "r2", "reject")
    await client.replyPermission("l-done", "d1", "allow_once")
    await state(page, "l-ask").and(page.locator('[data-state="working"]')).waitFor()
    await state(page, "l-done").and(page.locator('[data-state="done"]')).waitFor()
    // The failed turn still needs someone.
    await expect.poll(() => title(page), { timeout: T }).toBe("(1) Rein")
    expect(await page.locator(".waiting").textContent()).toBe("1 needs you")
    await page.screenshot({ path: join(shots, "needs-approval-cleared.png") })
    for (const id of ["l-done", "l-ask", "l-work", "l-failed", "l-gone"]) await client.deleteSession(id)
  })

  it("approves from the list row, without opening the session", async () => {
    const s = await session("row-1")
    await s.post({ type: "turn_start" }, {
      type: "permission_request",
      requestId: "q1",
      title: "Run the migrations?",
      options: [{ optionId: "yes", name: "Run them", kind: "allow_once" }, { optionId: "no", name: "Not now", kind: "reject_once" }]
    })
    const page = await newPage(await newContext(), server.url + "/")
    const approval = row(page, "row-1").locator(".row-approval")
    await approval.getByText("Run the migrations?").waitFor()
    await page.screenshot({ path: join(shots, "approve-from-row.png") })
    await approval.getByRole("button", { name: "Run them" }).click()
    // The sandbox got the answer; the record and the row follow.
    const reply = await s.commands.waitFor((e) => e.event === "command" && e.data.type === "permission_reply")
    expect(reply.data).toEqual({ type: "permission_reply", requestId: "q1", decision: "allow_once", optionId: "yes" })
    await approval.waitFor({ state: "detached" })
    await state(page, "row-1").and(page.locator('[data-state="working"]')).waitFor()
    expect((await client.artifacts("row-1")).find((a) => a.kind === "permission")?.optionId).toBe("yes")
    // Still on the list: no session was opened.
    expect(await page.evaluate(() => (globalThis as any).location.hash)).toBe("")
    await client.deleteSession("row-1")
  })

  it("notifies about other sessions (approval, done, error), not the one looked at, none on a reload; a click opens the session", async () => {
    const a = await session("n-a")
    const b = await session("n-b")
    const c = await session("n-c")
    await b.post({ type: "turn_start" })
    await c.post({ type: "turn_start" })
    const context = await newContext({ notifications: true })
    const page = await newPage(context, `${server.url}/#/sessions/n-a`)
    await page.getByRole("button", { name: "Notify me" }).click()
    await page.getByRole("button", { name: "Notifying" }).waitFor()

    await b.post({ type: "permission_request", requestId: "p1", title: "Overwrite README?" })
    await expect.poll(() => notes(page), { timeout: T }).toEqual([{ title: "n-b needs approval", body: "A permission request is waiting for you." }])
    // The open session, in a visible tab: the user sees it already.
    await a.post({ type: "turn_start" }, { type: "permission_request", requestId: "pa", title: "Seen here" })
    await state(page, "n-a").getByText("Needs approval (1)").waitFor()
    await c.post({ type: "summary", text: "Fixing the parser" }, { type: "turn_end", stopReason: "end_turn" })
    await expect.poll(async () => (await notes(page)).length, { timeout: T }).toBe(2)
    await c.post({ type: "turn_start" }, { type: "turn_end", stopReason: "error" })
    await expect.poll(async () => (await notes(page)).length, { timeout: T }).toBe(3)
    expect(await notes(page)).toEqual([
      { title: "n-b needs approval", body: "A permission request is waiting for you." },
      { title: "n-c is done", body: "Fixing the parser" },
      { title: "n-c: error", body: "The turn ended in an error." }
    ])

    // Clicking one opens its session.
    await page.evaluate(() => (globalThis as any).__notes[0].n.dispatchEvent(new Event("click")))
    await expect.poll(() => page.evaluate(() => (globalThis as any).location.hash), { timeout: T }).toBe("#/sessions/n-b")
    await page.locator('.session-view[aria-label="Session n-b"]').waitFor()

    // A reload: the choice is remembered, and what was already there is not news.
    await page.reload()
    await page.getByRole("button", { name: "Notifying" }).waitFor()
    await state(page, "n-b").getByText("Needs approval (1)").waitFor()
    await state(page, "n-a").getByText("Needs approval (1)").waitFor()
    // Something new after the reload is, and it is the only one.
    await c.post({ type: "permission_request", requestId: "pc", title: "Retry?" })
    await expect.poll(() => notes(page), { timeout: T }).toEqual([{ title: "n-c needs approval", body: "A permission request is waiting for you." }])
    await page.screenshot({ path: join(shots, "notifications.png") })
    for (const id of ["n-a", "n-b", "n-c"]) await client.deleteSession(id)
  })

  it("no notification for what arrived while the page was reconnecting; the next live change notifies", async () => {
    const { cleanup, dir } = tempDir()
    open.push({ close: cleanup })
    const dbPath = join(dir, "rein.db")
    const first = await start({ dbPath })
    open.push({ close: () => first.close() })
    await first.createSession("rc-1")
    await first.createSession("rc-2")
    const page = await newPage(await newContext({ notifications: true, origin: first.url }), `${first.url}/`)
    await page.getByRole("button", { name: "Notify me" }).click()
    await page.getByRole("button", { name: "Notifying" }).waitFor()
    await row(page, "rc-1").waitFor()
    await first.close()
    await page.locator('.brand .connection[data-connection="reconnecting"]').waitFor()

    // While the server is away, the store gets a request the page has not seen.
    await Effect.runPromise(Effect.gen(function*() {
      const store = yield* SessionStore
      const stored = (yield* store.get("rc-1"))!
      yield* store.commit("rc-1", {
        rev: stored.rev + 1,
        expectedRev: stored.rev,
        pendingPermissions: 1,
        changes: [{
          _tag: "created",
          rev: stored.rev + 1,
          artifact: { seq: 1, kind: "permission", requestId: "old", toolCallId: null, title: "Asked during the outage", options: null, decision: null, optionId: null, createdAt: 1, updatedAt: 1 }
        }]
      })
    }).pipe(Effect.provide(Sqlite.layer({ filename: dbPath }))))

    const second = await start({ dbPath, port: first.port })
    open.push({ close: () => second.close() })
    await state(page, "rc-1").getByText("Needs approval (1)").waitFor({ timeout: 20_000 })
    await page.locator('.brand .connection[data-connection="open"]').waitFor()
    // The reconnect's snapshot is the new baseline; a change seen live after it is news.
    expect((await second.request("POST", "/sessions/rc-2/events", { type: "permission_request", requestId: "new", title: "Now?" })).status).toBe(202)
    await expect.poll(() => notes(page), { timeout: T }).toEqual([{ title: "rc-2 needs approval", body: "A permission request is waiting for you." }])
  })

  it("diffs: a file change as numbered, coloured rows, long ones collapsed; the Files view; a permission's proposed change next to its buttons", async () => {
    const s = await session("diffs")
    const long = Array.from({ length: 60 }, (_, i) => `line ${i + 1}`)
    await s.post(
      { type: "turn_start" },
      {
        type: "file_change",
        path: "src/a.ts",
        action: "modify",
        diff: ["--- a/src/a.ts", "+++ b/src/a.ts", "@@ -10,4 +10,4 @@", " keep one", "-const x = 1", "+const x = 2", " keep two", " keep three"].join("\n")
      },
      { type: "file_change", path: "docs/long.md", action: "create", diff: ["--- /dev/null", "+++ b/docs/long.md", "@@ -0,0 +1,60 @@", ...long.map((l) => `+${l}`)].join("\n") },
      {
        type: "file_change",
        path: "src/a.ts",
        action: "modify",
        diff: ["--- a/src/a.ts", "+++ b/src/a.ts", "@@ -20,2 +20,3 @@", " context", "+export const y = 3", " end"].join("\n")
      },
      { type: "tool_call_start", toolCallId: "e1", name: "edit", input: JSON.stringify({ file_path: "src/c.ts", old_string: "retries = 1\nkeep", new_string: "retries = 5\nkeep" }) },
      { type: "permission_request", requestId: "pe", toolCallId: "e1", title: "Edit src/c.ts?" },
      // A request that carries its own diff (rein-sandbox passes on an ACP call's diff content this way).
      { type: "tool_call_start", toolCallId: "e2", name: "edit", input: JSON.stringify({ file_path: "src/d.ts" }) },
      {
        type: "permission_request",
        requestId: "pd",
        toolCallId: "e2",
        title: "Edit src/d.ts?",
        diff: ["--- a/src/d.ts", "+++ b/src/d.ts", "@@ -7,2 +7,2 @@", "-timeout = 10", "+timeout = 30", " same"].join("\n") + "\n"
      }
    )
    const page = await newPage(await newContext(), `${server.url}/#/sessions/diffs`)
    const first = page.locator(".kind-file_change").first()
    const removed = first.locator(".diff-line.del")
    const added = first.locator(".diff-line.add")
    await added.waitFor()
    expect(await removed.innerText()).toContain("const x = 1")
    expect([await removed.getAttribute("data-old"), await removed.getAttribute("data-new")]).toEqual(["11", null])
    expect(await added.innerText()).toContain("const x = 2")
    expect(await added.getAttribute("data-new")).toBe("11")
    expect(await first.locator(".diff-line.ctx").first().locator(".ln").allTextContents()).toEqual(["10", "10"])
    // Added and removed lines are coloured differently from context.
    const colour = (l: ReturnType<Page["locator"]>) => l.evaluate((el) => (globalThis as any).getComputedStyle(el).backgroundColor as string)
    const [add, del, ctx] = [await colour(added), await colour(removed), await colour(first.locator(".diff-line.ctx").first())]
    expect(new Set([add, del, ctx]).size).toBe(3)

    // The 60-line one is collapsed until asked.
    const longOne = page.locator(".kind-file_change", { hasText: "docs/long.md" })
    expect(await longOne.locator(".diff-line.add").count()).toBe(39)
    await longOne.getByRole("button", { name: "Show all 60 lines" }).click()
    expect(await longOne.locator(".diff-line.add").count()).toBe(60)
    expect(await longOne.locator(".diff-line.add").last().getAttribute("data-new")).toBe("60")

    // The permission shows what the edit would change, next to its buttons.
    const permission = page.locator(".kind-permission", { hasText: "Edit src/c.ts?" })
    await permission.locator(".permission-diff .diff-line.del", { hasText: "retries = 1" }).waitFor()
    await permission.locator(".permission-diff .diff-line.add", { hasText: "retries = 5" }).waitFor()
    const diffBox = await permission.locator(".permission-diff").boundingBox()
    const buttons = await permission.getByRole("button", { name: "Allow", exact: true }).boundingBox()
    expect(buttons!.x).toBeGreaterThan(diffBox!.x + diffBox!.width - 1)
    await permission.screenshot({ path: join(shots, "permission-diff.png") })
    const own = page.locator(".kind-permission", { hasText: "Edit src/d.ts?" })
    const ownAdded = own.locator(".permission-diff .diff-line.add", { hasText: "timeout = 30" })
    await ownAdded.waitFor()
    expect(await ownAdded.getAttribute("data-new")).toBe("7")
    await own.locator(".permission-diff .diff-line.del", { hasText: "timeout = 10" }).waitFor()
    expect(await own.locator(".permission-diff .file-path").textContent()).toBe("src/d.ts")
    await page.screenshot({ path: join(shots, "diffs.png") })

    // Files: every changed file once, with its latest change.
    await page.getByRole("tab", { name: "Files (2)" }).click()
    const files = page.locator(".changed-file")
    expect(await files.evaluateAll((els) => els.map((e) => e.getAttribute("data-path")))).toEqual(["docs/long.md", "src/a.ts"])
    const a = page.locator('.changed-file[data-path="src/a.ts"]')
    expect(await a.locator(".change-count").textContent()).toBe("2 changes; the latest:")
    expect(await a.locator(".diff-line.add").innerText()).toContain("export const y = 3")
    expect(await a.locator(".diff-line.add").getAttribute("data-new")).toBe("21")
    await page.screenshot({ path: join(shots, "files-view.png") })
    await page.getByRole("tab", { name: "Transcript" }).click()
    await page.locator(".transcript .kind-permission").first().waitFor()
    await client.deleteSession("diffs")
  })

  it("on a phone (390 × 844) the list and the session are two screens, nothing overflows, buttons are large enough to tap", async () => {
    const s = await session("phone-1", "mobile")
    await session("phone-2")
    await s.post(
      { type: "turn_start" },
      { type: "text_delta", delta: "A long line without spaces: " + "x".repeat(300) },
      { type: "file_change", path: "src/" + "deep/".repeat(20) + "file.ts", action: "modify", diff: "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-" + "old".repeat(80) + "\n+" + "new".repeat(80) },
      { type: "tool_call_start", toolCallId: "w", name: "write", input: JSON.stringify({ path: "notes.md", content: "hello\nworld\n" }) },
      { type: "permission_request", requestId: "pp", toolCallId: "w", title: "Write notes.md?" },
      { type: "usage", inputTokens: 3, outputTokens: 4, costUsd: 1.25 }
    )
    const page = await newPage(await newContext({ width: 390, height: 844 }), server.url + "/")
    const noOverflow = async () => {
      const { client: width, scroll } = await page.evaluate(() => {
        const d = (globalThis as any).document.documentElement
        return { client: d.clientWidth as number, scroll: d.scrollWidth as number }
      })
      expect(scroll).toBeLessThanOrEqual(width)
    }
    const tappable = async (scope: ReturnType<Page["locator"]>) => {
      const heights = await scope.locator("button:visible").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height))
      expect(heights.length).toBeGreaterThan(0)
      for (const h of heights) expect(h).toBeGreaterThanOrEqual(40)
    }

    // The list screen: the list, no session pane.
    await row(page, "phone-1").locator(".row-approval").waitFor()
    expect(await page.locator(".sidebar").isVisible()).toBe(true)
    expect(await page.locator(".main").isVisible()).toBe(false)
    await noOverflow()
    await tappable(page.locator(".sidebar"))
    await page.screenshot({ path: join(shots, "phone-list.png") })

    // The session screen: the list hidden, a way back.
    await row(page, "phone-1").locator(".session-link").click()
    await page.locator('.session-view[aria-label="Session phone-1"]').waitFor()
    await page.locator(".kind-permission .permission-diff .diff-line.add", { hasText: "hello" }).waitFor()
    expect(await page.locator(".sidebar").isVisible()).toBe(false)
    await noOverflow()
    await tappable(page.locator(".session-view"))
    const back = page.getByRole("link", { name: "Back to the sessions" })
    expect((await back.boundingBox())!.height).toBeGreaterThanOrEqual(40)
    await page.screenshot({ path: join(shots, "phone-session.png") })
    await back.click()
    await row(page, "phone-2").waitFor()
    expect(await page.locator(".main").isVisible()).toBe(false)
    for (const id of ["phone-1", "phone-2"]) await client.deleteSession(id)
  })
})
