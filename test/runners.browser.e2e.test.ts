/**
 * Starting agents from the hub (issue 20), in the dashboard, in real Chromium: a server (with auth)
 * whose embedded runner serves a real git repository in a temp dir and offers the scripted ACP test
 * agent as the profile `scripted`. "New session" with that agent, the repository and a first prompt
 * opens the session; its header shows agent, runner and branch; the transcript the agent's reply;
 * the Changes tab the file it wrote; Stop and Start; a session without an agent shows the exact
 * `rein-sandbox` command (its sandbox token included) and the time left; the runners view.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ReinClient } from "../src/client/index.js"
import { readMarker } from "../src/runner/Worktrees.js"
import { chromiumPath, ensureDashboardBuilt, haveChromium, launch, shots } from "./chromium.js"
import { eventually, start, type TestServer } from "./helpers.js"
import { cleanup, git, makeRepo, tempDir } from "./runner-helpers.js"
import { buildAgent } from "./sandboxBuild.js"

if (!haveChromium) {
  console.warn(`${chromiumPath} is missing: browser tests ${process.env.CI ? "fail" : "are skipped"} (apt-get install chromium)`)
}

const T = 20_000
const TOKEN = "browser-runner-token"

describe.skipIf(!haveChromium && !process.env.CI)("runners in the dashboard (Chromium)", () => {
  let server: TestServer
  let client: ReinClient
  let browser: Browser
  let repo: string
  const pageErrors: Array<string> = []

  beforeAll(async () => {
    ensureDashboardBuilt()
    mkdirSync(shots, { recursive: true })
    const agentJs = buildAgent("acp-agent")
    repo = makeRepo()
    const dir = tempDir()
    const agentsFile = join(dir, "agents.json")
    writeFileSync(agentsFile, JSON.stringify({ agents: { scripted: { name: "Scripted", command: process.execPath, args: [agentJs] } } }))
    server = await start({
      token: TOKEN,
      runner: {
        repos: [repo],
        agentsFile,
        worktrees: join(dir, "worktrees"),
        minFreeDisk: 0,
        log: process.env.REIN_TEST_LOG ? (line) => console.error(line) : () => {}
      }
    })
    client = new ReinClient({ baseUrl: server.url, token: TOKEN })
    await eventually(async () => (await client.listRunners()).some((r) => r.online && r.agents.some((a) => a.id === "scripted")), T, "the runner to be online")
    browser = await launch()
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await server?.close()
    cleanup()
  })

  const newPage = async (hash = "") => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } })
    page.setDefaultTimeout(T)
    page.on("pageerror", (e) => pageErrors.push(e.message))
    await page.goto(`${server.url}/#token=${TOKEN}`)
    await page.locator(".brand .connection[data-connection=\"open\"]").waitFor()
    if (hash !== "") await page.evaluate((h) => ((globalThis as any).location.hash = h), hash)
    return page
  }

  /** Polls `read` until it gives a value. */
  const waitFor = async <V>(read: () => Promise<V | undefined>): Promise<V> => {
    let value: V | undefined
    await eventually(async () => (value = await read()) !== undefined, T, "a value")
    return value!
  }

  const hash = (page: Page) => page.evaluate(() => (globalThis as any).location.hash as string)
  const status = (page: Page) => page.locator(".session-header .session-status")

  it("New session with an agent, a repository and a first prompt: header, reply, Changes, Stop and Start", async () => {
    const page = await newPage()
    await page.getByRole("button", { name: "New session" }).click()
    const dialog = page.getByRole("dialog", { name: "New session" })
    const agent = dialog.getByLabel("Agent")
    await agent.locator("option[value=\"scripted\"]").waitFor({ state: "attached" })
    const offered = await agent.locator("option").allTextContents()
    expect(offered).toContain("Scripted (scripted)")
    expect(offered.at(-1)).toBe("none: connect a sandbox yourself")
    await agent.selectOption("scripted")
    await dialog.getByLabel("Repository").selectOption(repo)
    await dialog.getByLabel("First prompt").fill("write notes.txt hello")
    await page.screenshot({ path: join(shots, "new-session-agent.png") })
    await dialog.getByRole("button", { name: "Create session" }).click()

    // The id is made up from the prompt; the session opens.
    await expect.poll(() => hash(page), { timeout: T }).toMatch(/^#\/sessions\/write-notes-txt-hello-[a-z0-9]{6}$/)
    const id = (await hash(page)).slice("#/sessions/".length)
    await dialog.waitFor({ state: "hidden" })
    const record = await client.getSession(id)
    expect(record).toMatchObject({ agent: "scripted", runner: "local", workspace: { repo, branch: `rein/${id}` } })

    // The header: agent, runner (by name), branch.
    const bar = page.locator(".session-header .agent-bar")
    await bar.locator(".agent-id", { hasText: "scripted" }).waitFor()
    await bar.locator(".runner-name", { hasText: hostname() }).waitFor()
    expect(await bar.locator(".branch").textContent()).toBe(`rein/${id}`)

    // The first prompt and the agent's reply in the transcript.
    await page.locator(".kind-user_message", { hasText: "write notes.txt hello" }).waitFor()
    await page.locator(".kind-text", { hasText: "wrote notes.txt" }).waitFor()
    await status(page).and(page.locator("[data-status=\"idle\"]")).waitFor()
    await page.locator(".kind-changes", { hasText: "1 file changed" }).waitFor()

    // The Changes tab: notes.txt, a new file, its line added.
    await page.getByRole("tab", { name: "Changes" }).click()
    const panel = page.getByRole("tabpanel", { name: "Changes" })
    const file = panel.locator(".changed-file[data-path=\"notes.txt\"]")
    await file.locator(".diff-line.add", { hasText: "hello" }).waitFor()
    expect(await file.getAttribute("data-status")).toBe("added")
    expect(await panel.locator(".changed-file").count()).toBe(1)
    expect(await panel.locator(".changes-truncated").count()).toBe(0)
    await page.screenshot({ path: join(shots, "runner-session-changes.png") })
    // The write landed in the worktree only.
    expect(git(repo, "status", "--porcelain")).toBe("")

    // Stop: the agent stops, the session is disconnected; Start: live again, a new conversation.
    await bar.getByRole("button", { name: "Stop" }).click()
    await status(page).and(page.locator("[data-status=\"disconnected\"]")).waitFor()
    expect(await bar.getByRole("button", { name: "Stop" }).count()).toBe(0)
    await bar.getByRole("button", { name: "Start" }).click()
    await status(page).and(page.locator("[data-status=\"live\"]")).waitFor()
    await page.getByRole("tab", { name: "Transcript" }).click()
    await page.locator(".new-conversation", { hasText: "Agent started again: a new conversation" }).waitFor()
    // Started again in the same worktree: the Changes view still shows the file.
    await page.getByRole("tab", { name: "Changes" }).click()
    await panel.locator(".changed-file[data-path=\"notes.txt\"]").waitFor()
    await page.getByRole("tab", { name: "Transcript" }).click()
    await page.screenshot({ path: join(shots, "runner-session.png") })
    // On a phone the header wraps: agent, runner, branch and Stop stay reachable.
    await page.setViewportSize({ width: 390, height: 844 })
    expect(await bar.getByRole("button", { name: "Stop" }).isVisible()).toBe(true)
    await page.emulateMedia({ colorScheme: "dark" })
    await page.screenshot({ path: join(shots, "runner-session-phone-dark.png") })
    expect(pageErrors).toEqual([])
    await page.close()
  })

  it("an agent killed is an error; Restart in the header starts it again", async () => {
    await client.createSession("killed", { agent: "scripted", repo })
    const live = await waitFor(async () => {
      const r = await client.getSession("killed")
      return r?.status === "live" && r.workspace?.path ? r.workspace.path : undefined
    })
    const pid = await waitFor(async () => (await readMarker(live))?.processes[0]?.pid)
    const page = await newPage("#/sessions/killed")
    const bar = page.locator(".session-header .agent-bar")
    await status(page).and(page.locator("[data-status=\"live\"]")).waitFor()
    await bar.getByRole("button", { name: "Stop" }).waitFor()
    // No turn yet: no diff posted.
    await page.getByRole("tab", { name: "Changes" }).click()
    await page.getByRole("tabpanel", { name: "Changes" }).locator(".changes-empty", { hasText: "No changes yet" }).waitFor()
    await page.getByRole("tab", { name: "Transcript" }).click()
    process.kill(pid, "SIGKILL")
    await page.locator(".session-header .session-status[data-state=\"error\"]").waitFor()
    await page.locator(".kind-error", { hasText: "SIGKILL" }).waitFor()
    await bar.getByRole("button", { name: "Restart" }).click()
    await status(page).and(page.locator("[data-status=\"live\"]")).waitFor()
    await page.locator(".new-conversation").waitFor()
    expect(await bar.getByRole("button", { name: "Restart" }).count()).toBe(0)
    await client.deleteSession("killed")
    await page.close()
  })

  it("Changes: one card a file, a file cut by truncation shown as it is, \"(truncated)\"", async () => {
    await client.createSession("cut")
    const diff = [
      "diff --git a/src/a.txt b/src/a.txt",
      "index 1111111..2222222 100644",
      "--- a/src/a.txt",
      "+++ b/src/a.txt",
      "@@ -1,3 +1,3 @@",
      " one",
      "-two",
      "+TWO",
      " three",
      "diff --git a/old.txt b/new.txt",
      "similarity index 100%",
      "rename from old.txt",
      "rename to new.txt",
      "diff --git a/big.txt b/big.txt",
      "new file mode 100644",
      "index 0000000..3333333",
      "--- /dev/null",
      "+++ b/big.txt",
      "@@ -0,0 +1,400 @@",
      "+line 1",
      "+line 2",
      ""
    ].join("\n")
    const posted = await server.request("POST", "/sessions/cut/events", [
      { type: "changes", diff, truncated: true },
      { type: "custom", name: "rein.new_conversation", data: { text: "started again" } }
    ], { authorization: `Bearer ${TOKEN}` })
    expect(posted.status).toBe(202)
    const page = await newPage("#/sessions/cut")
    await page.locator(".new-conversation", { hasText: "Agent started again: a new conversation" }).waitFor()
    await page.locator(".kind-changes", { hasText: "3 files changed against the base (truncated)" }).waitFor()
    await page.getByRole("tab", { name: "Changes (3)" }).click()
    const panel = page.getByRole("tabpanel", { name: "Changes" })
    await panel.locator(".changes-truncated", { hasText: "(truncated" }).waitFor()
    expect(await panel.locator(".changed-file").evaluateAll((els) => els.map((e) => [e.getAttribute("data-path"), e.getAttribute("data-status")])))
      .toEqual([["src/a.txt", "modified"], ["new.txt", "renamed"], ["big.txt", "added"]])
    const a = panel.locator(".changed-file[data-path=\"src/a.txt\"]")
    expect(await a.locator(".diff-line.del").textContent()).toContain("two")
    expect(await a.locator(".diff-line.add").textContent()).toContain("TWO")
    expect(await panel.locator(".changed-file[data-path=\"new.txt\"]").textContent()).toContain("old.txt → new.txt")
    // The last file was cut mid-hunk: shown as the text it is, not lost.
    expect(await panel.locator(".changed-file[data-path=\"big.txt\"] .diff-raw").textContent()).toContain("+line 2")
    await client.deleteSession("cut")
    await page.close()
  })

  it("a session without an agent shows the exact rein-sandbox command, with its sandbox token, and the time left", async () => {
    const page = await newPage()
    await page.getByRole("button", { name: "New session" }).click()
    const dialog = page.getByRole("dialog", { name: "New session" })
    const agent = dialog.getByLabel("Agent")
    await agent.locator("option[value=\"scripted\"]").waitFor({ state: "attached" })
    await agent.selectOption("")
    expect(await dialog.getByLabel("Repository").count()).toBe(0)
    await dialog.getByLabel("Session id").fill("by-hand")
    await dialog.getByRole("button", { name: "Create session" }).click()
    await expect.poll(() => hash(page), { timeout: T }).toBe("#/sessions/by-hand")
    expect(await client.getSession("by-hand")).toMatchObject({ agent: null, runner: null, status: "bootstrapping" })

    const command = (await page.locator(".connect-sandbox .sandbox-command").textContent())!
    const token = /--token (\S+)/.exec(command)?.[1]
    expect(token).toMatch(/^rst_/)
    expect(command).toBe(`npx rein-sandbox --url ${server.url} --session by-hand --token ${token} -- <agent command>`)
    expect(await page.locator(".connect-hint").textContent()).toContain("npx -y @agentclientprotocol/claude-agent-acp")
    // The token in the command is this session's sandbox token: it opens the command stream.
    const abort = new AbortController()
    const stream = await fetch(`${server.url}/sessions/by-hand/commands`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal })
    expect(stream.status).toBe(200)
    abort.abort()
    await client.deleteSession("by-hand")
    await client.createSession("by-hand-2")

    // Counting down from about 180 s.
    await page.evaluate(() => ((globalThis as any).location.hash = "#/sessions/by-hand-2"))
    const left = page.locator(".connect-sandbox .bootstrap-left")
    await left.waitFor()
    expect(await left.textContent()).toMatch(/^About [23] min \d\d s left before the session is removed/)
    const first = Number(await left.getAttribute("data-left-ms"))
    expect(first).toBeGreaterThan(150_000)
    expect(first).toBeLessThanOrEqual(180_000)
    await expect.poll(async () => Number(await left.getAttribute("data-left-ms")), { timeout: T }).toBeLessThan(first)
    // Created elsewhere, so its token is not known here: the page says where to get one.
    expect(await page.locator(".connect-sandbox .sandbox-command").textContent()).toBe(
      `npx rein-sandbox --url ${server.url} --session by-hand-2 -- <agent command>`
    )
    expect(await page.locator(".connect-hint").textContent()).toContain("sandbox token")
    await page.screenshot({ path: join(shots, "connect-sandbox.png") })
    await client.deleteSession("by-hand-2")
    await page.close()
  })

  it("an error creating the session (409 no_runner) is shown in the dialog, and nothing opens", async () => {
    const page = await newPage()
    // A runner list that offers an agent no online runner really offers: the server refuses.
    await page.route("**/runners", async (route) => {
      const real = await route.fetch()
      const list = (await real.json()) as Array<any>
      await route.fulfill({ response: real, json: [...list, { ...list[0], id: "ghost", name: "ghost", embedded: false, agents: [{ id: "codex-9000", name: "Codex 9000" }] }] })
    })
    await page.getByRole("button", { name: "New session" }).click()
    const dialog = page.getByRole("dialog", { name: "New session" })
    const agent = dialog.getByLabel("Agent")
    await agent.locator("option[value=\"codex-9000\"]").waitFor({ state: "attached" })
    await agent.selectOption("codex-9000")
    await dialog.getByLabel("Session id").fill("nope")
    await dialog.getByRole("button", { name: "Create session" }).click()
    const alert = dialog.getByRole("alert")
    await alert.waitFor()
    expect(await alert.textContent()).toContain("no online runner offers agent codex-9000")
    expect(await hash(page)).toBe("")
    expect(await client.getSession("nope")).toBeUndefined()
    await page.close()
  })

  it("the runners view lists the runner: online, its agents, repositories, sessions and free disk", async () => {
    const page = await newPage()
    await page.getByRole("link", { name: "Runners" }).click()
    await expect.poll(() => hash(page)).toBe("#/runners")
    const card = page.locator(".runner[data-runner=\"local\"]")
    await card.waitFor()
    expect(await card.locator(".runner-name").textContent()).toBe(hostname())
    expect(await card.locator(".runner-online").textContent()).toBe("online")
    expect(await card.locator(".runner-embedded").textContent()).toBe("this server")
    expect(await card.locator(".runner-agents").textContent()).toContain("Scripted (scripted)")
    expect(await card.locator(".runner-repo").allTextContents()).toEqual([repo])
    expect(await card.locator(".runner-sessions").textContent()).toMatch(/^\d+ \/ (\d+|no limit)$/)
    expect(await card.locator(".runner-disk").textContent()).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/)
    await page.screenshot({ path: join(shots, "runners.png") })
    await page.close()
  })
})
