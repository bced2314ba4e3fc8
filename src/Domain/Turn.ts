/**
 * Turn: the part of the reducer's state that the artifacts do not record (the open delta, the
 * turn's plan and usage). The store keeps it next to the session, so a reducer rebuilt from the
 * artifacts (evicted, or on another instance) continues exactly where the last commit left off.
 */

/** The delta artifact without `partId` that the next delta of its kind extends. */
export interface OpenDelta {
  readonly seq: number
  readonly kind: "text" | "reasoning"
}

/** The turn's `usage` artifact and the totals it shows so far. */
export interface UsageRef {
  readonly seq: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number | null
}

export interface Turn {
  readonly open: OpenDelta | null
  readonly turnPlan: number | null
  readonly turnUsage: UsageRef | null
}
