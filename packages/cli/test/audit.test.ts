import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '@flare/audit';
import { register } from '../src/commands/audit.js';

const dir = mkdtempSync(join(tmpdir(), 'flare-cli-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const logs = { server: join(dir, 'server.jsonl'), site: join(dir, 'site-1.jsonl') };
let cert: string;
let otherCert: string;
let taskId: string;
let filterId: string;
beforeAll(async () => {
  const keyFor = (name: string) => {
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(join(dir, `${name}.key`), pem);
    execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', join(dir, `${name}.key`), '-subj', `/CN=${name}`, '-days', '5', '-out', join(dir, `${name}.crt`)], { stdio: 'ignore' });
    return pem;
  };
  const server = await AuditLog.open(logs.server, { site: 'server', signer: keyFor('server') });
  const site = await AuditLog.open(logs.site, { site: 'site-1', signer: keyFor('site-1') });
  keyFor('other');
  cert = join(dir, 'site-1.crt');
  otherCert = join(dir, 'other.crt');
  taskId = server.append({ action: 'task_sent', job: 'j1', msg: 'train round 0' });
  const received = site.append({ action: 'task_received', ref: taskId, job: 'j1', scope: 'private' });
  filterId = site.append({ action: 'filter_applied', ref: received, job: 'j1' });
  server.append({ action: 'result_received', ref: site.append({ action: 'result_sent', ref: received, job: 'j1' }), job: 'j1', user: 'site-1' });
  await server.close();
  await site.close();
});

async function flare(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('flare').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  register(program, { out: (l) => out.push(l), err: (l) => err.push(l) });
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'flare', ...args]);
  } catch (e) {
    if (e instanceof CommanderError) return { code: e.exitCode === 0 ? 0 : 2, out, err };
    throw e;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { code, out, err };
}
const tampered = (name: string, edit: (lines: string[]) => string[]) => {
  const lines = readFileSync(logs.site, 'utf8').split('\n').slice(0, -1);
  const path = join(dir, name);
  writeFileSync(path, edit(lines).map((l) => `${l}\n`).join(''));
  return path;
};

describe('flare audit verify', () => {
  it('exit 0 for a whole log, naming the signer', async () => {
    const r = await flare(['audit', 'verify', logs.site, '--cert', cert]);
    expect(r.code).toBe(0);
    expect(r.out[0]).toMatch(new RegExp(`^OK ${logs.site}: 4 events in 5 lines, closed, checkpoints signed by ES256 key [0-9a-f]{16}… \\(the certificate's\\)$`));
    const noCert = await flare(['audit', 'verify', logs.site]);
    expect(noCert.code).toBe(0);
    expect(noCert.err[0]).toMatch(/not checked against a certificate/);
  });

  const cases: Array<[string, (l: string[]) => string[], string]> = [
    ['a modified line', (l) => l.map((x, i) => (i === 2 ? x.replace('"j1"', '"j2"') : x)), 'line 3: modified'],
    ['a deleted line', (l) => l.filter((_, i) => i !== 1), 'line 2: deleted'],
    ['reordered lines', (l) => [l[0]!, l[2]!, l[1]!, ...l.slice(3)], 'line 2: reordered'],
    ['a truncated tail', (l) => l.slice(0, 4), 'line 1: unsigned tail after the last checkpoint'],
  ];
  for (const [title, edit, first] of cases) {
    it(`exit 1 naming the first bad line and the kind: ${title}`, async () => {
      const path = tampered(`${title.replace(/ /g, '-')}.jsonl`, edit);
      const r = await flare(['audit', 'verify', path, '--cert', cert]);
      expect(r.code).toBe(1);
      expect(r.out[0]).toMatch(new RegExp(`^${first}: `));
      expect(r.err[0]).toMatch(new RegExp(`^E_AUDIT_TAMPERED: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ${first} \\(.*\\)\\. What to do: `));
    });
  }

  it('exit 1 for a log signed by another key than the certificate\'s: bad signature', async () => {
    const r = await flare(['audit', 'verify', logs.site, '--cert', otherCert]);
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/^line 5: bad signature: /);
  });

  it('--json prints the whole result', async () => {
    const r = await flare(['audit', 'verify', logs.site, '--cert', cert, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out.join('\n'))).toMatchObject({ ok: true, events: 4, lines: 5, closed: true, problems: [] });
    const bad = await flare(['audit', 'verify', tampered('json-bad.jsonl', (l) => l.slice(1)), '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.out.join('\n')).problems[0]).toMatchObject({ line: 1, kind: 'deleted' });
  });

  it('exit 1 with E_AUDIT_FILE / E_AUDIT_CERT for unreadable inputs', async () => {
    expect((await flare(['audit', 'verify', join(dir, 'missing.jsonl')])).err[0]).toMatch(/^E_AUDIT_FILE: /);
    writeFileSync(join(dir, 'bad.crt'), 'not a certificate');
    const r = await flare(['audit', 'verify', logs.site, '--cert', join(dir, 'bad.crt')]);
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/^E_AUDIT_CERT: /);
  });

  it('the flare binary exits 0 for a whole log and 1 for a tampered one', () => {
    const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    expect(spawnSync(process.execPath, [bin, 'audit', 'verify', logs.site, '--cert', cert]).status).toBe(0);
    expect(spawnSync(process.execPath, [bin, 'audit', 'verify', tampered('bin.jsonl', (l) => l.slice(0, 3)), '--cert', cert]).status).toBe(1);
  });
});

describe('flare audit verify --anchors / flare audit anchor', () => {
  // site-2 anchors its log at the server; an attacker later presents an older copy, or rolls back and resumes.
  const key = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const files = { site: join(dir, 'site-2.jsonl'), early: join(dir, 'site-2.early.jsonl'), server: join(dir, 'server-anchors.jsonl'), anchor: join(dir, 'site-2.anchor') };
  beforeAll(async () => {
    const siteKey = key();
    const serverLog = await AuditLog.open(files.server, { site: 'server', signer: key() });
    let log = await AuditLog.open(files.site, { site: 'site-2', signer: siteKey });
    log.append({ action: 'task_received', job: 'j2' });
    await log.close();
    writeFileSync(files.early, readFileSync(files.site));
    log = await AuditLog.open(files.site, { site: 'site-2', signer: siteKey });
    log.append({ action: 'result_sent', job: 'j2' });
    serverLog.recordAnchor(log.anchor());
    await log.close();
    await serverLog.close();
  });

  it('exit 0 when the log holds every checkpoint its peers recorded', async () => {
    const r = await flare(['audit', 'verify', files.site, '--anchors', files.server]);
    expect(r.code).toBe(0);
    expect(r.out[1]).toMatch(/^anchors: 1 of 1 recorded checkpoints of site-2 found as recorded \(latest: seq \d+, /);
  });

  it('exit 1 for an older copy that ends in a valid signed checkpoint (rolled back)', async () => {
    expect((await flare(['audit', 'verify', files.early])).code).toBe(0);
    const r = await flare(['audit', 'verify', files.early, '--anchors', files.server]);
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/: rolled back \(ends before a checkpoint its peers recorded\): /);
    expect(r.err.at(-1)).toMatch(/^E_AUDIT_TAMPERED: /);
  });

  it('anchor prints the latest checkpoint; an exported anchor file works as --anchors', async () => {
    const r = await flare(['audit', 'anchor', files.site]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out[0]!)).toMatchObject({ action: 'audit_checkpoint', site: 'site-2', cp: { final: true } });
    writeFileSync(files.anchor, `${r.out[0]}\n`);
    expect((await flare(['audit', 'verify', files.early, '--anchors', files.anchor])).code).toBe(1);
    expect((await flare(['audit', 'verify', files.site, '--anchors', files.anchor])).code).toBe(0);
  });

  it('anchor refuses a log that does not verify (E_AUDIT_TAMPERED)', async () => {
    const r = await flare(['audit', 'anchor', tampered('anchor-bad.jsonl', (l) => l.slice(1))]);
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/^E_AUDIT_TAMPERED: /);
  });
});

describe('flare audit trace', () => {
  it('follows ref links across the server\'s and the site\'s logs and prints the chain', async () => {
    const r = await flare(['audit', 'trace', filterId, logs.server, logs.site]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(5);
    expect(r.out[0]).toMatch(/^ {2}\S+ server task_sent job=j1: train round 0 \[/);
    expect(r.out.find((l) => l.startsWith('*'))).toContain(`site-1 filter_applied job=j1 [${filterId}]`);
    expect(r.out.at(-1)).toMatch(/server result_received user=site-1 job=j1/);
  });

  it('warns about logs that do not verify', async () => {
    const r = await flare(['audit', 'trace', taskId, logs.server, tampered('trace-bad.jsonl', (l) => l.slice(1))]);
    expect(r.code).toBe(0);
    expect(r.err[0]).toMatch(/^warning: .*does not verify \(line 1: deleted\)/);
  });

  it('exit 1 for an unknown event (E_AUDIT_TRACE)', async () => {
    const r = await flare(['audit', 'trace', 'no-such-event', logs.server]);
    expect(r.code).toBe(1);
    expect(r.err.at(-1)).toMatch(/^E_AUDIT_TRACE: /);
  });
});

describe('flare audit export --format flare', () => {
  it('writes FLARE\'s bracket format', async () => {
    const r = await flare(['audit', 'export', '--format', 'flare', logs.server]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(3);
    expect(r.out[1]).toMatch(new RegExp(`^\\[E:${taskId}\\]\\[T:\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{6}\\]\\[J:j1\\]\\[A:task_sent\\]train round 0$`));
    expect(r.out[2]).toMatch(/^\[E:[0-9a-f-]{36}\]\[R:[0-9a-f-]{36}\]\[T:[^\]]+\]\[U:site-1\]\[J:j1\]\[A:result_received\]$/);
  });

  it('--out writes a new file; it never overwrites one', async () => {
    const out = join(dir, 'server.audit.log');
    expect((await flare(['audit', 'export', '--format', 'flare', '--out', out, logs.site])).code).toBe(0);
    expect(readFileSync(out, 'utf8').split('\n')).toHaveLength(5);
    const again = await flare(['audit', 'export', '--format', 'flare', '--out', out, logs.site]);
    expect(again.code).toBe(1);
    expect(again.err[0]).toMatch(/^E_AUDIT_FILE: /);
  });

  it('a format other than flare is a usage error (exit 2)', async () => {
    expect((await flare(['audit', 'export', '--format', 'csv', logs.site])).code).toBe(2);
    expect((await flare(['audit', 'export', logs.site])).code).toBe(2);
  });
});
