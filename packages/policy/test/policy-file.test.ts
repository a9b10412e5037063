import { expectFlareCodeAsync } from '@flare/core/testing';
import type { AuditEventInput } from '@flare/core';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { authorize, parseAuthorizationPolicy, PolicyFile, type AuthorizationPolicy, type PolicyReloadResult } from '../src/index.js';
import { scratch } from './helpers.js';

const v1 = JSON.stringify({ format_version: '1.0', permissions: { lead: { submit_job: 'any' } } });
const v2 = JSON.stringify({ format_version: '1.0', permissions: { lead: { submit_job: 'none' } } });
const broken = '{"format_version": "1.0", "permissions": {"lead": {"submit_job": "sometimes"}}}';
const lead = { name: 'a@a.org', org: 'a', role: 'lead' };
const canSubmit = (p: AuthorizationPolicy) => authorize(p, { right: 'submit_job', user: lead, siteOrg: 'a' }).allowed;

let tmp: ReturnType<typeof scratch>;
let events: AuditEventInput[];
let results: PolicyReloadResult[];
let waiters: Array<(r: PolicyReloadResult) => void>;
beforeEach(() => {
  tmp = scratch();
  events = [];
  results = [];
  waiters = [];
});
afterEach(() => tmp.cleanup());

const open = () =>
  PolicyFile.load<AuthorizationPolicy>({
    name: 'authorization',
    paths: [join(tmp.dir, 'authorization.json'), join(tmp.dir, 'authorization.json.default')],
    parse: (b) => parseAuthorizationPolicy(b),
    audit: (e) => (events.push(e), undefined),
    onReload: (r) => {
      results.push(r);
      for (const w of waiters.splice(0)) w(r);
    },
  });
/** Waits for the next reload attempt (from the watcher), at most 60 s. */
const nextReload = (predicate: (r: PolicyReloadResult) => boolean = () => true) =>
  new Promise<PolicyReloadResult>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reload within 60 s')), 60_000);
    const wait = (r: PolicyReloadResult) => (predicate(r) ? (clearTimeout(timer), resolve(r)) : waiters.push(wait));
    waiters.push(wait);
  });

describe('PolicyFile', () => {
  it('loads local/X.json over X.json.default and audits the load', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json.default'), v1);
    writeFileSync(join(tmp.dir, 'authorization.json'), v2);
    const f = await open();
    expect(canSubmit(f.current)).toBe(false);
    expect(f.source.path).toBe(join(tmp.dir, 'authorization.json'));
    expect(f.source.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(events[0]).toMatchObject({ action: 'policy_loaded', data: { policy: 'authorization', path: join(tmp.dir, 'authorization.json') } });
  });

  it('refuses to start without a policy or with a broken one', async () => {
    await expectFlareCodeAsync(() => open(), 'E_POLICY_FILE');
    writeFileSync(join(tmp.dir, 'authorization.json'), broken);
    await expectFlareCodeAsync(() => open(), 'E_POLICY_AUTHZ_PARSE');
  });

  it('reload replaces the policy with a valid new file and audits the change', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json'), v1);
    const f = await open();
    expect(await f.reload()).toMatchObject({ ok: true, changed: false });
    writeFileSync(join(tmp.dir, 'authorization.json'), v2);
    const r = await f.reload();
    expect(r).toMatchObject({ ok: true, changed: true });
    expect(canSubmit(f.current)).toBe(false);
    expect(events.at(-1)).toMatchObject({ action: 'policy_changed', data: { policy: 'authorization', sha256: r.sha256 } });
    expect((events.at(-1)!.data as Record<string, unknown>)['previousSha256']).not.toBe(r.sha256);
  });

  it('a broken file keeps the old policy in force, reports why and audits the refusal', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json'), v1);
    const f = await open();
    const before = f.source.sha256;
    writeFileSync(join(tmp.dir, 'authorization.json'), broken);
    const r = await f.reload();
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('E_POLICY_AUTHZ_PARSE');
    expect(r.error?.message).toMatch(/role 'lead', right 'submit_job', expression "sometimes"/);
    expect(canSubmit(f.current)).toBe(true);
    expect(f.source.sha256).toBe(before);
    expect(events.at(-1)).toMatchObject({ action: 'policy_reload_failed', data: { policy: 'authorization', code: 'E_POLICY_AUTHZ_PARSE' } });
  });

  it('removing the local override falls back to the default; removing both keeps the old policy', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json.default'), v1);
    writeFileSync(join(tmp.dir, 'authorization.json'), v2);
    const f = await open();
    rmSync(join(tmp.dir, 'authorization.json'));
    expect(await f.reload()).toMatchObject({ ok: true, changed: true, path: join(tmp.dir, 'authorization.json.default') });
    expect(canSubmit(f.current)).toBe(true);
    rmSync(join(tmp.dir, 'authorization.json.default'));
    expect((await f.reload()).error?.code).toBe('E_POLICY_FILE');
    expect(canSubmit(f.current)).toBe(true);
  });

  it('watching a folder that does not exist warns and leaves explicit reload working', async () => {
    const warnings: string[] = [];
    const f = await PolicyFile.load<string>({
      name: 'privacy',
      paths: [join(tmp.dir, 'missing-dir', 'privacy.json')],
      parse: () => 'file',
      fallback: () => 'none',
      logger: { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} },
    });
    f.watch();
    expect(warnings[0]).toMatch(/cannot watch/);
    expect(await f.reload()).toMatchObject({ ok: true, changed: false });
    f.close();
  });

  it('uses a fallback when no file exists (e.g. no privacy.json)', async () => {
    const f = await PolicyFile.load<string>({ name: 'privacy', paths: [join(tmp.dir, 'privacy.json')], parse: () => 'file', fallback: () => 'none' });
    expect(f.current).toBe('none');
    expect(f.source).toEqual({ path: undefined, sha256: undefined });
    expect(await f.reload()).toMatchObject({ ok: true, changed: false });
    writeFileSync(join(tmp.dir, 'privacy.json'), '{}');
    expect(await f.reload()).toMatchObject({ ok: true, changed: true });
    expect(f.current).toBe('file');
  });

  it('refuses a folder or an oversized file in place of a policy (E_POLICY_FILE)', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json.default'), v1);
    const f = await open();
    writeFileSync(join(tmp.dir, 'authorization.json'), ' '.repeat((1 << 20) + 1));
    expect((await f.reload()).error?.code).toBe('E_POLICY_FILE');
    rmSync(join(tmp.dir, 'authorization.json'));
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(tmp.dir, 'authorization.json'));
    expect((await f.reload()).error?.code).toBe('E_POLICY_FILE');
  });

  it('watches: an edited file is reloaded without restart, also when an editor replaces it by renaming', async () => {
    writeFileSync(join(tmp.dir, 'authorization.json'), v1);
    const f = await open();
    f.watch({ debounceMs: 20 });
    let changed = nextReload((r) => r.changed);
    writeFileSync(join(tmp.dir, 'authorization.json'), v2);
    await changed;
    expect(canSubmit(f.current)).toBe(false);
    changed = nextReload((r) => r.changed);
    writeFileSync(join(tmp.dir, 'authorization.json.tmp'), v1);
    renameSync(join(tmp.dir, 'authorization.json.tmp'), join(tmp.dir, 'authorization.json'));
    await changed;
    expect(canSubmit(f.current)).toBe(true);
    const refused = nextReload((r) => !r.ok);
    writeFileSync(join(tmp.dir, 'authorization.json'), broken);
    expect((await refused).error?.code).toBe('E_POLICY_AUTHZ_PARSE');
    expect(canSubmit(f.current)).toBe(true);
    f.close();
  });
});
