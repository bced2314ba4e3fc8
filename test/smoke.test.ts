import { afterEach, describe, expect, it } from "vitest"
import { foldArtifacts, sorted, sse, start, type TestServer } from "./helpers.js"

describe("smoke", () => {
  let server: TestServer | undefined
  afterEach(async () => {
    await server?.close()
  })

  it("a session lifecycle over HTTP", async () => {
    server = await start()
    expect((await server.request("POST", "/sessions/a1", { project: "web" })).status).toBe(201)
    const sandbox = await sse(`${server.url}/sessions/a1/commands`)
    const client = await sse(`${server.url}/sessions/a1/stream`)
    await client.waitFor((e) => e.event === "snapshot_complete")
    expect((await server.request("POST", "/sessions/a1/commands", { type: "prompt", text: "hi" })).status).toBe(202)
    await sandbox.waitFor((e) => e.event === "command")
    const posted = await server.request("POST", "/sessions/a1/events", [
      { type: "text_delta", delta: "Hel" },
      { type: "text_delta", delta: "lo" }
    ])
    expect(posted.status).toBe(202)
    await client.waitFor((e) => e.event === "artifact_updated")
    const stored = (await server.request("GET", "/sessions/a1/artifacts")).body
    expect(sorted(foldArtifacts(client.events))).toEqual(stored)
    expect(stored.map((a: any) => a.kind)).toEqual(["user_message", "text"])
    sandbox.close()
    client.close()
  })
})
