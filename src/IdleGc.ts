/**
 * IdleGc: gives memory back once the server goes quiet. V8 grows its heap
 * during a burst of requests (mostly with garbage) and, left alone, keeps
 * those pages for good: an idle server then holds its busiest moment's
 * footprint. Its memory reducer hands them back, but only after a full
 * collection while the process is idle, which an idle server never makes.
 * So: every few seconds, when the event loop was nearly idle and the heap
 * holds far more than it uses, one full collection; V8 then shrinks the heap.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { performance } from "node:perf_hooks"
import * as v8 from "node:v8"
import * as vm from "node:vm"

type Gc = (options?: { readonly type: "major"; readonly execution: "sync"; readonly flavor: "last-resort" }) => void

/**
 * The collector, when V8 lets us have it (`--expose-gc`, set at run time). Called with
 * `flavor: "last-resort"` after a plain one, V8 also compacts and returns freed pages to the
 * system (a plain full collection frees them inside the heap only).
 */
const collector = (): (() => void) | undefined => {
  let gc: unknown = (globalThis as { gc?: unknown }).gc
  try {
    if (typeof gc !== "function") {
      v8.setFlagsFromString("--expose-gc")
      gc = vm.runInNewContext("gc")
    }
  } catch {
    return undefined
  }
  if (typeof gc !== "function") return undefined
  const collect = gc as Gc
  return () => {
    // A plain one frees (measured: the options form alone leaves most garbage), the second
    // compacts and hands pages back; V8's memory reducer, now started, shrinks the rest later.
    collect()
    collect({ type: "major", execution: "sync", flavor: "last-resort" })
  }
}

export interface IdleGcOptions {
  /** Milliseconds between checks. Default 3 000. */
  readonly interval?: number
}

/** A fiber for the scope's life; does nothing where the collector is not available. */
export const layer = (options: IdleGcOptions = {}): Layer.Layer<never> =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const gc = collector()
    if (gc === undefined) return
    let last = performance.eventLoopUtilization()
    /** heapTotal after the last collection: another one only once the heap grew again. */
    let after = -Infinity
    /** heapTotal before the last collection, and collections since the heap last grew. */
    let previous = Infinity
    let passes = 0
    const check = Effect.sync(() => {
      const now = performance.eventLoopUtilization()
      const busy = performance.eventLoopUtilization(now, last).utilization
      last = now
      const { heapTotal, heapUsed } = process.memoryUsage()
      const slack = heapTotal - heapUsed
      if (busy > 0.05 || slack < 32 * 1024 * 1024) return
      // Again while each pass still shrinks the heap (compaction moves a few pages at a time),
      // then only once it grew again.
      if (heapTotal < after + 16 * 1024 * 1024 && !(passes < 4 && heapTotal < previous)) return
      passes = heapTotal >= after + 16 * 1024 * 1024 ? 1 : passes + 1
      gc()
      previous = heapTotal
      after = process.memoryUsage().heapTotal
    })
    yield* Effect.forkScoped(Effect.repeat(check, Schedule.spaced(options.interval ?? 3_000)))
  }))
