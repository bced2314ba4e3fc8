/**
 * A session's sandbox token (`POST /sessions/:id` answers it once, with auth on), kept for this
 * browser tab in sessionStorage so the session's page can show the exact `rein-sandbox` command.
 */
const key = (sessionId: string) => `rein.sandboxToken.${sessionId}`

export const keepSandboxToken = (sessionId: string, token: string) => {
  try {
    sessionStorage.setItem(key(sessionId), token)
  } catch {
    // storage disabled: the command is shown without it
  }
}

export const sandboxTokenFor = (sessionId: string): string | undefined => {
  try {
    return sessionStorage.getItem(key(sessionId)) ?? undefined
  } catch {
    return undefined
  }
}
