import { connect, type Socket } from "node:net"
import { afterEach, expect, it } from "vitest"
import { start, type TestServer } from "./helpers.js"

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
  const port = server.port
  // A sandbox that connects and then never reads a byte.
  socket = await new Promise<Socket>((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      s.write(`GET /sessions/c1/commands HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`)
      s.pause()
      resolve(s)
    })
  })
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
