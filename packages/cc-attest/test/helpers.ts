import { createTestAuthority, type TestAuthority } from '../src/testing/index.js';

// Shared fixtures for the unit tests: one synthetic authority per test file (about a second to make).
let cached: TestAuthority | undefined;
export function authority(): TestAuthority {
  cached ??= createTestAuthority();
  return cached;
}

/** A time inside every synthetic certificate's validity. */
export const AT = new Date('2030-01-01T00:00:00Z');

export const nonce64 = (fill = 7): Uint8Array => new Uint8Array(64).fill(fill);
export const nonce32 = (fill = 9): Uint8Array => new Uint8Array(32).fill(fill);

/** Ids and codes of failed checks, for compact assertions. */
export function failures(r: { checks: ReadonlyArray<{ id: string; status: string; code?: string }> }): string[] {
  return r.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}:${c.code}`);
}
