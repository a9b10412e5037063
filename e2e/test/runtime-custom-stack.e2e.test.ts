// docs/examples/custom-stack as an integrator runs it: the packages composed without the CLI.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const EXAMPLE = resolve(import.meta.dirname, '../../docs/examples/custom-stack/federation.mjs');
let ws: string | undefined;
afterAll(async () => {
  if (ws !== undefined) await rm(ws, { recursive: true, force: true });
});

describe('docs/examples/custom-stack', () => {
  it('runs a DP federation of two sites to FINISHED and verifies every audit log', async () => {
    ws = await mkdtemp(join(tmpdir(), 'custom-stack-e2e-'));
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [EXAMPLE, '--workspace', ws!, '--rounds', '3'], { timeout: 120_000 }, (error, stdout, stderr) =>
        done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
      );
    });
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
});
