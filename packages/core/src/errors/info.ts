/**
 * What a code means for the person who meets it: a stable summary and the step that fixes it.
 * docs/errors.md is generated from these entries (`npm run errors:doc`), so code and docs cannot drift.
 */
export interface ErrorInfo {
  /** One sentence: what went wrong, in the user's terms. */
  readonly meaning: string;
  /** One sentence: what to do about it. */
  readonly action: string;
}

/** A set of codes for one area, each with its {@link ErrorInfo}. Codes start with `E_`. */
export type Catalog = Readonly<Record<`E_${string}`, ErrorInfo>>;
