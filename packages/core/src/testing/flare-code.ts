import { AssertionError } from 'node:assert';
import type { FlareErrorCode } from '../errors/codes.js';
import { FlareError } from '../errors/flare-error.js';

// Test helpers shared by every package: assert that something fails with a FlareError of a given code. They
// import nothing from a test runner at run time, so they work under vitest, node:test or any other runner.

/** What a thrown value looked like, for failure messages (never the whole value: it may be large). */
function describeThrown(thrown: unknown): string {
  if (thrown instanceof FlareError) return `${thrown.name} ${thrown.code}: ${thrown.message.slice(0, 300)}`;
  if (thrown instanceof Error) {
    const code = (thrown as { code?: unknown }).code;
    return `${thrown.name}${typeof code === 'string' ? ` (code ${code})` : ''}: ${thrown.message.slice(0, 300)}`;
  }
  return `a non-error value (${typeof thrown})`;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The outcome of running a function: what it threw, or that it returned. */
type Outcome = { readonly threw: true; readonly value: unknown } | { readonly threw: false; readonly value: unknown };

function run(fn: () => unknown): Outcome {
  try {
    return { threw: false, value: fn() };
  } catch (value) {
    return { threw: true, value };
  }
}

async function settle(p: unknown): Promise<Outcome> {
  try {
    return { threw: false, value: await (typeof p === 'function' ? (p as () => unknown)() : p) };
  } catch (value) {
    return { threw: true, value };
  }
}

/** Why `outcome` is not a FlareError of `code`, or undefined when it is. */
function mismatch(outcome: Outcome, code: FlareErrorCode): string | undefined {
  if (!outcome.threw) return `expected a FlareError ${code}, but nothing was thrown`;
  if (!(outcome.value instanceof FlareError)) return `expected a FlareError ${code}, got ${describeThrown(outcome.value)}`;
  if (outcome.value.code !== code) return `expected a FlareError ${code}, got ${describeThrown(outcome.value)}`;
  return undefined;
}

/**
 * Runs `fn` and returns the FlareError it throws, after asserting its code (so a test can look further at
 * the message or cause). Throws an AssertionError when `fn` returns, throws something else, or returns a
 * promise (use {@link expectFlareCodeAsync}).
 *
 * @example
 * ```ts
 * const e = expectFlareCode(() => decodeModel(bytes), 'E_CODEC_TRUNCATED');
 * expect(e.message).toContain('header');
 * ```
 */
export function expectFlareCode(fn: () => unknown, code: FlareErrorCode): FlareError {
  const outcome = run(fn);
  if (!outcome.threw && isThenable(outcome.value)) {
    // A rejected promise nobody awaits would be reported as unhandled: observe it before failing.
    Promise.resolve(outcome.value).catch(() => undefined);
    throw new AssertionError({ message: `expected a FlareError ${code} to be thrown, but the function returned a promise: use expectFlareCodeAsync` });
  }
  const why = mismatch(outcome, code);
  if (why !== undefined) throw new AssertionError({ message: why, actual: outcome.value, expected: code });
  return outcome.value as FlareError;
}

/**
 * Awaits `p` (a promise, or a function returning one or throwing) and returns the FlareError it rejects with,
 * after asserting its code. Throws an AssertionError when it resolves or rejects with something else.
 *
 * @example
 * ```ts
 * await expectFlareCodeAsync(() => loadKit(dir), 'E_KIT_TAMPERED');
 * ```
 */
export async function expectFlareCodeAsync(p: PromiseLike<unknown> | (() => unknown), code: FlareErrorCode): Promise<FlareError> {
  const outcome = await settle(p);
  const why = mismatch(outcome, code);
  if (why !== undefined) throw new AssertionError({ message: why, actual: outcome.value, expected: code });
  return outcome.value as FlareError;
}

/** What a matcher returns (vitest's and jest's `ExpectationResult`). */
export interface FlareMatcherResult {
  readonly pass: boolean;
  readonly message: () => string;
}

/** The part of a matcher's `this` the FLARE matchers read. */
interface MatcherThis {
  readonly isNot?: boolean;
}

function result(outcome: Outcome, code: FlareErrorCode, self: MatcherThis | undefined): FlareMatcherResult {
  const why = mismatch(outcome, code);
  return {
    pass: why === undefined,
    message: () => (self?.isNot === true ? `expected no FlareError ${code}, but it was thrown: ${describeThrown(outcome.value)}` : why ?? ''),
  };
}

/**
 * vitest (or jest) matchers; register them once with `expect.extend(flareMatchers)` (in a test file or a
 * `setupFiles` module), then:
 *
 * - `expect(() => f()).toThrowFlareCode('E_X')`: `f` throws a FlareError with code `E_X`;
 * - `await expect(promise).rejects.toThrowFlareCode('E_X')`: the promise rejects with one (vitest hands
 *   the matcher the rejection; a non-function value is taken as the thrown value);
 * - `await expect(promiseOrAsyncFn).toRejectWithFlareCode('E_X')`: the same without `.rejects`.
 *
 * @example
 * ```ts
 * import { expect } from 'vitest';
 * import { flareMatchers } from '@flare/core/testing';
 * expect.extend(flareMatchers);
 * expect(() => decodeModel(new Uint8Array(3))).toThrowFlareCode('E_CODEC_TRUNCATED');
 * ```
 */
export const flareMatchers = {
  toThrowFlareCode(this: MatcherThis | undefined, received: unknown, code: FlareErrorCode): FlareMatcherResult {
    if (typeof received !== 'function') return result({ threw: true, value: received }, code, this);
    const outcome = run(received as () => unknown);
    if (!outcome.threw && isThenable(outcome.value)) {
      // A rejected promise nobody awaits would be reported as unhandled: observe it before failing.
      Promise.resolve(outcome.value).catch(() => undefined);
      return { pass: false, message: () => `expected a FlareError ${code} to be thrown, but the function returned a promise: use toRejectWithFlareCode` };
    }
    return result(outcome, code, this);
  },
  async toRejectWithFlareCode(this: MatcherThis | undefined, received: unknown, code: FlareErrorCode): Promise<FlareMatcherResult> {
    if (typeof received !== 'function' && !isThenable(received)) {
      return { pass: false, message: () => `expected a promise or a function returning one, got ${typeof received}` };
    }
    return result(await settle(received), code, this);
  },
};

/** The assertion methods {@link flareMatchers} add (for the `declare module 'vitest'` augmentation). */
export interface FlareMatchers<R = unknown> {
  /** The function throws (or, after `.rejects`, the promise rejects with) a FlareError with `code`. */
  toThrowFlareCode(code: FlareErrorCode): R;
  /** The promise (or the async function's promise) rejects with a FlareError with `code`; await it. */
  toRejectWithFlareCode(code: FlareErrorCode): Promise<R>;
}
