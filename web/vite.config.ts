/**
 * The dashboard's build: Preact (JSX through esbuild, no Babel) into static
 * files in dist/web, which the server serves at `/`. Everything is bundled:
 * no CDN, works offline.
 *
 *   npx vite build --config web/vite.config.ts   # what `npm run build` does
 *   npx vite --config web/vite.config.ts          # dev server, proxying the API to REIN_URL
 */
import { fileURLToPath } from "node:url"
import { defineConfig } from "vite"

const api = process.env.REIN_URL ?? "http://127.0.0.1:4800"

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  publicDir: "public",
  logLevel: "warn",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: true,
    // The polyfill would be an inline script, which the page's CSP forbids; every supported browser has modulepreload.
    modulePreload: { polyfill: false }
  },
  server: { proxy: { "/sessions": api, "/healthz": api } }
})
