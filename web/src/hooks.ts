import { useEffect, useState } from "preact/hooks"
import type { Watch, WatchState } from "../../src/client/index.js"

/** The state of a watch opened for the component's life (and reopened when `deps` change). */
export const useWatch = <S extends WatchState>(open: () => Watch<S>, deps: ReadonlyArray<unknown>): S | undefined => {
  const [state, setState] = useState<S | undefined>(undefined)
  useEffect(() => {
    const watch = open()
    setState(watch.state)
    const unsubscribe = watch.subscribe(setState)
    return () => {
      unsubscribe()
      watch.close()
    }
  }, deps)
  return state
}

/** The current time, refreshed every `intervalMs`, for relative times. */
export const useNow = (intervalMs = 1000): number => {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs)
    return () => clearInterval(timer)
  }, [intervalMs])
  return now
}
