/**
 * Real Chromium for the dashboard tests: Debian's `chromium` driven by playwright-core, and the
 * built dashboard (rebuilt when its sources are newer). Screenshots go to test/screenshots/.
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { chromium } from "playwright-core"

export const root = fileURLToPath(new URL("..", import.meta.url))
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
export const shots = join(root, "test/screenshots")
export const haveChromium = existsSync(chromiumPath)

/** The newest mtime under `dir`. */
const newest = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true }).reduce((max, e) => {
    const p = join(dir, e.name)
    return Math.max(max, e.isDirectory() ? newest(p) : statSync(p).mtimeMs)
  }, 0)

/** Builds dist/web when it is missing or older than its sources. */
export const ensureDashboardBuilt = () => {
  const index = join(root, "dist/web/index.html")
  const sources = Math.max(newest(join(root, "web")), newest(join(root, "src/client")))
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return
  execFileSync(process.execPath, [join(root, "node_modules/vite/bin/vite.js"), "build", "--config", "web/vite.config.ts"], {
    cwd: root,
    stdio: "inherit"
  })
}

/** Headless Chromium; `extraArgs` for a test's own flags (e.g. `--host-resolver-rules` for a LAN name). */
export const launch = (extraArgs: ReadonlyArray<string> = []) =>
  chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs
    ]
  })
