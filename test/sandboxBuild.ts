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

/** Builds `src/sandbox/bin.ts` (its packages left to node_modules); returns its path. */
export const buildSandboxBin = (): string => {
  // Under dist-test/sandbox/, as under dist/sandbox/: the bin reads ../../package.json.
  const outfile = join(out, "sandbox", "bin.js")
  buildSync({
    entryPoints: [join(root, "src/sandbox/bin.ts")],
    outfile,
    bundle: true,
    packages: "external",
    format: "esm",
    platform: "node",
    target: "node20"
  })
  return outfile
}

/** Builds a test agent of test/fixtures/ (`name` without `.ts`) into one file; returns its path. */
export const buildAgent = (name: string): string => {
  const outfile = join(out, `${name}.js`)
  buildSync({ entryPoints: [join(root, "test/fixtures", `${name}.ts`)], outfile, format: "esm", platform: "node", target: "node20" })
  return outfile
}

/** Builds the `rein-runner` bin (src/runner/bin.ts) like the sandbox's; returns its path. */
export const buildRunnerBin = (): string => {
  const outfile = join(out, "runner", "bin.js")
  buildSync({
    entryPoints: [join(root, "src/runner/bin.ts")],
    outfile,
    bundle: true,
    packages: "external",
    format: "esm",
    platform: "node",
    target: "node20"
  })
  return outfile
}
