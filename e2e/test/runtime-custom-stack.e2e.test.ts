// docs/examples/custom-stack as an integrator runs it: the packages composed without the CLI.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const EXAMPLE = resolve(import.meta.dirname, '../../docs/examples/custom-stack/federation.mjs');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function example(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [EXAMPLE, ...args], { timeout: 120_000 }, (error, stdout, stderr) => done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }));
  });
}

describe('docs/examples/custom-stack', () => {
  it('runs a DP federation of two sites to FINISHED and verifies every audit log', async () => {
    const ws = await mkdtemp(join(tmpdir(), 'custom-stack-e2e-'));
    dirs.push(ws);
    const out = await example(['--workspace', ws, '--rounds', '3']);
    expect(out.code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout) as { status: string; accuracy: number[]; epsilon: { [site: string]: { epsilon: number } }; audits: Array<{ name: string; ok: boolean }> };
    expect(r.status).toBe('FINISHED');
    expect(r.accuracy).toHaveLength(3);
    expect(r.accuracy[2]).toBeGreaterThan(0.9);
    expect(r.epsilon['clinic-a']!.epsilon).toBeGreaterThan(0);
    expect(r.audits).toEqual([
      { name: 'clinic-a', ok: true },
      { name: 'clinic-b', ok: true },
      { name: 'localhost', ok: true },
    ]);
  });

  it('with --he --attest: encrypted rounds on a server without the secret key, mutual attestation, DP before encryption', async () => {
    const ws = await mkdtemp(join(tmpdir(), 'custom-stack-he-e2e-'));
    dirs.push(ws);
    const out = await example(['--workspace', ws, '--rounds', '3', '--he', '--attest']);
    expect(out.code, out.stderr).toBe(0);
    const r = JSON.parse(out.stdout) as { status: string; accuracy: number[]; encrypted: boolean[]; attested: number; epsilon: { [site: string]: { epsilon: number; he_upload_bytes: number } }; audits: Array<{ ok: boolean }> };
    expect(r.status).toBe('FINISHED');
    expect(r.encrypted).toEqual([true, true, true]);
    expect(r.accuracy[2]).toBeGreaterThan(0.9);
    // The server verified both sites at login and before the deploy (and periodically).
    expect(r.attested).toBeGreaterThanOrEqual(4);
    expect(r.epsilon['clinic-a']!.epsilon).toBeGreaterThan(0);
    expect(r.epsilon['clinic-a']!.he_upload_bytes).toBeGreaterThan(100_000);
    expect(r.audits.every((a) => a.ok)).toBe(true);
  });
});
