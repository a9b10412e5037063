import { expectFlareCodeAsync } from '@flare/core/testing';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson, type JsonValue } from '@flare/core';
import { AuditLog, verifyAuditLog, type AuditProblemKind } from '../src/index.js';
import { linesOf, scratch, siteKey, writeLines, type SiteKey } from './helpers.js';

// One closed log of 1 audit_open + 12 events with a checkpoint every 5 events:
// lines 1-5 events, 6 checkpoint, 7-11 events, 12 checkpoint, 13-15 events, 16 final checkpoint.
const tmp = scratch();
let key: SiteKey;
let original: string[];
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const parse = (line: string) => JSON.parse(line) as Record<string, JsonValue>;
/** What a forger with no key can do: write a self-consistent line (correct hash) wherever they like. */
const forge = (value: Record<string, JsonValue>) => {
  const { hash: _h, sig: _s, ...body } = value;
  return canonicalJson({ ...value, hash: sha256(canonicalJson(body)) });
};

beforeAll(async () => {
  key = siteKey(tmp.dir, 'site-1');
  const path = join(tmp.dir, 'original.jsonl');
  const log = await AuditLog.open(path, { site: 'site-1', signer: key.pem, checkpointEvery: 5 });
  for (let i = 1; i <= 12; i++) log.append({ action: 'event', user: 'alice@a.org', job: 'j1', msg: `event ${i}`, data: { i } });
  await log.close();
  original = linesOf(path);
});
afterAll(() => tmp.cleanup());

let n = 0;
const check = async (lines: string[] | string, options: { cert?: boolean } = { cert: true }) => {
  const p = join(tmp.dir, `case-${n++}.jsonl`);
  if (typeof lines === 'string') writeFileSync(p, lines);
  else writeLines(p, lines);
  return verifyAuditLog(p, options.cert ? { certificate: key.cert } : {});
};
const first = async (lines: string[] | string, options?: { cert?: boolean }) => {
  const r = await check(lines, options);
  expect(r.ok).toBe(false);
  return r.problems[0]!;
};
const expectFirst = async (lines: string[] | string, line: number, kind: AuditProblemKind, options?: { cert?: boolean }) => {
  const p = await first(lines, options);
  expect({ line: p.line, kind: p.kind }).toEqual({ line, kind });
  return p;
};

describe('verifyAuditLog', () => {
  it('the original log is whole, closed, and signed by the certificate\'s key', async () => {
    expect(original.map((l) => parse(l)['action'])).toEqual([
      'audit_open', 'event', 'event', 'event', 'event', 'audit_checkpoint', 'event', 'event', 'event', 'event', 'event', 'audit_checkpoint', 'event', 'event', 'event', 'audit_checkpoint',
    ]);
    const r = await check(original);
    expect(r).toMatchObject({ ok: true, events: 13, lines: 16, site: 'site-1', closed: true, lastCheckpoint: { line: 16, seq: 15, final: true, valid: true }, problems: [] });
    expect(r.signer).toMatchObject({ alg: 'ES256', trusted: true });
    expect(r.signer!.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const untrusted = await check(original, { cert: false });
    expect(untrusted.ok).toBe(true);
    expect(untrusted.signer!.trusted).toBe(false);
  });

  it('flip a byte in an event: modified, at that line', async () => {
    const lines = [...original];
    expect(lines[7]).toContain('"msg":"event 6"');
    lines[7] = lines[7]!.replace('event 6', 'event 7');
    const p = await expectFirst(lines, 8, 'modified');
    expect(p.detail).toBe('its content does not match its hash');
  });

  it('flip any single byte anywhere: the first problem names that line', async () => {
    const text = `${original.join('\n')}\n`;
    const starts = original.map((_, i) => original.slice(0, i).reduce((s, l) => s + l.length + 1, 0));
    // Every 37th byte, to keep the test fast while covering keys, values, hashes, signatures and newlines.
    for (let at = 0; at < text.length; at += 37) {
      const bytes = Buffer.from(text);
      bytes[at] = bytes[at]! ^ 0x01;
      const r = await check(bytes.toString('latin1'));
      expect(r.ok, `byte ${at}`).toBe(false);
      const line = starts.findLastIndex((s) => s <= at) + 1;
      // A flipped newline merges or splits lines; otherwise the flipped line is the first bad one.
      if (text[at] !== '\n') expect(r.problems[0]!.line, `byte ${at}`).toBe(line);
    }
  });

  it('delete a line: deleted, at the line after the gap', async () => {
    const p = await expectFirst([...original.slice(0, 8), ...original.slice(9)], 9, 'deleted');
    expect(p.detail).toBe('1 line missing before this line (seq 8)');
    expect((await first(original.slice(1))).kind).toBe('deleted');
    const three = await expectFirst([...original.slice(0, 2), ...original.slice(5)], 3, 'deleted');
    expect(three.detail).toBe('3 lines missing before this line (seq 2..4)');
  });

  it('swap two lines: reordered, at the first of them', async () => {
    const lines = [...original];
    [lines[3], lines[4]] = [lines[4]!, lines[3]!];
    await expectFirst(lines, 4, 'reordered');
  });

  it('insert a forged line (correct hash, chained to its predecessor): inserted, at the forged line', async () => {
    const base = parse(original[8]!);
    const forged = forge({ ...base, id: randomUUID(), seq: (base['seq'] as number) + 1, prev: base['hash']!, msg: 'alice approved everything' });
    const p = await expectFirst([...original.slice(0, 9), forged, ...original.slice(9)], 10, 'inserted');
    expect(p.detail).toBe('this line is not part of the chain: line 11 follows line 9');
  });

  it('replace a line with a forged one (correct hash and link): modified, at the replaced line', async () => {
    const base = parse(original[8]!);
    const lines = [...original];
    lines[8] = forge({ ...base, msg: 'rewritten' });
    await expectFirst(lines, 9, 'modified');
  });

  it('truncate the tail (whole lines): unsigned tail after the last remaining checkpoint', async () => {
    const p = await expectFirst(original.slice(0, 14), 13, 'unsigned_tail');
    expect(p.detail).toMatch(/^2 lines after the last checkpoint \(line 12\)/);
    const r = await check(original.slice(0, 12));
    expect(r).toMatchObject({ ok: true, closed: false, lastCheckpoint: { line: 12, final: false } });
  });

  it('truncate mid-line: the cut line is reported as truncated', async () => {
    const text = `${original.join('\n')}\n`;
    const r = await check(text.slice(0, text.length - 40));
    expect(r.problems.map((p) => [p.line, p.kind])).toEqual([[16, 'truncated']]);
    expect(r.closed).toBe(false);
  });

  it('forge a checkpoint with another key: bad signature, with or without the certificate', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forgeCheckpoint = (i: number) => {
      const cp = parse(original[i]!);
      const { hash: _h, sig: _s, ...body } = cp;
      const forgedBody = { ...body, cp: { ...(cp['cp'] as Record<string, JsonValue>), key: other.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') } };
      const hash = sha256(canonicalJson(forgedBody));
      const sig = sign('sha256', Buffer.from(`flare-ts audit checkpoint v1\n${hash}`), { key: other.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64');
      return canonicalJson({ ...forgedBody, hash, sig });
    };
    const lines = [...original];
    lines[15] = forgeCheckpoint(15);
    expect((await expectFirst(lines, 16, 'bad_signature')).detail).toBe("the checkpoint is signed by a key other than the certificate's");
    expect((await expectFirst(lines, 16, 'bad_signature', { cert: false })).detail).toBe("the checkpoint is signed by a different key than the log's earlier checkpoints");
  });

  it('a checkpoint whose signature bytes were changed: bad signature', async () => {
    const lines = [...original];
    const cp = parse(lines[11]!);
    const sig = Buffer.from(cp['sig'] as string, 'base64');
    sig[10] = sig[10]! ^ 0xff;
    lines[11] = canonicalJson({ ...cp, sig: sig.toString('base64') });
    expect((await expectFirst(lines, 12, 'bad_signature')).detail).toBe('the checkpoint signature does not verify');
  });

  it('a log signed by another site\'s key: bad signature against the certificate', async () => {
    const other = siteKey(tmp.dir, 'site-2');
    const path = join(tmp.dir, 'other.jsonl');
    const log = await AuditLog.open(path, { site: 'site-1', signer: other.pem });
    log.append({ action: 'x' });
    await log.close();
    const r = await verifyAuditLog(path, { certificate: key.cert });
    expect(r.problems[0]).toMatchObject({ line: 3, kind: 'bad_signature' });
  });

  it('a log with no checkpoint at all: unsigned tail from line 1', async () => {
    const p = await expectFirst(original.slice(0, 5), 1, 'unsigned_tail');
    expect(p.detail).toMatch(/^no signed checkpoint/);
  });

  it('lines that are not audit lines: modified (not JSON, not canonical, unknown keys, too long, not UTF-8)', async () => {
    const bad: Array<[string, string]> = [
      ['not JSON', 'hello'],
      ['not canonical', JSON.stringify(parse(original[2]!), null, 1).replace(/\n/g, '')],
      ['an unknown key', canonicalJson({ ...parse(original[2]!), extra: 1 })],
      ['too long', 'x'.repeat(70_000)],
    ];
    for (const [title, line] of bad) {
      const lines = [...original];
      lines[2] = line;
      const p = await first(lines);
      expect([p.line, p.kind], title).toEqual([3, 'modified']);
    }
    const bytes = Buffer.from(`${original.join('\n')}\n`);
    bytes[original[0]!.length + 20] = 0xff;
    expect(await first(bytes.toString('latin1'))).toMatchObject({ line: 2, kind: 'modified' });
  });

  it('refuses an unreadable certificate (E_AUDIT_CERT) and a missing file (E_AUDIT_FILE)', async () => {
    await expectFlareCodeAsync(() => verifyAuditLog(join(tmp.dir, 'original.jsonl'), { certificate: 'not a certificate' }), 'E_AUDIT_CERT');
    await expectFlareCodeAsync(() => verifyAuditLog(join(tmp.dir, 'missing.jsonl')), 'E_AUDIT_FILE');
  });

  it('an empty file is whole but unsealed', async () => {
    expect(await check('')).toMatchObject({ ok: true, events: 0, lines: 0, closed: false, lastCheckpoint: null });
  });
});
