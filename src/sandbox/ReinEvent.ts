/**
 * TEMPORARY: the issue-13 events (SPEC-13) typed locally until the `proto`
 * branch lands them in src/Domain/Event.ts; then this file goes and the
 * bridge imports `Event` from the Domain.
 */
import type { Event as DomainEvent } from "../Domain/Event.js"

export type ToolKind = "read" | "edit" | "delete" | "move" | "search" | "execute" | "think" | "fetch" | "switch_mode" | "other"
export interface Location { readonly path: string; readonly line?: number }
export interface PermissionOption {
  readonly optionId: string
  readonly name: string
  readonly kind: "allow_once" | "allow_always" | "reject_once" | "reject_always"
}
export interface PlanEntry {
  readonly content: string
  readonly status: "pending" | "in_progress" | "completed"
  readonly priority?: "high" | "medium" | "low"
}

type New =
  | {
    readonly type: "tool_call_start"
    readonly toolCallId: string
    readonly name: string
    readonly input?: string
    readonly title?: string
    readonly kind?: ToolKind
    readonly locations?: ReadonlyArray<Location>
  }
  | {
    readonly type: "tool_call_update"
    readonly toolCallId: string
    readonly title?: string
    readonly kind?: ToolKind
    readonly status?: "pending" | "running"
    readonly input?: string
    readonly output?: string
    readonly locations?: ReadonlyArray<Location>
  }
  | {
    readonly type: "permission_request"
    readonly requestId: string
    readonly toolCallId?: string
    readonly title: string
    readonly options?: ReadonlyArray<PermissionOption>
  }
  | { readonly type: "plan"; readonly entries: ReadonlyArray<PlanEntry> }
  | { readonly type: "turn_end"; readonly stopReason?: "end_turn" | "max_tokens" | "max_turn_requests" | "refusal" | "cancelled" | "error" }
  | { readonly type: "context"; readonly used: number; readonly size: number }
  | {
    readonly type: "agent"
    readonly name?: string
    readonly version?: string
    readonly commands?: ReadonlyArray<{ readonly name: string; readonly description?: string }>
    readonly modes?: ReadonlyArray<{ readonly id: string; readonly name: string; readonly description?: string }>
    readonly currentModeId?: string | null
  }
  | { readonly type: "user_message"; readonly text: string }

export type Event =
  | Exclude<DomainEvent, { type: "tool_call_start" | "permission_request" | "plan" | "turn_end" }>
  | New
