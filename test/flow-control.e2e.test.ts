import type { Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { foldArtifacts, request, sorted, sse, stalledClient, tempDir } from "./helpers.js"
import { ensureBuilt, type ServerProcess, spawnServer } from "./process.js"

beforeAll(ensureBuilt, 120_000)

/** Reads what the stalled socket got, until the server closes it (or 30 s pass). */
const drain = (socket: Socket) =>
  new Promise<{ bytes: number; closed: boolean }>((resolve) => {
    let bytes = 0
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ bytes, closed: false })
    }, 30_000)
    socket.on("data", (d) => (bytes += d.length))
    socket.on("close", () => {
      clearTimeout(timer)
      resolve({ bytes, closed: true })
    })
    socket.resume()
  })

describe("flow control", () => {
  const tmp = tempDir()
  let server: ServerProcess
  afterAll(async () => {
    server?.child.kill("SIGTERM")
    await server?.exited
    tmp.cleanup()
  })

  it("a client that stops reading is cut off; others get everything; memory stays bounded", async () => {
    server = await spawnServer(["--db", `${tmp.dir}/rein.db`, "--bootstrap-timeout", "600000"])
    expect((await request(server.url, "POST", "/sessions/f1")).status).toBe(201)
    const stalled = await stalledClient(server.port, "/sessions/f1/stream")
    const reader = await sse(`${server.url}/sessions/f1/stream`)
    await reader.waitFor((e) => e.event === "snapshot_complete")
    const rssBefore = server.rssBytes()

    // 50 MB of deltas: 500 batches of 100 deltas of 1 KiB, each to its own part.
    const delta = "x".repeat(1023) + "\n"
    for (let post = 0; post < 500; post++) {
      const batch = Array.from({ length: 100 }, (_, i) => ({ type: "text_delta", delta, partId: `p${i % 10}` }))
      expect((await request(server.url, "POST", "/sessions/f1/events", batch)).status).toBe(202)
    }
    const rssAfter = server.rssBytes()

    // The reading client converges to exactly what is stored.
    const stored = (await request(server.url, "GET", "/sessions/f1/artifacts")).body as Array<any>
    expect(stored.reduce((n, a) => n + a.text.length, 0)).toBe(500 * 100 * 1024)
    await reader.waitFor(() => {
      const folded = sorted(foldArtifacts(reader.events))
      return folded.length === 10 && folded.every((a, i) => a.text.length === stored[i].text.length)
    }, 60_000)
    expect(sorted(foldArtifacts(reader.events))).toEqual(stored)
    reader.close()

    // The stalled client was disconnected: it gets a fraction of the 50 MB, then the socket closes.
    const { bytes, closed } = await drain(stalled)
    expect(closed).toBe(true)
    expect(bytes).toBeLessThan(20 * 1024 * 1024)
    // Holding the stalled client's backlog costs several times the 50 MB posted (~275 MB measured);
    // with flow control the growth is garbage and caches (~100 MB measured, GC-dependent).
    expect(rssAfter - rssBefore).toBeLessThan(180 * 1024 * 1024)
  }, 180_000)
})
