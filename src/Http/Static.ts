/**
 * The dashboard: the static files Vite builds into `dist/web`, served at `/`
 * without auth (they hold no data; every data route still checks the token).
 * Hashed files under `/assets/` are cached for good; `index.html` is
 * revalidated on every load and carries a Content-Security-Policy that only
 * allows this origin's scripts, as defence in depth against agent output.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import { readFile } from "node:fs/promises"
import { extname, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import { jsonError } from "./Errors.js"

/** `dist/web` of this package, from `src/Http` (tests) and `dist/Http` (the build) alike. */
export const webRoot = fileURLToPath(new URL("../../dist/web/", import.meta.url))

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8"
}

export const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join("; ")

const notBuilt = (root: string) =>
  jsonError(404, "not_found", `the dashboard is not built (${root}index.html is missing): run npm run build`)

const notFound = (path: string) => jsonError(404, "not_found", `no route GET ${path}`)

/** Reads `relative` under `root`, or undefined when it is not a file there (or escapes it). */
const read = async (root: string, relative: string): Promise<Buffer | undefined> => {
  const full = resolve(root, relative)
  if (!full.startsWith(root.endsWith(sep) ? root : root + sep)) return undefined
  try {
    return await readFile(full)
  } catch {
    return undefined
  }
}

const requestPath = Effect.map(HttpServerRequest.HttpServerRequest, (req) => {
  const path = req.url.split("?")[0]!
  try {
    return decodeURIComponent(path)
  } catch {
    return path
  }
})

export const make = (root: string = webRoot) => {
  const index = Effect.promise(() => read(root, "index.html")).pipe(
    Effect.map((body) =>
      body === undefined
        ? notBuilt(root)
        : HttpServerResponse.uint8Array(body, {
          contentType: contentTypes[".html"]!,
          headers: {
            "cache-control": "no-cache",
            "content-security-policy": contentSecurityPolicy,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer"
          }
        })
    )
  )

  const file = (cacheControl: string) =>
    Effect.flatMap(requestPath, (path) =>
      Effect.promise(() => read(root, path.replace(/^\/+/, ""))).pipe(
        Effect.map((body) =>
          body === undefined
            ? notFound(path)
            : HttpServerResponse.uint8Array(body, {
              contentType: contentTypes[extname(path).toLowerCase()] ?? "application/octet-stream",
              headers: { "cache-control": cacheControl, "x-content-type-options": "nosniff" }
            })
        )
      ))

  return HttpRouter.empty.pipe(
    HttpRouter.get("/", index),
    HttpRouter.get("/index.html", index),
    // Vite names these by content hash: a new build gets new names.
    HttpRouter.get("/assets/*", file("public, max-age=31536000, immutable")),
    HttpRouter.get("/favicon.svg", file("public, max-age=3600"))
  )
}

export const router = make()
