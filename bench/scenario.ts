/**
 * What a scenario is: a bounded run against one server (Rein or the floor)
 * that returns figures, the metrics it reports, and the targets it checks.
 */

/** The server one run talks to. */
export interface Target {
  readonly kind: "rein" | "floor"
  readonly url: string
  /**
   * A second Rein instance over the same PostgreSQL database, for scenarios with `variantOf`;
   * undefined otherwise, and for the floor (one server: such a scenario then uses `url` for both).
   */
  readonly peer: string | undefined
  /** The server's pid when the bench started it (for RSS); undefined with --target. */
  readonly pid: number | undefined
  /** Directory of `rein.db` when the bench started Rein itself. */
  readonly dbDir: string | undefined
  /** A fresh prefix for session ids, so runs never collide on a reused server. */
  readonly tag: string
}

export type Figures = Record<string, number | null>

export interface MetricDef {
  readonly key: string
  readonly label: string
  readonly unit: string
  /** Which of the rounds counts: the best for a performance figure, the worst for a correctness one, the median for a noisy ratio. */
  readonly pick: "max" | "min" | "median"
  /** Whether the floor has this figure too, and whether Rein / floor means something. */
  readonly floor: "ratio" | "value" | "none"
}

/** One metric after all rounds. */
export interface Summary {
  readonly rein: number | null
  readonly floor: number | null
  /** rein / floor */
  readonly ratio: number | null
  /** (max - min) / median of Rein's rounds, in percent. */
  readonly spread: number | null
  readonly reinRuns: ReadonlyArray<number | null>
}

export interface Check {
  readonly label: string
  /** null: cannot be judged in this run (e.g. RSS with --target). */
  readonly ok: boolean | null
}

export interface Scenario {
  readonly name: string
  readonly description: string
  /**
   * A variant of that scenario over two Rein instances (`Target.peer`): run only when the bench
   * has two (`--pg`, or two `--target` URLs), and selected by `--only <variantOf>` too.
   */
  readonly variantOf?: string
  /** A run that takes longer is abandoned (each run, Rein or floor). */
  readonly timeoutMs: number
  /** Rounds (Rein and floor each) unless --rounds says otherwise; default 3. */
  readonly rounds?: number
  /** Rough seconds one round (Rein and floor) takes, reserved so later scenarios fit the time budget. */
  readonly estimateS: number
  readonly metrics: ReadonlyArray<MetricDef>
  readonly run: (target: Target) => Promise<Figures>
  /** Figures that need the server stopped (e.g. file sizes after shutdown); called before its files are removed. */
  readonly afterStop?: (target: Target, figures: Figures) => void
  readonly checks: (get: (key: string) => Summary) => ReadonlyArray<Check>
}

export const metric = (
  key: string,
  label: string,
  unit: string,
  pick: "max" | "min" | "median",
  floor: "ratio" | "value" | "none" = "ratio"
): MetricDef => ({ key, label, unit, pick, floor })

/** A count (errors, losses): the floor's is shown, a ratio would mean nothing. */
export const count = (key: string, label: string, pick: "max" | "min" = "max"): MetricDef => metric(key, label, "", pick, "value")

/** The client's own CPU share, reported by every scenario. */
export const clientCpu = metric("client_cpu", "bench client CPU (worst round)", "% core", "max", "value")

/** `value op bound`, null when the value is missing. */
export const atMost = (x: number | null, bound: number): boolean | null => x === null || Number.isNaN(x) ? null : x <= bound
export const atLeast = (x: number | null, bound: number): boolean | null => x === null || Number.isNaN(x) ? null : x >= bound
