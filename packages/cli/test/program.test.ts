import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CodecError } from '@flare/core';
import { createProgram, runCommand, usageError } from '../src/index.js';

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

  it('usageError names the command and its --help, without commander\'s prefix (E_CLI_USAGE)', () => {
    const e = usageError("error: unknown option '--kitt'\n(Did you mean --kit?)\n", 'flare client');
    expect(e.code).toBe('E_CLI_USAGE');
    expect(e.describe()).toBe(
      "E_CLI_USAGE: flare client: unknown option '--kitt' (Did you mean --kit?); `flare client --help` shows its usage. What to do: " + e.hint,
    );
  });

  describe('usage errors through the real binary: one E_CLI_USAGE line on stderr, exit 2', () => {
    const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    const flare = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

    it.each([
      ['an unknown option', ['--no-such-option'], /^E_CLI_USAGE: flare: unknown option '--no-such-option'; `flare --help` shows its usage\. What to do: /],
      ['an unknown command', ['provison'], /^E_CLI_USAGE: flare: unknown command 'provison' \(Did you mean provision\?\); /],
      ['a missing argument', ['kit', 'verify'], /^E_CLI_USAGE: flare kit verify: missing required argument 'dir'; `flare kit verify --help` shows its usage\./],
      ['a missing required option', ['provision', '-w', 'ws'], /^E_CLI_USAGE: flare provision: required option '-p, --project <file>' not specified; /],
      ['a value its parser refuses (InvalidArgumentError)', ['client', '--kit', 'k', '--give-up-after', 'soon'], /^E_CLI_USAGE: flare client: option '--give-up-after <duration>' argument 'soon' is invalid\. expected a duration/],
      ['a check in the action (cmd.error)', ['poc', '--attest-debug-site', 'site-1'], /^E_CLI_USAGE: flare poc: --attest-debug-site needs --attest test; /],
    ])('%s', (_what, args, line) => {
      const r = flare(...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(line);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }, 120_000);
  });
});
