/**
 * The `rein-sandbox` bin and the test agents, built for the end-to-end tests with esbuild into
 * dist-test/ (not dist/): the bin is the real one, from src/sandbox/bin.ts, and building it does
 * not depend on the rest of the tree type-checking (`npm run typecheck` checks that).
 */
import { buildSync } from "esbuild"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("..", import.meta.url))
const out = join(root, "dist-test")

/**
 * Bundles the bin `src/<dir>/bin.ts` (its packages left to node_modules) into
 * dist-test/<dir>-<pid>/bin.js; returns its path. Each test process builds its own: test files run
 * in parallel, and one rewriting a file another is starting would pull it from under it.
 */
const buildBin = (dir: string): string => {
  // Two levels down, as under dist/<dir>/: the bin reads ../../package.json.
  const outfile = join(out, `${dir}-${process.pid}`, "bin.js")
  buildSync({
    entryPoints: [join(root, "src", dir, "bin.ts")],
    outfile,
    bundle: true,
    packages: "external",
    format: "esm",
    platform: "node",
    target: "node20"
  })
  return outfile
}

/** `rein-sandbox`. */
export const buildSandboxBin = (): string => buildBin("sandbox")

/** `rein-runner`. */
export const buildRunnerBin = (): string => buildBin("runner")

/** Builds a test agent of test/fixtures/ (`name` without `.ts`) into one file (one per test process); returns its path. */
export const buildAgent = (name: string): string => {
  const outfile = join(out, `${name}-${process.pid}.js`)
  buildSync({ entryPoints: [join(root, "test/fixtures", `${name}.ts`)], outfile, format: "esm", platform: "node", target: "node20" })
  return outfile
}
