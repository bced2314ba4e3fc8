/**
 * The dashboard's static files (src/Http/Static.ts) over a temp build
 * directory: content types, cache headers, the CSP on index.html, no path
 * escapes, and a clear JSON 404 when the dashboard is not built.
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as Effect from "effect/Effect"
import { mkdirSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { jsonError } from "../src/Http/Errors.js"
import * as Static from "../src/Http/Static.js"
import { start, tempDir } from "./helpers.js"

const built = tempDir()
const root = join(built.dir, "web") + "/"
mkdirSync(join(root, "assets"), { recursive: true })
writeFileSync(join(root, "index.html"), "<!doctype html><title>Rein</title>")
writeFileSync(join(root, "assets", "index-abc123.js"), "console.log(1)")
writeFileSync(join(root, "assets", "index-abc123.css"), "body{}")
writeFileSync(join(root, "favicon.svg"), "<svg/>")
writeFileSync(join(built.dir, "secret.txt"), "not served")

afterAll(() => built.cleanup())

/** As in Router.ts: an unmatched path is a JSON 404. */
const app = (dir: string) =>
  Static.make(dir).pipe(Effect.catchTag("RouteNotFound", () => Effect.succeed(jsonError(404, "not_found", "no route"))))
const handler = HttpApp.toWebHandler(app(root))
const get = (path: string) => handler(new Request(`http://localhost${path}`))

describe("static dashboard files", () => {
  it("serves index.html at / with no-cache and a CSP that only allows its own scripts", async () => {
    for (const path of ["/", "/index.html", "/?x=1"]) {
      const res = await get(path)
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8")
      expect(res.headers.get("cache-control")).toBe("no-cache")
      expect(res.headers.get("content-security-policy")).toContain("script-src 'self'")
      expect(res.headers.get("x-content-type-options")).toBe("nosniff")
      expect(await res.text()).toBe("<!doctype html><title>Rein</title>")
    }
  })

  it("serves hashed assets with their content type, cached for good", async () => {
    const js = await get("/assets/index-abc123.js")
    expect(js.status).toBe(200)
    expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8")
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable")
    expect(await js.text()).toBe("console.log(1)")
    expect((await get("/assets/index-abc123.css")).headers.get("content-type")).toBe("text/css; charset=utf-8")
    const icon = await get("/favicon.svg")
    expect(icon.headers.get("content-type")).toBe("image/svg+xml")
  })

  it("answers a JSON 404 for a missing asset and never serves a file outside the build", async () => {
    for (const path of ["/assets/nope.js", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/assets/"]) {
      const res = await get(path)
      expect(res.status, path).toBe(404)
      expect(res.headers.get("content-type")).toMatch(/application\/json/)
      const body = (await res.json()) as { error: { code: string } }
      expect(body.error.code).toBe("not_found")
      expect(JSON.stringify(body)).not.toContain("not served")
    }
  })

  it("says the dashboard is not built when index.html is missing", async () => {
    const empty = tempDir()
    try {
      const res = await HttpApp.toWebHandler(app(empty.dir + "/"))(new Request("http://localhost/"))
      expect(res.status).toBe(404)
      expect(((await res.json()) as { error: unknown }).error).toEqual({ code: "not_found", message: expect.stringMatching(/dashboard is not built.*npm run build/) })
    } finally {
      empty.cleanup()
    }
  })

  it("on a real server, a raw request for ../ outside dist/web is a 404", async () => {
    const server = await start()
    try {
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(server.port, "127.0.0.1", () => {
          socket.end("GET /assets/../../../package.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        })
        let out = ""
        socket.on("data", (d) => (out += d.toString()))
        socket.on("end", () => resolve(out))
        socket.on("error", reject)
      })
      expect(raw).toMatch(/^HTTP\/1\.1 404/)
      expect(raw).not.toContain("@rein-ai/server")
    } finally {
      await server.close()
    }
  })
})
