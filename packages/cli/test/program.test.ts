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
      ['a port out of range in --server (client)', ['client', '--kit', 'k', '--server', 'localhost:99999'], /^E_CLI_USAGE: flare client: option '--server <host:port>' argument 'localhost:99999' is invalid\. --server port must be a whole number from 1 to 65535, got '99999'/],
      ['a port that is not a number in --server (admin)', ['admin', '--kit', 'k', '--server', 'localhost:80a', 'list'], /^E_CLI_USAGE: flare admin: option '--server <host:port>' argument 'localhost:80a' is invalid\. --server port must be /],
      ['--server without a port (client)', ['client', '--kit', 'k', '--server', 'localhost'], /^E_CLI_USAGE: flare client: option '--server <host:port>' argument 'localhost' is invalid\. --server expected host:port/],
      ['port 0 in --server (package, where the host may be left out)', ['package', '--cert', 'c', '--key', 'k', '--ca-cert', 'r', '-o', 'o', '--server', ':0'], /^E_CLI_USAGE: flare package: option '--server <host:port>' argument ':0' is invalid\. --server port must be /],
      ['a page size out of range (admin list --last)', ['admin', '--kit', 'k', 'list', '--last', '0'], /^E_CLI_USAGE: flare admin list: option '--last <n>' argument '0' is invalid\. expected an integer 1\.\.10000/],
      ['a port out of range in --upstream (relay)', ['relay', '--kit', 'k', '--upstream', 'relay-1:65536'], /^E_CLI_USAGE: flare relay: option '--upstream <host:port>' argument 'relay-1:65536' is invalid\. --upstream port must be /],
    ])('%s', (_what, args, line) => {
      const r = flare(...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(line);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }, 120_000);

    // A group without a command is a usage error as git's `git remote bogus` is: help (on stderr, stdout stays
    // clean for scripts), then the coded line last, exit 2. `--help` asked for is not an error: stdout, exit 0.
    it.each([
      ['flare', []],
      ['flare admin', ['admin']],
      ['flare admin', ['admin', '--kit', 'k']],
      ['flare job', ['job']],
    ])('%s without a command prints its help and one E_CLI_USAGE line, exit 2', (path, args) => {
      const r = flare(...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(`Usage: ${path} [options] [command]`);
      const lines = r.stderr.trim().split('\n');
      expect(lines.filter((l) => l.startsWith('E_CLI_USAGE'))).toHaveLength(1);
      expect(lines.at(-1)!.startsWith(`E_CLI_USAGE: ${path}: missing command: name one of the commands listed above; \`${path} --help\` shows its usage. What to do: `)).toBe(true);
    }, 120_000);

    it('--help is no error: help on stdout, exit 0, no coded line', () => {
      for (const args of [['--help'], ['admin', '--help']]) {
        const r = flare(...args);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toContain('Usage: flare');
        expect(r.stdout + r.stderr).not.toContain('E_CLI_USAGE');
      }
    }, 120_000);
  });
});
