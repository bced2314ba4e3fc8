/**
 * Hash routing (`#/`, `#/sessions/<id>` and `#/runners`) and the access token: read once
 * from `#token=...` (or `&token=...` after a route), kept in sessionStorage,
 * and removed from the address bar so it does not linger in history.
 */
import { useEffect, useState } from "preact/hooks"

const TOKEN_KEY = "rein.token"

export const readToken = (): string | undefined => {
  const match = /(?:^#|[#&?])token=([^&]*)/.exec(location.hash)
  if (match) {
    const token = decodeURIComponent(match[1]!)
    try {
      sessionStorage.setItem(TOKEN_KEY, token)
    } catch {
      // storage disabled: the token lives for this page only
    }
    const rest = location.hash.replace(/(^#|[&?])token=[^&]*&?/, "$1").replace(/[&?]$/, "")
    history.replaceState(null, "", location.pathname + location.search + (rest === "#" ? "" : rest))
    return token || undefined
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined
  } catch {
    return undefined
  }
}

export const saveToken = (token: string) => {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    else sessionStorage.removeItem(TOKEN_KEY)
  } catch {
    // ignore
  }
}

export interface Route {
  readonly sessionId: string | undefined
  /** `#/runners`: the runners the hub knows. */
  readonly runners?: boolean
}

export const runnersHref = "#/runners"

const parse = (): Route => {
  if (/^#\/runners\/?$/.test(location.hash)) return { sessionId: undefined, runners: true }
  const match = /^#\/sessions\/([^/?&]+)/.exec(location.hash)
  if (!match) return { sessionId: undefined }
  try {
    return { sessionId: decodeURIComponent(match[1]!) }
  } catch {
    return { sessionId: undefined }
  }
}

export const sessionHref = (id: string) => `#/sessions/${encodeURIComponent(id)}`

export const navigate = (href: string) => {
  if (location.hash !== href) location.hash = href
}

export const useRoute = (): Route => {
  const [route, setRoute] = useState(parse)
  useEffect(() => {
    const onChange = () => setRoute(parse())
    window.addEventListener("hashchange", onChange)
    return () => window.removeEventListener("hashchange", onChange)
  }, [])
  return route
}
