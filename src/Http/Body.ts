/**
 * Request bodies: read once from the socket with a byte limit, decoded as
 * strict UTF-8 JSON. The limit is enforced while reading, so an oversized
 * body is never held in memory.
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import { InvalidInput, PayloadTooLarge } from "../Domain/Errors.js"
import * as Serve from "./Serve.js"

const utf8 = new TextDecoder("utf-8", { fatal: true })

const readRaw = (limit: number) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const declared = Number(request.headers["content-length"])
    if (declared > limit) return Effect.fail(new PayloadTooLarge({ limit }))
    const incoming = Serve.nodeRequest(request)
    return Effect.async<Buffer, PayloadTooLarge | InvalidInput>((resume) => {
      const chunks: Array<Buffer> = []
      let size = 0
      const cleanup = () => {
        incoming.off("data", onData)
        incoming.off("end", onEnd)
        incoming.off("error", onError)
        incoming.off("aborted", onError)
      }
      const onData = (chunk: Buffer) => {
        size += chunk.length
        if (size > limit) {
          cleanup()
          incoming.resume() // discard the rest without buffering it
          resume(Effect.fail(new PayloadTooLarge({ limit })))
        } else chunks.push(chunk)
      }
      const onEnd = () => {
        cleanup()
        resume(Effect.succeed(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)))
      }
      const onError = () => {
        cleanup()
        resume(Effect.fail(new InvalidInput({ message: "request body could not be read" })))
      }
      incoming.on("data", onData)
      incoming.on("end", onEnd)
      incoming.on("error", onError)
      incoming.on("aborted", onError)
      return Effect.sync(cleanup)
    })
  })

/** Deeper JSON is refused before parsing: no store, formatter or encoder has to recurse that far. */
export const maxDepth = 64

/** A linear scan of brackets outside strings. */
const tooDeep = (text: string): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > maxDepth) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/** The body as JSON; `undefined` when it is empty (for routes whose body is optional). */
export const json = (limit: number): Effect.Effect<unknown, PayloadTooLarge | InvalidInput, HttpServerRequest.HttpServerRequest> =>
  Effect.flatMap(readRaw(limit), (bytes) => {
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      return Effect.fail(new InvalidInput({ message: "body is not valid UTF-8" }))
    }
    if (text.trim() === "") return Effect.succeed(undefined)
    if (tooDeep(text)) return Effect.fail(new InvalidInput({ message: `body nests deeper than ${maxDepth} levels` }))
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (e) {
      return Effect.fail(new InvalidInput({ message: `body is not valid JSON: ${(e as Error).message}` }))
    }
  })
