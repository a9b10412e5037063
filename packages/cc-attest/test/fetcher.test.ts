import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { derBitString, derInteger, derOidEncode, derSequence, derTimeEncode } from '@flare/core';
import { describe, expect, it } from 'vitest';
import { createCachingFetcher, type FetchResponse } from '../src/index.js';

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

  it('persists what it fetched for a restart, but not past its expiry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flare-fetch-'));
    let now = new Date('2026-05-01T00:00:00Z');
    const first = fakeFetch('v1');
    await createCachingFetcher({ cacheDir: dir, fetch: first.fetch, now: () => now, maxAgeMs: 3600_000 }).get('https://kdsintf.amd.com/vcek/v1/Milan/cert_chain');
    const second = fakeFetch('v2');
    const restarted = createCachingFetcher({ cacheDir: dir, fetch: second.fetch, now: () => now, maxAgeMs: 3600_000 });
    expect(Buffer.from((await restarted.get('https://kdsintf.amd.com/vcek/v1/Milan/cert_chain')).body).toString()).toBe('v1');
    expect(second.calls).toHaveLength(0);
    now = new Date('2026-05-01T01:00:01Z');
    const again = createCachingFetcher({ cacheDir: dir, fetch: second.fetch, now: () => now, maxAgeMs: 3600_000 });
    expect(Buffer.from((await again.get('https://kdsintf.amd.com/vcek/v1/Milan/cert_chain')).body).toString()).toBe('v2');
    expect(second.calls).toHaveLength(1);
  });
});

/** A DER CRL shape with the given nextUpdate (RFC 5280 5.1; the signature is not checked by the fetcher). */
function crlDer(nextUpdate: Date): Uint8Array {
  const alg = derSequence(derOidEncode('1.2.840.10045.4.3.3'));
  const tbs = derSequence(derInteger(1), alg, derSequence(), derTimeEncode(new Date('2026-04-01T00:00:00Z')), derTimeEncode(nextUpdate));
  return derSequence(tbs, alg, derBitString(new Uint8Array(8)));
}

/** A fetch that answers from `bodies` in turn, with headers. */
function sequenceFetch(bodies: Uint8Array[], headers: Record<string, string> = {}) {
  const calls: string[] = [];
  const fetch = async (url: string): Promise<FetchResponse> => {
    calls.push(url);
    const body = bodies[Math.min(calls.length - 1, bodies.length - 1)]!;
    return { ok: true, status: 200, headers: new Map(Object.entries(headers)), arrayBuffer: async () => Uint8Array.from(body).buffer };
  };
  return { fetch, calls };
}

describe('createCachingFetcher: entries expire (stale collateral is fetched again)', () => {
  const url = 'https://kdsintf.amd.com/vcek/v1/Milan/crl';
  it("refetches a CRL after its nextUpdate, in memory and on disk, even after a restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flare-fetch-'));
    const old = crlDer(new Date('2026-05-02T00:00:00Z'));
    const fresh = crlDer(new Date('2026-06-01T00:00:00Z'));
    let now = new Date('2026-05-01T00:00:00Z');
    const { fetch, calls } = sequenceFetch([old, fresh]);
    const f = createCachingFetcher({ cacheDir: dir, fetch, now: () => now });
    expect((await f.get(url)).body).toEqual(old);
    expect((await f.get(url)).body).toEqual(old);
    expect(calls).toHaveLength(1);
    now = new Date('2026-05-02T00:00:01Z'); // past the CRL's nextUpdate, well within the 24 h maximum age
    expect((await f.get(url)).body).toEqual(fresh);
    expect(calls).toHaveLength(2);
    // A restarted verifier reads the fresh CRL from disk, not the stale one.
    const other = sequenceFetch([old]);
    expect((await createCachingFetcher({ cacheDir: dir, fetch: other.fetch, now: () => now }).get(url)).body).toEqual(fresh);
    expect(other.calls).toHaveLength(0);
  });

  it("refetches Intel TCB info after its nextUpdate", async () => {
    const tcb = (next: string) => new TextEncoder().encode(JSON.stringify({ tcbInfo: { id: 'TDX', nextUpdate: next }, signature: 'ab' }));
    let now = new Date('2026-05-01T00:00:00Z');
    const { fetch, calls } = sequenceFetch([tcb('2026-05-01T12:00:00Z'), tcb('2026-06-01T00:00:00Z')]);
    const f = createCachingFetcher({ fetch, now: () => now });
    await f.get('https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00');
    now = new Date('2026-05-01T11:59:59Z');
    await f.get('https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00');
    expect(calls).toHaveLength(1);
    now = new Date('2026-05-01T12:00:00Z');
    await f.get('https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=00');
    expect(calls).toHaveLength(2);
  });

  it('honours Cache-Control max-age and no-store, and the maximum age', async () => {
    let now = new Date('2026-05-01T00:00:00Z');
    const body = new TextEncoder().encode('cert');
    const short = sequenceFetch([body], { 'Cache-Control': 'public, max-age=60' });
    const f = createCachingFetcher({ fetch: short.fetch, now: () => now });
    await f.get(url);
    now = new Date('2026-05-01T00:00:59Z');
    await f.get(url);
    expect(short.calls).toHaveLength(1);
    now = new Date('2026-05-01T00:01:00Z');
    await f.get(url);
    expect(short.calls).toHaveLength(2);
    const never = sequenceFetch([body], { 'cache-control': 'no-store' });
    const g = createCachingFetcher({ fetch: never.fetch, now: () => now });
    await g.get(url);
    await g.get(url);
    expect(never.calls).toHaveLength(2);
    const plain = sequenceFetch([body]);
    const h = createCachingFetcher({ fetch: plain.fetch, now: () => now, maxAgeMs: 1000 });
    await h.get(url);
    now = new Date(now.getTime() + 1000);
    await h.get(url);
    expect(plain.calls).toHaveLength(2);
  });
});

describe('createCachingFetcher: the size limit holds while the body streams', () => {
  it('stops reading an endless body at the limit (E_ATTEST_FETCH) without buffering it', async () => {
    let produced = 0;
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        produced += 64 * 1024;
        controller.enqueue(new Uint8Array(64 * 1024));
      },
      cancel() {
        cancelled = true;
      },
    });
    const fetch = async (): Promise<FetchResponse> => ({ ok: true, status: 200, headers: new Map(), body: endless });
    const f = createCachingFetcher({ fetch, maxBytes: 1024 * 1024 });
    await expect(f.get('https://kdsintf.amd.com/vcek/v1/Milan/crl')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
    expect(produced).toBeLessThanOrEqual(2 * 1024 * 1024); // a bounded amount read, then the stream was cancelled
    expect(cancelled).toBe(true);
  });

  it('refuses a declared Content-Length above the limit before reading (E_ATTEST_FETCH)', async () => {
    let read = false;
    const fetch = async (): Promise<FetchResponse> => ({
      ok: true,
      status: 200,
      headers: new Map([['Content-Length', String(1 << 30)]]),
      get body(): ReadableStream<Uint8Array> {
        read = true;
        return new ReadableStream<Uint8Array>();
      },
    });
    await expect(createCachingFetcher({ fetch }).get('https://kdsintf.amd.com/x')).rejects.toMatchObject({ code: 'E_ATTEST_FETCH' });
    expect(read).toBe(false);
  });

  it('reads a streamed body within the limit whole', async () => {
    const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const c of chunks) controller.enqueue(c);
        controller.close();
      },
    });
    const fetch = async (): Promise<FetchResponse> => ({ ok: true, status: 200, headers: new Map(), body });
    expect([...(await createCachingFetcher({ fetch }).get('https://kdsintf.amd.com/x')).body]).toEqual([1, 2, 3]);
  });
});
