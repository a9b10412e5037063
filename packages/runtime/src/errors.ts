import { FlareError, FlareRuntimeError, flareErrorFromCode, isFlareErrorCode, type RuntimeErrorCode } from '@flare/core';

/** A refusal as it travels between participants: the code of the component that decided, and why. */
export interface Reason {
  readonly code: string;
  readonly message: string;
}

/**
 * The reason to report for `e`: a FlareError keeps its own code (the leaf that decided: E_POLICY_*, E_ML_*,
 * E_DP_*, ...); anything else becomes `fallback` with its message (bounded, never a stack).
 */
export function reasonOf(e: unknown, fallback: RuntimeErrorCode = 'E_RUNTIME_TASK_FAILED'): Reason {
  if (e instanceof FlareError) return { code: e.code, message: e.message.slice(0, 1000) };
  if (e instanceof Error && e.name === 'AbortError') return { code: 'E_RUNTIME_ABORTED', message: 'cancelled' };
  return { code: fallback, message: (e instanceof Error ? e.message : String(e)).slice(0, 1000) };
}

/**
 * The FlareError a peer reported (its code is stable API): re-created as that code's area error when this build
 * knows it (core's `flareErrorFromCode`), else `E_RUNTIME_PROTOCOL` naming the unknown code.
 */
export function errorFromReason(reason: Reason | undefined, fallback: RuntimeErrorCode = 'E_RUNTIME_PROTOCOL'): FlareError {
  if (reason === undefined) return new FlareRuntimeError(fallback, 'no reason given');
  if (isFlareErrorCode(reason.code)) return flareErrorFromCode(reason.code, reason.message);
  return new FlareRuntimeError('E_RUNTIME_PROTOCOL', `the peer answered with unknown code ${reason.code.slice(0, 64)}: ${reason.message}`);
}
