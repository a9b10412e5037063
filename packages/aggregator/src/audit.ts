// Audit reporting shared by the streaming aggregators (internal).

import { FlareError, type AuditHook } from '@flare/core';

/** Runs `fn`; when it throws a FlareError, reports `contribution_refused` (site, code) and rethrows. */
export function reportRefusal<T>(audit: AuditHook | undefined, method: string, from: unknown, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (audit !== undefined && e instanceof FlareError) {
      audit({
        action: 'contribution_refused',
        msg: `${method} refused a contribution: ${e.code}`,
        data: { method, from: typeof from === 'string' ? from : '', code: e.code },
      });
    }
    throw e;
  }
}

/** Reports `round_aggregated` with the method, the round and the number of contributions. */
export function reportAggregated(audit: AuditHook | undefined, method: string, round: number | undefined, contributions: number): void {
  audit?.({
    action: 'round_aggregated',
    msg: `${method} aggregated ${contributions} contribution(s)`,
    data: { method, round: round ?? null, contributions },
  });
}

/** Reports `weight_capped`: a site claimed more local steps than its cap and was counted with the cap. */
export function reportCapped(audit: AuditHook | undefined, method: string, from: string, claimed: number, cap: number): void {
  audit?.({
    action: 'weight_capped',
    msg: `${method} counted ${from} with ${cap} local steps; it claimed ${claimed}`,
    data: { method, from, claimed, cap },
  });
}
