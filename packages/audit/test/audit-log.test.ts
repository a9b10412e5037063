import { expectFlareCode, expectFlareCodeAsync } from '@flare/core/testing';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson, type AuditHook, type JsonValue } from '@flare/core';
import { AuditLog, GENESIS, verifyAuditLog } from '../src/index.js';
import { linesOf, scratch, siteKey, type SiteKey } from './helpers.js';

let tmp: ReturnType<typeof scratch>;
let key: SiteKey;
let path: string;
beforeEach(() => {
  tmp = scratch();
  key = siteKey(tmp.dir, 'site-1');
  path = join(tmp.dir, 'site-1.jsonl');
});
afterEach(() => tmp.cleanup());

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const parse = (line: string) => JSON.parse(line) as Record<string, JsonValue>;

describe('AuditLog', () => {
  it('writes one canonical JSON line per event, chained by SHA-256 over the canonical JSON without hash', async () => {
    const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
    const id = log.append({ action: 'submit_job', user: 'alice@a.org', job: 'j1', scope: 'private', ref: 'ev-0', msg: 'job submitted', data: { round: 3, tags: ['a', 'ü'] } });
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await log.close();
    const lines = linesOf(path);
    expect(lines).toHaveLength(3);
    const [open, event, checkpoint] = lines.map(parse);
    expect(open).toMatchObject({ v: 1, seq: 0, site: 'site-1', action: 'audit_open', prev: GENESIS, data: { resumed: false } });
    expect(event).toMatchObject({ v: 1, seq: 1, id, action: 'submit_job', user: 'alice@a.org', job: 'j1', scope: 'private', ref: 'ev-0', msg: 'job submitted', prev: open!['hash'] });
    expect(event!['ts']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(checkpoint).toMatchObject({ action: 'audit_checkpoint', seq: 2, prev: event!['hash'], cp: { alg: 'ES256', final: true } });
    for (const [i, line] of lines.entries()) {
      const value = parse(line);
      // Independently of the writer's fast path: the line is canonicalJson of itself, and its hash is
      // SHA-256 of canonicalJson without hash and sig (core's RFC 8785 implementation).
      expect(line, `line ${i + 1}`).toBe(canonicalJson(value));
      const { hash, sig: _sig, ...body } = value;
      expect(hash).toBe(sha256(canonicalJson(body)));
    }
    expect(await verifyAuditLog(path, { certificate: key.cert })).toMatchObject({ ok: true, events: 2, lines: 3, site: 'site-1', closed: true, problems: [] });
  });

  it('property: any event round-trips as a canonical line and the log verifies', async () => {
    const text = fc.string({ maxLength: 40, unit: 'grapheme' });
    const event = fc.record(
      {
        action: fc.stringMatching(/^[a-z][a-z0-9_.:-]{0,20}$/).filter((a) => !a.startsWith('audit_')),
        msg: text,
        user: text,
        job: text,
        scope: text,
        ref: text,
        data: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>, { maxKeys: 4 }),
      },
      { requiredKeys: ['action'] },
    );
    const log = await AuditLog.open(path, { site: 'site-ü "quoted"', signer: key.privateKey, checkpointEvery: 7 });
    await fc.assert(
      fc.asyncProperty(event, async (e) => {
        const id = log.append(e);
        const last = parse(linesOf(path).at(-1)!);
        const line = linesOf(path).findLast((l) => l.includes(id))!;
        expect(line).toBe(canonicalJson(parse(line)));
        expect(last['action'] === 'audit_checkpoint' || last['id'] === id).toBe(true);
      }),
      { seed: 6, numRuns: 60 },
    );
    await log.close();
    expect((await verifyAuditLog(path, { certificate: key.cert })).problems).toEqual([]);
  });

  it('writes a signed checkpoint every N events and at close', async () => {
    const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem, checkpointEvery: 3 });
    for (let i = 0; i < 7; i++) log.append({ action: 'tick' });
    await log.close();
    const actions = linesOf(path).map((l) => parse(l)['action']);
    // audit_open + 7 ticks = 8 events: checkpoints after 3 and 6 events, the final one at close.
    expect(actions).toEqual(['audit_open', 'tick', 'tick', 'audit_checkpoint', 'tick', 'tick', 'tick', 'audit_checkpoint', 'tick', 'tick', 'audit_checkpoint']);
    const finals = linesOf(path).filter((l) => l.includes('audit_checkpoint')).map((l) => (parse(l)['cp'] as { final: boolean }).final);
    expect(finals).toEqual([false, false, true]);
    expect(await verifyAuditLog(path, { certificate: key.cert })).toMatchObject({ ok: true, events: 8, lastCheckpoint: { line: 11, seq: 10, final: true, valid: true }, closed: true });
  });

  it('reopening continues the chain and records the restart', async () => {
    let log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
    log.append({ action: 'first' });
    await log.close();
    log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
    expect(log.nextSeq).toBe(4);
    log.append({ action: 'second' });
    await log.close();
    const reopened = parse(linesOf(path)[3]!);
    expect(reopened).toMatchObject({ action: 'audit_open', seq: 3, msg: 'audit log reopened after seq 2', data: { resumed: true } });
    expect(await verifyAuditLog(path, { certificate: key.cert })).toMatchObject({ ok: true, events: 4 });
  });

  it('signs with RSA (PS256) and Ed25519 kit keys too', async () => {
    for (const kind of ['rsa', 'ed25519'] as const) {
      const k = siteKey(tmp.dir, `site-${kind}`, kind);
      const p = join(tmp.dir, `${kind}.jsonl`);
      const log = await AuditLog.open(p, { site: 'site-1', signer: k.privateKey });
      log.append({ action: 'x' });
      await log.close();
      const v = await verifyAuditLog(p, { certificate: k.cert });
      expect(v.ok).toBe(true);
      expect(v.signer).toMatchObject({ alg: kind === 'rsa' ? 'PS256' : 'EdDSA', trusted: true });
    }
  });

  it('log.append is core\'s AuditHook, usable detached', async () => {
    const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
    const hook: AuditHook = log.append;
    const id = hook({ action: 'filter_applied', job: 'j1', data: { filter: 'gaussian-dp' } });
    expect(linesOf(path).some((l) => l.includes(id!))).toBe(true);
    await log.close();
  });

  describe('refusals', () => {
    it('refuses invalid events (E_AUDIT_EVENT) without writing anything', async () => {
      const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
      const before = readFileSync(path, 'utf8');
      expectFlareCode(() => log.append({ action: 'audit_checkpoint' }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'audit_open' }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'Submit Job' }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: '' }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', data: { eps: Number.NaN } }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', data: { n: 1n } as unknown as Record<string, JsonValue> }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', data: { f: () => 1 } as unknown as Record<string, JsonValue> }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', data: { deep: { eps: Infinity } } }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', msg: 'm'.repeat(9000) }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', user: 7 as unknown as string }), 'E_AUDIT_EVENT');
      expectFlareCode(() => log.append({ action: 'x', data: { blob: 'b'.repeat(70_000) } }), 'E_AUDIT_EVENT');
      expect(readFileSync(path, 'utf8')).toBe(before);
      await log.close();
    });

    it('refuses appends after close (E_AUDIT_CLOSED); concurrent closes write one final checkpoint', async () => {
      const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem, fsync: 'batch', batchMs: 1 });
      log.append({ action: 'x' });
      log.flush();
      await Promise.all([log.close(), log.close()]);
      await log.close();
      expect(linesOf(path).filter((l) => l.includes('"final":true'))).toHaveLength(1);
      expect((await verifyAuditLog(path, { certificate: key.cert })).ok).toBe(true);
      expectFlareCode(() => log.append({ action: 'late' }), 'E_AUDIT_CLOSED');
    });

    it('refuses a second writer (E_AUDIT_LOCKED) and takes over the lock of a dead one', async () => {
      const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
      await expectFlareCodeAsync(() => AuditLog.open(path, { site: 'site-1', signer: key.pem }), 'E_AUDIT_LOCKED');
      await log.close();
      expect(existsSync(`${path}.lock`)).toBe(false);
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
      writeFileSync(`${path}.lock`, `${dead.stdout}\n`);
      const again = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
      await again.close();
    });

    it('refuses to continue another site\'s log (E_AUDIT_SITE_MISMATCH)', async () => {
      await (await AuditLog.open(path, { site: 'site-1', signer: key.pem })).close();
      await expectFlareCodeAsync(() => AuditLog.open(path, { site: 'site-2', signer: key.pem }), 'E_AUDIT_SITE_MISMATCH');
      expect(existsSync(`${path}.lock`)).toBe(false);
    });

    it('refuses to continue a log whose last line is damaged or foreign (E_AUDIT_CORRUPT)', async () => {
      await (await AuditLog.open(path, { site: 'site-1', signer: key.pem })).close();
      const lines = linesOf(path);
      writeFileSync(path, `${lines[0]}\n${lines[1]!.replace('"final":true', '"final":false')}\n`);
      await expectFlareCodeAsync(() => AuditLog.open(path, { site: 'site-1', signer: key.pem }), 'E_AUDIT_CORRUPT');
      writeFileSync(path, 'hello world, not an audit log');
      await expectFlareCodeAsync(() => AuditLog.open(path, { site: 'site-1', signer: key.pem }), 'E_AUDIT_CORRUPT');
    });

    it('cuts a torn final fragment (a crash mid-write) and records its size and hash', async () => {
      const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
      log.append({ action: 'acknowledged' });
      await log.close();
      const fragment = '{"action":"never_ackno';
      appendFileSync(path, fragment);
      expect((await verifyAuditLog(path)).problems.map((p) => p.kind)).toContain('truncated');
      // Simulate the crash: the lock stays, owned by a pid that no longer exists.
      writeFileSync(`${path}.lock`, '2147483646\n');
      const again = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
      await again.close();
      const reopen = linesOf(path).map(parse).find((l) => l['action'] === 'audit_open' && (l['data'] as { resumed: boolean }).resumed)!;
      expect(reopen['data']).toMatchObject({ tornBytes: fragment.length, tornSha256: sha256(fragment) });
      expect((await verifyAuditLog(path, { certificate: key.cert })).ok).toBe(true);
    });

    it('refuses unusable signers (E_AUDIT_SIGNER)', async () => {
      const bad = [
        generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey,
        generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey,
        generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
        'not a key',
      ];
      for (const signer of bad) await expectFlareCodeAsync(() => AuditLog.open(path, { site: 'site-1', signer }), 'E_AUDIT_SIGNER');
      expect(existsSync(path)).toBe(false);
    });

    it('reports a failing disk (E_AUDIT_WRITE) and stays failed rather than writing a broken chain', async () => {
      const full = join(tmp.dir, 'full.jsonl');
      symlinkSync('/dev/full', full);
      await expectFlareCodeAsync(() => AuditLog.open(full, { site: 'site-1', signer: key.pem }), 'E_AUDIT_WRITE');
      expect(existsSync(`${full}.lock`)).toBe(false);
    });

    it('refuses bad options as programmer misuse', async () => {
      await expect(AuditLog.open(path, { site: '', signer: key.pem })).rejects.toThrow(TypeError);
      await expect(AuditLog.open(path, { site: 's', signer: key.pem, checkpointEvery: 0 })).rejects.toThrow(RangeError);
      await expect(AuditLog.open(path, { site: 's', signer: key.pem, fsync: 'never' as 'always' })).rejects.toThrow(TypeError);
    });
  });

  describe('durability', () => {
    const writer = fileURLToPath(new URL('./fixtures/writer.mjs', import.meta.url));
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));

    /** Runs the writer child, collects ids it reports after append returned, SIGKILLs it after `count`. */
    const killAfter = (mode: 'always' | 'batch', count: number) =>
      new Promise<string[]>((resolve, reject) => {
        const child = spawn(process.execPath, [writer, dist, path, mode], { stdio: ['pipe', 'pipe', 'inherit'] });
        child.stdin.end(key.pem);
        const ids: string[] = [];
        let buffered = '';
        const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error('writer did not report in 20 s'))), 20_000);
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (chunk: string) => {
          buffered += chunk;
          const parts = buffered.split('\n');
          buffered = parts.pop()!;
          ids.push(...parts);
          if (ids.length >= count && !child.killed) child.kill('SIGKILL');
        });
        child.on('exit', (_code, signal) => {
          clearTimeout(timer);
          if (signal !== 'SIGKILL') reject(new Error(`writer exited on its own (${signal ?? _code})`));
          else resolve(ids);
        });
      });

    for (const mode of ['always', 'batch'] as const) {
      it(`fsync ${mode}: every event whose append returned survives SIGKILL of the writer`, async () => {
        expect(existsSync(dist), 'build @flare/audit first (nx test does)').toBe(true);
        const ids = await killAfter(mode, mode === 'always' ? 60 : 2000);
        expect(ids.length).toBeGreaterThanOrEqual(mode === 'always' ? 60 : 2000);
        const written = new Set(linesOf(path).flatMap((l) => { try { return [parse(l)['id'] as string]; } catch { return []; } }));
        expect(ids.filter((id) => !written.has(id))).toEqual([]);
        // The killed writer left no checkpoint after its last events: verify says so, and nothing else.
        const v = await verifyAuditLog(path, { certificate: key.cert });
        expect(v.problems.every((p) => p.kind === 'unsigned_tail' || p.kind === 'truncated')).toBe(true);
        // A restart takes over the dead writer's lock and seals everything with its next checkpoint.
        const again = await AuditLog.open(path, { site: 'site-1', signer: key.pem });
        await again.close();
        expect(await verifyAuditLog(path, { certificate: key.cert })).toMatchObject({ ok: true, closed: true });
      });
    }
  });
});
