/**
 * The ACP client's file system (`fs/read_text_file`, `fs/write_text_file`),
 * confined to the working directory: a path outside it, also through a
 * symbolic link, is refused with a JSON-RPC error. A write reports the file
 * change it made, with an exact unified diff.
 */
import { RequestError } from "@agentclientprotocol/sdk"
import { mkdir, readFile, readlink, realpath, writeFile } from "node:fs/promises"
import { dirname, isAbsolute, relative, resolve, sep } from "node:path"
import { fileChange } from "./Mapping.js"
import type { Event } from "../Domain/Event.js"

const inside = (root: string, path: string) => {
  const rel = relative(root, path)
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel))
}

/**
 * The nearest existing ancestor's real path, with the rest appended: where a write would really
 * land. A dangling symbolic link on the way is followed too (a write creates its target).
 */
const realTarget = async (path: string, hops = 0): Promise<string> => {
  let current = path
  const rest: Array<string> = []
  for (;;) {
    try {
      return resolve(await realpath(current), ...rest.reverse())
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
      const link = await readlink(current).catch(() => undefined)
      if (link !== undefined) {
        if (hops >= 40) throw Object.assign(new Error(`too many symbolic links at ${current}`), { code: "ELOOP" })
        return realTarget(resolve(dirname(current), link, ...rest.reverse()), hops + 1)
      }
      const parent = dirname(current)
      if (parent === current) return path
      rest.push(relative(parent, current))
      current = parent
    }
  }
}

export class Fs {
  readonly cwd: string
  private readonly realCwd: string

  private constructor(cwd: string, realCwd: string) {
    this.cwd = cwd
    this.realCwd = realCwd
  }

  static async make(cwd: string): Promise<Fs> {
    const abs = resolve(cwd)
    return new Fs(abs, await realpath(abs))
  }

  /** The path, checked to be absolute and inside the working directory (after resolving links). */
  async check(path: string): Promise<string> {
    if (typeof path !== "string" || !isAbsolute(path)) {
      throw RequestError.invalidParams({ path }, `path must be absolute, got ${JSON.stringify(path)}`)
    }
    const abs = resolve(path)
    if (!inside(this.cwd, abs) && !inside(this.realCwd, abs)) {
      throw RequestError.invalidParams({ path }, `${path} is outside the working directory ${this.cwd}`)
    }
    if (!inside(this.realCwd, await realTarget(abs))) {
      throw RequestError.invalidParams({ path }, `${path} leads outside the working directory ${this.cwd} (symbolic link)`)
    }
    return abs
  }

  /** `line` is 1-based; `limit` counts lines. */
  async read(params: { path: string; line?: number | null; limit?: number | null }): Promise<{ content: string }> {
    const path = await this.check(params.path)
    let text: string
    try {
      text = await readFile(path, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw RequestError.resourceNotFound(path)
      throw RequestError.internalError({ path }, (e as Error).message)
    }
    if ((params.line ?? null) === null && (params.limit ?? null) === null) return { content: text }
    const lines = text.split(/(?<=\n)/)
    const start = Math.max(0, (params.line ?? 1) - 1)
    const end = params.limit === null || params.limit === undefined ? lines.length : start + Math.max(0, params.limit)
    return { content: lines.slice(start, end).join("") }
  }

  /** Writes the file (creating its directory) and returns the `file_change` it is. */
  async write(params: { path: string; content: string }): Promise<Event> {
    const path = await this.check(params.path)
    if (typeof params.content !== "string") throw RequestError.invalidParams({ path }, "content must be a string")
    let before: string | null = null
    try {
      before = await readFile(path, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw RequestError.internalError({ path }, (e as Error).message)
    }
    try {
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, params.content, "utf8")
    } catch (e) {
      throw RequestError.internalError({ path }, (e as Error).message)
    }
    return fileChange(this.cwd, path, before, params.content)
  }
}
