import type { AttestErrorCode } from '@flare/core';

/** What a single check concluded: `skip` when it did not apply or its input was missing. */
export type CheckStatus = 'pass' | 'fail' | 'skip';

/**
 * One named verification step and its outcome. `id` is stable (e.g. `snp.report-signature`,
 * `tdx.qe-binding`, `gpu.fwid`, `policy.snp.debug`); `code` is set when the check failed.
 */
export interface Check {
  readonly id: string;
  readonly status: CheckStatus;
  readonly code?: AttestErrorCode;
  /** A human sentence: what was compared and what was found. Never key material. */
  readonly detail: string;
}

/** Collects checks in order (internal). */
export class Checks {
  readonly list: Check[] = [];
  pass(id: string, detail: string): void {
    this.list.push({ id, status: 'pass', detail });
  }
  fail(id: string, code: AttestErrorCode, detail: string): void {
    this.list.push({ id, status: 'fail', code, detail });
  }
  skip(id: string, detail: string): void {
    this.list.push({ id, status: 'skip', detail });
  }
  /** Records pass or fail from a boolean. */
  expect(id: string, ok: boolean, code: AttestErrorCode, passDetail: string, failDetail: string): boolean {
    if (ok) this.pass(id, passDetail);
    else this.fail(id, code, failDetail);
    return ok;
  }
  get ok(): boolean {
    return this.list.every((c) => c.status !== 'fail');
  }
  get failure(): Check | undefined {
    return this.list.find((c) => c.status === 'fail');
  }
}
