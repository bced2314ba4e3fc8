import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { foldArtifacts, request, sorted, sse, tempDir } from "./helpers.js"
import { ensureBuilt, spawnServer } from "./process.js"

beforeAll(ensureBuilt, 120_000)

describe("durability", () => {
  const tmp = tempDir()
  afterAll(tmp.cleanup)

  it("every acknowledged event survives kill -9 of the server mid-stream", async () => {
    const db = `${tmp.dir}/rein.db`
    const first = await spawnServer(["--db", db, "--bootstrap-timeout", "600000"])
    expect((await request(first.url, "POST", "/sessions/k1")).status).toBe(201)
    const client = await sse(`${first.url}/sessions/k1/stream`)
    await client.waitFor((e) => e.event === "snapshot_complete")

    // Post as fast as acknowledgements come back, from two posters, and kill while they run.
    const acknowledged: Array<string> = []
    let stop = false
    const poster = async (name: string) => {
      for (let i = 0; !stop; i++) {
        const delta = `${name}${i};`
        try {
          const res = await request(first.url, "POST", "/sessions/k1/events", { type: "text_delta", delta, partId: name })
          if (res.status === 202) acknowledged.push(delta)
        } catch {
          return // the server is gone
        }
      }
    }
    const posting = [poster("a"), poster("b")]
    await client.waitFor(() => acknowledged.length >= 200, 30_000)
    first.child.kill("SIGKILL")
    stop = true
    expect(await first.exited).toBe("SIGKILL")
    await Promise.all(posting)
    client.close()

    const second = await spawnServer(["--db", db])
    try {
      const artifacts = (await request(second.url, "GET", "/sessions/k1/artifacts")).body as Array<any>
      const text = artifacts.map((a) => a.text).join("")
      for (const delta of acknowledged) expect(text).toContain(delta)
      // Each part's deltas are in order with none missing before the last acknowledged one.
      for (const part of artifacts) {
        const ns = (part.text as string).split(";").filter(Boolean).map((d) => Number(d.slice(1)))
        expect(ns).toEqual(ns.map((_, i) => i))
      }
      // The stream of the restarted server serves the same state.
      const replay = await sse(`${second.url}/sessions/k1/stream`)
      await replay.waitFor((e) => e.event === "snapshot_complete")
      expect(sorted(foldArtifacts(replay.events))).toEqual(artifacts)
      replay.close()
    } finally {
      second.child.kill("SIGTERM")
      await second.exited
    }
  }, 120_000)
})
