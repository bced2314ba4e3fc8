import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { afterEach, expect, it } from "vitest"
import { makeMemory, SessionStore } from "../src/SessionStore.js"
import { eventually, start, type TestServer } from "./helpers.js"

let server: TestServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

it("a client hanging up while its events are committed leaves memory and store in step", async () => {
  // The store answers slowly *after* committing, so the hang-up lands between commit and publish.
  let committed = 0
  const store = Layer.effect(
    SessionStore,
    Effect.map(makeMemory, (s) =>
      SessionStore.of({
        ...s,
        commit: (id, c) =>
          s.commit(id, c).pipe(
            Effect.tap(() => Effect.sync(() => committed++)),
            Effect.zipRight(Effect.sleep("300 millis"))
          )
      }))
  )
  server = await start({ store })
  expect((await server.request("POST", "/sessions/i1")).status).toBe(201)

  const abort = new AbortController()
  const hungUp = fetch(`${server.url}/sessions/i1/events`, {
    method: "POST",
    body: JSON.stringify({ type: "custom", name: "first", data: null }),
    signal: abort.signal
  }).catch(() => "aborted")
  await eventually(() => committed === 1, 10_000, "the first commit")
  abort.abort()
  expect(await hungUp).toBe("aborted")

  expect((await server.request("POST", "/sessions/i1/events", { type: "custom", name: "second", data: null })).status).toBe(202)
  const artifacts = (await server.request("GET", "/sessions/i1/artifacts")).body as Array<any>
  expect(artifacts.map((a) => [a.seq, a.name])).toEqual([[1, "first"], [2, "second"]])
})
