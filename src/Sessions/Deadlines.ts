/**
 * Deadlines: one fiber for every bootstrap timer. A sleeping fiber per session
 * would cost a fiber, a timeout and (forked from a request) that request's
 * whole context for as long as it sleeps; here a waiting session costs one
 * entry in a map and one in a heap.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

export interface Deadlines {
  /** Runs `due(key)` at `at` (epoch ms), replacing the key's earlier deadline. */
  readonly set: (key: string, at: number) => Effect.Effect<void>
  readonly remove: (key: string) => Effect.Effect<void>
}

interface Slot {
  readonly key: string
  readonly at: number
}

/**
 * `due` runs on a fiber of its own in the scope (it may retry for a while); it is forked from
 * the scope's fiber, never from a caller's, so no request stays reachable from it.
 */
export const make = <E>(due: (key: string) => Effect.Effect<void, E>): Effect.Effect<Deadlines, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const deadlines = new Map<string, number>()
    /** A binary min-heap on `at`; slots whose key moved on (removed, replaced) are skipped when they surface. */
    let heap: Array<Slot> = []
    /** When the fiber wakes next (Infinity: when told). */
    let wakeAt = Infinity
    const wake = yield* Queue.sliding<void>(1)

    const less = (a: Slot, b: Slot) => a.at < b.at
    const push = (slot: Slot) => {
      heap.push(slot)
      let i = heap.length - 1
      while (i > 0) {
        const parent = (i - 1) >> 1
        if (!less(heap[i]!, heap[parent]!)) break
        ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
        i = parent
      }
    }
    const pop = (): Slot => {
      const top = heap[0]!
      const last = heap.pop()!
      if (heap.length > 0) {
        heap[0] = last
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < heap.length && less(heap[l]!, heap[m]!)) m = l
          if (r < heap.length && less(heap[r]!, heap[m]!)) m = r
          if (m === i) break
          ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
          i = m
        }
      }
      return top
    }
    const live = (slot: Slot) => deadlines.get(slot.key) === slot.at
    /** Stale slots never outnumber live ones for long: the heap is rebuilt from the map. */
    const compact = () => {
      if (heap.length <= 64 || heap.length <= 2 * deadlines.size) return
      heap = []
      for (const [key, at] of deadlines) push({ key, at })
    }

    const loop: Effect.Effect<never> = Effect.gen(function*() {
      for (;;) {
        const now = yield* Clock.currentTimeMillis
        while (heap.length > 0 && (heap[0]!.at <= now || !live(heap[0]!))) {
          const slot = pop()
          if (!live(slot)) continue
          deadlines.delete(slot.key)
          yield* Effect.forkIn(Effect.ignoreLogged(due(slot.key)), scope)
        }
        wakeAt = heap.length > 0 ? heap[0]!.at : Infinity
        yield* wakeAt === Infinity
          ? Queue.take(wake)
          : Effect.raceFirst(Effect.sleep(wakeAt - now), Queue.take(wake))
      }
    })
    yield* Effect.forkIn(loop, scope)

    return {
      set: (key, at) =>
        Effect.suspend(() => {
          deadlines.set(key, at)
          push({ key, at })
          compact()
          return at < wakeAt ? Effect.asVoid(Queue.offer(wake, undefined)) : Effect.void
        }),
      remove: (key) =>
        Effect.sync(() => {
          deadlines.delete(key)
          compact()
        })
    }
  })
