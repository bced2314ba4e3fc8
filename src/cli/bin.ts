#!/usr/bin/env node
/**
 * `rein`: the terminal client. Argv -> the commands -> NodeRuntime.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import { createRequire } from "node:module"
import * as Commands from "./Commands.js"
import * as Io from "./Io.js"

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string }

Commands.run(process.argv, version).pipe(
  Effect.provide([NodeContext.layer, Io.layerProcess]),
  NodeRuntime.runMain({ disableErrorReporting: true, teardown: Commands.teardown })
)
