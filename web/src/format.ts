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
