// Types of doc-snippets.mjs for the e2e test that imports it.

/** A ```ts block of a markdown file or an @example of a package's TSDoc. */
export interface Snippet {
  readonly id: string;
  /** The file it comes from, relative to the repository root. */
  readonly file: string;
  /** The 1-based line of its first code line in that file. */
  readonly line: number;
  /** The package whose README or source holds it (its exports are imported when the snippet uses them). */
  readonly pkg: string | undefined;
  readonly code: string;
}

/** One compile error of a snippet, at its line in the markdown or source file. */
export interface SnippetError {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export function markdownBlocks(text: string): { line: number; code: string }[];
export function exampleBlocks(text: string): { line: number; code: string }[];
export function collectSnippets(root?: string): Snippet[];
export function checkSnippets(snippets: readonly Snippet[], root?: string): SnippetError[];
