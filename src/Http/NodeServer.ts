/**
 * The node:http server under the platform, with a graceful drain: stop
 * accepting, let every request in flight get its answer, then drop idle
 * connections (keep-alives, and sockets client pools open ahead of use) so
 * shutdown never waits on a client.
 *
 * And a gate: the socket listens before the app is built (a port in use fails
 * fast, before any database is touched), and node:http drops a request nobody
 * listens for, leaving its client waiting for good. So every request that
 * arrives while the platform's handler is not attached (starting: the store,
 * the cluster listener and the routes are still being built) or once shutting
 * down has begun is answered here at once: 503, `retry-after`, a JSON error.
 *
 * And a lingering close: a connection that ends after its response (the
 * client asked for `connection: close`) while the client still sends a body
 * no route read (a GET with a body) would be closed with unread bytes, and the
 * kernel answers those with a reset that can destroy the response before the
 * client reads it. So the close waits for the rest of the body, which node:http
 * reads and discards, for at most `lingerMs`.
 */
import * as Effect from "effect/Effect"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { errorBody, notServing } from "./Errors.js"

export interface Drainable {
  readonly server: Server
  /** Stops accepting and resolves when no request waits for its answer (or after `grace` ms). */
  readonly drain: (grace: number) => Effect.Effect<void>
  /** Resolves when every connection has closed, cutting what remains after `grace` ms. */
  readonly closed: (grace: number) => Effect.Effect<void>
}

/** How long a closing connection keeps reading a body nobody wanted. */
const lingerMs = 5_000

export const make = (): Drainable => {
  const server = createServer()
  /** The last request read on each socket, for the lingering close. */
  const reading = new WeakMap<Socket, IncomingMessage>()
  /** Requests open per socket; a socket with none is idle. */
  const sockets = new Map<Socket, number>()
  let unanswered = 0
  let draining = false
  let onAnswered: (() => void) | undefined

  let onClosed: (() => void) | undefined
  server.on("connection", (socket: Socket) => {
    if (draining) return void socket.destroy()
    sockets.set(socket, 0)
    lingerOnClose(socket)
    socket.once("close", () => {
      sockets.delete(socket)
      if (sockets.size === 0) onClosed?.()
    })
  })

  const lingerOnClose = (socket: Socket) => {
    // node:http ends a `connection: close` socket with destroySoon once the response is written.
    const destroySoon = socket.destroySoon
    socket.destroySoon = function(this: Socket) {
      const req = reading.get(socket)
      if (req === undefined || req.complete || req.destroyed) return destroySoon.call(this)
      let closed = false
      const close = () => {
        if (closed) return
        closed = true
        clearTimeout(timer)
        destroySoon.call(this)
      }
      const timer = setTimeout(close, lingerMs)
      req.once("end", close)
      req.once("close", close)
    }
  }

  /** Answers a request the app cannot take now; false when the app takes it. */
  const refuse = (res: ServerResponse): boolean => {
    const [[status, code], message] = draining
      ? [notServing.shuttingDown, "the server is shutting down; retry (on another instance)"]
      : server.listenerCount("request") === 0
      ? [notServing.starting, "the server is starting; retry in a moment"]
      : [[0, ""], ""]
    if (status === 0) return false
    const body = JSON.stringify(errorBody(code, message))
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "retry-after": "1",
      // Shutting down, the connection goes too: the client's next try lands on a live instance.
      ...(draining ? { connection: "close" } : {})
    })
    res.end(body)
    return true
  }

  // Every request passes here before any listener (the platform's handler) sees it.
  const emit = server.emit
  server.emit = function(this: Server, event: string | symbol, ...args: Array<any>) {
    if (event !== "request") return emit.apply(this, [event, ...args] as unknown as Parameters<typeof emit>)
    const [req, res] = args as [IncomingMessage, ServerResponse]
    track(req, res)
    return refuse(res) || emit.apply(this, [event, ...args] as unknown as Parameters<typeof emit>)
  } as typeof server.emit

  /** Counts the request until its head is written, and closes its socket after it when draining. */
  const track = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket
    reading.set(socket, req)
    if (sockets.has(socket)) sockets.set(socket, sockets.get(socket)! + 1)
    unanswered++
    let answered = false
    const answer = () => {
      if (answered) return
      answered = true
      if (--unanswered === 0) onAnswered?.()
    }
    // A response is answered once its head is written: a stream counts as answered when it opens.
    const writeHead = res.writeHead
    res.writeHead = function(this: ServerResponse, ...args: Array<any>) {
      answer()
      return writeHead.apply(this, args as any)
    } as typeof res.writeHead
    res.once("close", () => {
      answer()
      // The socket may have closed first (the client left): it is gone from the map, keep it so.
      if (!sockets.has(socket)) return
      const open = sockets.get(socket)! - 1
      sockets.set(socket, open)
      // Flush what the response wrote, then close: a destroy here could cut its last bytes.
      if (draining && open === 0) socket.end()
    })
  }

  const drain = (grace: number) =>
    Effect.async<void>((resume) => {
      draining = true
      if (server.listening) server.close()
      for (const [socket, open] of sockets) if (open === 0) socket.destroy()
      if (unanswered === 0) return resume(Effect.void)
      const timer = setTimeout(() => resume(Effect.void), grace)
      onAnswered = () => {
        clearTimeout(timer)
        resume(Effect.void)
      }
    })

  const closed = (grace: number) =>
    Effect.async<void>((resume) => {
      if (sockets.size === 0) return resume(Effect.void)
      const timer = setTimeout(() => {
        server.closeAllConnections()
        resume(Effect.void)
      }, grace)
      onClosed = () => {
        clearTimeout(timer)
        resume(Effect.void)
      }
    })

  return { server, drain, closed }
}
