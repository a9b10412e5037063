import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CodecError } from '@flare/core';
import { createProgram, runCommand } from '../src/index.js';

describe('flare program', () => {
  it('names itself flare and reports the package version', () => {
    const p = createProgram();
    expect(p.name()).toBe('flare');
    expect(p.version()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('turns a FlareError into exit 1 with its code and what to do', async () => {
    const lines: string[] = [];
    const code = await runCommand(() => {
      throw new CodecError('E_CODEC_MAGIC', 'not a frame.');
    }, { out: () => {}, err: (l) => lines.push(l) });
    expect(code).toBe(1);
    expect(lines[0]).toMatch(/^E_CODEC_MAGIC: not a frame\. What to do: /);
    process.exitCode = 0;
  });

  it('exits 2 on a usage error', () => {
    const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, '--no-such-option'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
  });
});
