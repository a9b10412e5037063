import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCachingFetcher } from '../src/index.js';

function fakeFetch(body = 'hello', status = 200) {
  const calls: string[] = [];
  const fetch = async (url: string) => {
    calls.push(url);
    return { ok: status === 200, status, headers: new Map([['TCB-Info-Issuer-Chain', 'abc']]), arrayBuffer: async () => new Uint8Array(Buffer.from(body)).buffer };
  };
  return { fetch, calls };
}

describe('createCachingFetcher', () => {
  it('fetches once and then serves from memory, keeping lowercase headers', async () => {
    const { fetch, calls } = fakeFetch();
    const f = createCachingFetcher({ fetch });
    const a = await f.get('https://kdsintf.amd.com/vcek/v1/Milan/cert_chain');
    const b = await f.get('https://kdsintf.amd.com/vcek/v1/Milan/cert_chain');
    expect(Buffer.from(a.body).toString()).toBe('hello');
    expect(a.headers['tcb-info-issuer-chain']).toBe('abc');
    expect(b).toBe(a);
    expect(calls).toHaveLength(1);
  });

  it('persists to the cache folder, so another fetcher needs no network', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flare-fetch-'));
    await createCachingFetcher({ cacheDir: dir, fetch: fakeFetch('cached').fetch }).get('https://rim.attestation.nvidia.com/v1/rim/X');
    expect(readdirSync(dir)).toHaveLength(2);
    const { fetch, calls } = fakeFetch('other');
    const again = await createCachingFetcher({ cacheDir: dir, fetch }).get('https://rim.attestation.nvidia.com/v1/rim/X');
    expect(Buffer.from(again.body).toString()).toBe('cached');
    expect(calls).toHaveLength(0);
  });

  it('refuses hosts other than the vendor services and plain http (E_ATTEST_FETCH)', async () => {
    const f = createCachingFetcher({ fetch: fakeFetch().fetch });
    await expect(f.get('https://example.com/x')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
    await expect(f.get('http://kdsintf.amd.com/x')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
  });

  it('reports HTTP errors and oversized bodies (E_ATTEST_FETCH)', async () => {
    await expect(createCachingFetcher({ fetch: fakeFetch('x', 404).fetch }).get('https://kdsintf.amd.com/a')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
    await expect(createCachingFetcher({ fetch: fakeFetch('x'.repeat(100)).fetch, maxBytes: 10 }).get('https://kdsintf.amd.com/a')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
  });
});
