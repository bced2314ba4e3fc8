export interface Violation {
  readonly from: string
  readonly to: string
  readonly rule: string
}
export declare const rules: ReadonlyArray<{
  readonly rule: string
  readonly applies: (from: string) => boolean
  readonly breaks: (to: string, from: string) => boolean
}>
export declare const specifiers: (source: string) => Array<string>
export declare const check: (root: string) => Array<Violation>
