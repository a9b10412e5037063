import { expectFlareCodeAsync } from '@flare/core/testing';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateHeKeys,
  HE_CLIENT_CONTEXT_FILE,
  HE_SERVER_CONTEXT_FILE,
  heAggregatorFromKit,
  heEncrypt,
  loadHeContextFromKit,
  type HeContext,
} from '../src/index.js';
import { filterContext, smallModel } from './helpers.js';

let dir: string;
let client: HeContext;
let server: HeContext;

async function kit(name: string, files: Record<string, Uint8Array>): Promise<string> {
  const root = join(dir, name);
  await mkdir(join(root, 'startup'), { recursive: true });
  for (const [rel, bytes] of Object.entries(files)) await writeFile(join(root, rel), bytes);
  return root;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flare-he-kit-'));
  ({ client, server } = await generateHeKeys());
});
afterAll(async () => {
  client.dispose();
  server.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('HE contexts in startup kits', () => {
  it('loads the client and server contexts of their kits', async () => {
    const site = await kit('site-1', { [HE_CLIENT_CONTEXT_FILE]: client.serialize() });
    const srv = await kit('server', { [HE_SERVER_CONTEXT_FILE]: server.serialize() });
    const c = await loadHeContextFromKit(site, 'client');
    const s = await loadHeContextFromKit(srv, 'server');
    expect([c.hasSecretKey, s.hasSecretKey, c.id === s.id]).toEqual([true, false, true]);
    c.dispose();
    s.dispose();
  });

  it('refuses a kit without its context file (E_HE_KIT_MISSING)', async () => {
    const empty = await kit('empty', {});
    await expectFlareCodeAsync(() => loadHeContextFromKit(empty, 'client'), 'E_HE_KIT_MISSING');
    await expectFlareCodeAsync(() => heAggregatorFromKit(empty), 'E_HE_KIT_MISSING');
    const unreadable = await kit('unreadable', { [HE_SERVER_CONTEXT_FILE]: server.serialize() });
    await chmod(join(unreadable, HE_SERVER_CONTEXT_FILE), 0o000);
    if (process.getuid?.() !== 0) await expectFlareCodeAsync(() => loadHeContextFromKit(unreadable, 'server'), 'E_HE_KIT_MISSING');
  });

  it('refuses a server kit whose context holds the secret key (E_HE_SECRET_KEY_PRESENT)', async () => {
    const leaked = await kit('leaked', { [HE_SERVER_CONTEXT_FILE]: client.serialize() });
    await expectFlareCodeAsync(() => loadHeContextFromKit(leaked, 'server'), 'E_HE_SECRET_KEY_PRESENT');
    await expectFlareCodeAsync(() => heAggregatorFromKit(leaked), 'E_HE_SECRET_KEY_PRESENT');
  });

  it('refuses a client kit whose context has no secret key (E_HE_NO_SECRET_KEY)', async () => {
    const wrong = await kit('wrong', { [HE_CLIENT_CONTEXT_FILE]: server.serialize() });
    await expectFlareCodeAsync(() => loadHeContextFromKit(wrong, 'client'), 'E_HE_NO_SECRET_KEY');
  });

  it('builds the server aggregator from the server kit and disposes its context with it', async () => {
    const srv = await kit('server2', { [HE_SERVER_CONTEXT_FILE]: server.serialize() });
    const agg = await heAggregatorFromKit(srv);
    agg.accept(await heEncrypt({ context: client }).apply(smallModel(1), filterContext()), { from: 'site-1' });
    expect(agg.result().meta['flare.he']).toMatchObject({ aggregate: { clients: 1 } });
    agg.dispose();
    agg.dispose();
    expect(() => agg.result()).toThrow(TypeError);
  });
});
