// @flare/filters-dp/testing: helpers for tests and benchmarks (not for production code).
import { randomUUID } from 'node:crypto';
import { Ledger, MemoryStorage, type PrivacyLedger, type PrivacyLedgerOptions } from './privacy-ledger.js';

/**
 * A privacy ledger kept in memory: the same checks and accounting as `openPrivacyLedger`, no persistence. For
 * tests and benchmarks only: spending is forgotten when the process ends, so it protects nothing in a site.
 */
export function memoryPrivacyLedger(options: PrivacyLedgerOptions): PrivacyLedger {
  return new Ledger(new MemoryStorage(), options.site, `memory:${randomUUID()}\u0000`).configure(options);
}
