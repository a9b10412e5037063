import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// The real evidence lives in ../shared/vectors/attest (or $FLARE_VECTORS/attest); never copied into the repo.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const VECTORS = resolve(process.env['FLARE_VECTORS'] ?? resolve(repoRoot, '../shared/vectors'), 'attest');

export const bin = (rel: string): Uint8Array => new Uint8Array(readFileSync(resolve(VECTORS, rel)));
export const text = (rel: string): string => readFileSync(resolve(VECTORS, rel), 'utf8');
export const hexFile = (rel: string): Uint8Array => new Uint8Array(Buffer.from(text(rel).trim(), 'hex'));
export const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

/** Ids and codes of failed checks. */
export function failures(r: { checks: ReadonlyArray<{ id: string; status: string; code?: string }> }): string[] {
  return r.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}:${c.code}`);
}
