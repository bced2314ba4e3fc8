export const relativeTime = (at: number, now: number): string => {
  const s = Math.max(0, Math.round((now - at) / 1000))
  if (s < 5) return "just now"
  if (s < 60) return `${s} s ago`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ago`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h} h ago`
  return new Date(at).toLocaleDateString()
}

export const clockTime = (at: number): string => {
  const d = new Date(at)
  const today = new Date().toDateString() === d.toDateString()
  return today ? d.toLocaleTimeString() : d.toLocaleString()
}

export const fullTime = (at: number): string => new Date(at).toLocaleString()

export const integer = (n: unknown): string => (typeof n === "number" ? n.toLocaleString() : "–")

/** JSON pretty-printed when it parses, the text as is otherwise. */
export const prettyJson = (text: unknown): string => {
  if (typeof text !== "string") return text === null || text === undefined ? "" : JSON.stringify(text, null, 2)
  try {
    return JSON.stringify(JSON.parse(text), null, 2)
  } catch {
    return text
  }
}

/** Bytes in human units (binary: 1 KiB = 1024 B), e.g. `12.3 GiB`. */
export const bytes = (n: number | null | undefined): string => {
  if (typeof n !== "number" || !Number.isFinite(n)) return "unknown"
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${Math.round(v)} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`
}

/** A duration in minutes and seconds, e.g. `2 min 05 s`, `40 s`. */
export const minutesSeconds = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000))
  const m = Math.floor(s / 60)
  return m === 0 ? `${s} s` : `${m} min ${String(s % 60).padStart(2, "0")} s`
}
