import type { Socket } from "node:net"
import { afterEach, expect, it } from "vitest"
import { stalledClient, start, type TestServer } from "./helpers.js"

let server: TestServer | undefined
let socket: Socket | undefined
afterEach(async () => {
  socket?.destroy()
  await server?.close()
  server = undefined
})

it("a sandbox that stops reading its commands is cut off, and later prompts are 409", async () => {
  server = await start({ subscriberBuffer: 5 })
  expect((await server.request("POST", "/sessions/c1")).status).toBe(201)
  // A sandbox that connects and then never reads a byte.
  socket = await stalledClient(server.port, "/sessions/c1/commands")
  const live = async () => (await server!.request("GET", "/sessions/c1")).body.status === "live"
  while (!(await live())) await new Promise((r) => setTimeout(r, 10))

  const text = "p".repeat(256 * 1024)
  const statuses: Array<number> = []
  for (let i = 0; i < 200 && !statuses.includes(409); i++) {
    statuses.push((await server.request("POST", "/sessions/c1/commands", { type: "prompt", text })).status)
  }
  // Far fewer than 200 prompts (50 MB) were taken before the sandbox was dropped.
  expect(statuses).toContain(409)
  expect(statuses.filter((s) => s === 202).length).toBeLessThan(100)
  expect((await server.request("GET", "/sessions/c1")).body.status).toBe("disconnected")
})

it("a snapshot larger than the byte limit does not count against it: a live event still gets through", async () => {
  server = await start({ subscriberBufferBytes: 64 * 1024 })
  expect((await server.request("POST", "/sessions/s1")).status).toBe(201)
  // A snapshot of ~14 MB: more than loopback socket buffers take, so much of it stays unread.
  const big = "b".repeat(900 * 1024)
  for (let i = 0; i < 16; i++) {
    expect((await server.request("POST", "/sessions/s1/events", { type: "custom", name: "big", data: big })).status).toBe(202)
  }
  socket = await stalledClient(server.port, "/sessions/s1/stream")
  // Give the server time to take the request and write the snapshot (were the event published
  // first, it would only be part of the snapshot: the test would pass without testing anything).
  await new Promise((r) => setTimeout(r, 300))
  expect((await server.request("POST", "/sessions/s1/events", { type: "custom", name: "small", data: 1 })).status).toBe(202)
  let received = ""
  const got = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000)
    socket!.on("data", (d) => {
      received += d.toString()
      if (received.includes("\"small\"")) {
        clearTimeout(timer)
        resolve(true)
      }
    })
    socket!.on("close", () => resolve(false))
    socket!.resume()
  })
  expect(got).toBe(true)
})
