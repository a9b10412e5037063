import { expectFlareCodeAsync } from '@flare/core/testing';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateHeKeys,
  HE_CLIENT_CONTEXT_FILE,
  heDecryptFactory,
  heEncryptFactory,
  heModelStats,
  type HeContext,
} from '../src/index.js';
import { filterContext, maxAbsDiff, smallModel } from './helpers.js';

let dir: string;
let client: HeContext;
let server: HeContext;
const env = { site: 'site-1', workspace: '/nonexistent' };
const ctx = filterContext();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-he-factories-'));
  ({ client, server } = await generateHeKeys());
  await mkdir(join(dir, 'startup'));
  await writeFile(join(dir, HE_CLIENT_CONTEXT_FILE), client.serialize());
});
afterAll(async () => {
  client.dispose();
  server.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('he-encrypt / he-decrypt filter factories', () => {
  it('are registered under FLARE-TS names', () => {
    expect(heEncryptFactory({ context: client }).name).toBe('he-encrypt');
    expect(heDecryptFactory({ context: client }).name).toBe('he-decrypt');
  });

  it('validate args at load: names, a regex string, FLARE encrypt_layers; refuse typos, both forms, bad regexes', () => {
    const args = heEncryptFactory({ context: client }).args;
    expect(args.parse({})).toEqual({});
    expect(args.parse({ tensors: ['fc.weight'] })).toEqual({ tensors: ['fc.weight'] });
    expect(args.parse({ encrypt_layers: '^fc' })).toEqual({ encrypt_layers: '^fc' });
    expect(args.parse({ workers: 2 })).toEqual({ workers: 2 });
    expect(args.safeParse({ workers: 99 }).success).toBe(false);
    expect(args.safeParse({ tensor: ['x'] }).success).toBe(false);
    expect(args.safeParse({ tensors: 'a', encrypt_layers: 'b' }).success).toBe(false);
    expect(args.safeParse({ tensors: '(' }).success).toBe(false);
    expect(args.safeParse({ tensors: [] }).success).toBe(false);
    expect(args.safeParse({ tensors: 'x'.repeat(1025) }).success).toBe(false);
    // Job patterns outside core's linear-time subset are refused at load, with the code in the reason.
    for (const tensors of ['(fc)\\1', '^(?!fc)', '(?<=a)b']) {
      const r = args.safeParse({ tensors });
      expect(r.success).toBe(false);
      expect(JSON.stringify(r.error?.issues)).toContain('E_MODEL_NAME_PATTERN');
    }
    const dargs = heDecryptFactory({ context: client }).args;
    expect(dargs.parse({ require_encrypted: true })).toEqual({ require_encrypted: true });
    expect(dargs.safeParse({ require: true }).success).toBe(false);
  });

  it('load the site context from its kit on first use and round-trip a model', async () => {
    const source = { kitDir: dir };
    const enc = heEncryptFactory(source);
    const dec = heDecryptFactory(source);
    const m = smallModel(3);
    const sealed = await enc.create(enc.args.parse({ encrypt_layers: '^fc\\.' }), env).apply(m, ctx);
    expect(heModelStats(sealed)).toMatchObject({ encryptedValues: 5050, plainTensors: 1 });
    const back = await dec.create(dec.args.parse({}), env).apply(sealed, ctx);
    expect(maxAbsDiff(back.params.get('fc.weight')!.data as Float32Array, m.params.get('fc.weight')!.data as Float32Array)).toBeLessThan(1e-6);
    const required = dec.create(dec.args.parse({ require_encrypted: true }), env);
    await expectFlareCodeAsync(() => required.apply(m, ctx), 'E_HE_NOT_ENCRYPTED');
  });

  it('report a kit without a client context when the filter first runs (E_HE_KIT_MISSING), and retry later', async () => {
    const missing = join(dir, 'nowhere');
    const f = heEncryptFactory({ kitDir: missing });
    const filter = f.create({}, env);
    await expectFlareCodeAsync(() => filter.apply(smallModel(4), ctx), 'E_HE_KIT_MISSING');
    await mkdir(join(missing, 'startup'), { recursive: true });
    await writeFile(join(missing, HE_CLIENT_CONTEXT_FILE), client.serialize());
    expect(heModelStats(await filter.apply(smallModel(4), ctx))?.ciphertexts).toBe(2);
  });

  it('refuse a server context when the filter first runs (E_HE_NO_SECRET_KEY)', async () => {
    const f = heDecryptFactory({ context: server });
    await expectFlareCodeAsync(() => f.create({}, env).apply(smallModel(5), ctx), 'E_HE_NO_SECRET_KEY');
  });
});
