import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError } from '@flare/core';

/**
 * Fetches vendor certificates and collateral (AMD KDS, Intel PCS, NVIDIA RIM service) when verification is
 * allowed to use the network. Verifiers call it only when a needed certificate was not supplied; offline
 * verification with supplied files never needs one.
 */
export interface CollateralFetcher {
  /** A GET of `url`: body and lowercase response headers, or a rejection with AttestError E_ATTEST_FETCH. */
  get(url: string): Promise<FetchedDocument>;
  /** A POST of `body` (used for OCSP; never cached, since each request carries a fresh nonce). */
  post?(url: string, body: Uint8Array, contentType: string): Promise<FetchedDocument>;
}

/** A fetched vendor document. Intel PCS puts issuer chains in headers, so they are kept. */
export interface FetchedDocument {
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

/** Options of {@link createCachingFetcher}. */
export interface CachingFetcherOptions {
  /** A folder where responses are kept by URL hash; without it, responses are cached in memory only. */
  readonly cacheDir?: string;
  /** Hosts that may be contacted (default: the three vendor services). */
  readonly allowedHosts?: readonly string[];
  /** Per-request timeout in milliseconds (default 15 000). */
  readonly timeoutMs?: number;
  /** Largest accepted body in bytes (default 4 MiB). */
  readonly maxBytes?: number;
  /** The fetch implementation (default globalThis.fetch); tests inject one. */
  readonly fetch?: (url: string, init: { signal: AbortSignal; method?: string; body?: Uint8Array; headers?: Record<string, string> }) => Promise<{ ok: boolean; status: number; headers: { forEach(cb: (value: string, key: string) => void): void }; arrayBuffer(): Promise<ArrayBuffer> }>;
}

/** The vendor services this package may contact. */
export const VENDOR_HOSTS: readonly string[] = ['kdsintf.amd.com', 'api.trustedservices.intel.com', 'certificates.trustedservices.intel.com', 'rim.attestation.nvidia.com', 'ocsp.ndis.nvidia.com'];

/**
 * A fetcher that only contacts the vendor services over https, bounds time and size, and caches every
 * successful response (in memory, and in `cacheDir` when given) so a warm verifier does no network I/O.
 *
 * @example
 * ```ts
 * const fetcher = createCachingFetcher({ cacheDir: '/var/cache/flare-attest' });
 * await verifyEvidence({ type: 'snp', evidence, at: new Date(), fetcher });
 * ```
 */
export function createCachingFetcher(options: CachingFetcherOptions = {}): CollateralFetcher {
  const memory = new Map<string, FetchedDocument>();
  const hosts = new Set(options.allowedHosts ?? VENDOR_HOSTS);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const maxBytes = options.maxBytes ?? 4 * 2 ** 20;
  const doFetch = options.fetch ?? ((url: string, init: { signal: AbortSignal; method?: string; body?: Uint8Array; headers?: Record<string, string> }) =>
      fetch(url, { signal: init.signal, method: init.method ?? 'GET', ...(init.headers ? { headers: init.headers } : {}), ...(init.body ? { body: Buffer.from(init.body) } : {}) }));
  const check = (url: string) => {
    const parsed = new URL(url);
    if (parsed.protocol !== 'https:' || !hosts.has(parsed.hostname)) {
      throw new AttestError('E_ATTEST_FETCH', `refusing to fetch from ${parsed.protocol}//${parsed.hostname}: not an allowed vendor service`);
    }
    return parsed;
  };
  const request = async (url: string, parsed: URL, init: { method?: string; body?: Uint8Array; headers?: Record<string, string> }): Promise<FetchedDocument> => {
    try {
      const res = await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const buf = await res.arrayBuffer();
      if (buf.byteLength > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
      const headers: Record<string, string> = Object.create(null) as Record<string, string>;
      res.headers.forEach((value, name) => {
        headers[name.toLowerCase()] = value;
      });
      return { body: new Uint8Array(buf), headers };
    } catch (cause) {
      throw new AttestError('E_ATTEST_FETCH', `fetching ${parsed.hostname}${parsed.pathname} failed`, { cause });
    }
  };
  return {
    async post(url: string, body: Uint8Array, contentType: string): Promise<FetchedDocument> {
      return request(url, check(url), { method: 'POST', body, headers: { 'content-type': contentType } });
    },
    async get(url: string): Promise<FetchedDocument> {
      const parsed = check(url);
      const hit = memory.get(url);
      if (hit !== undefined) return hit;
      const key = createHash('sha256').update(url).digest('hex');
      if (options.cacheDir !== undefined) {
        try {
          const headers = JSON.parse(await readFile(join(options.cacheDir, `${key}.headers.json`), 'utf8')) as Record<string, string>;
          const cached: FetchedDocument = { body: new Uint8Array(await readFile(join(options.cacheDir, key))), headers };
          memory.set(url, cached);
          return cached;
        } catch {
          // not cached yet
        }
      }
      const doc = await request(url, parsed, {});
      memory.set(url, doc);
      if (options.cacheDir !== undefined) {
        await mkdir(options.cacheDir, { recursive: true });
        const tmp = join(options.cacheDir, `${key}.${process.pid}.tmp`);
        await writeFile(`${tmp}.h`, JSON.stringify(doc.headers));
        await rename(`${tmp}.h`, join(options.cacheDir, `${key}.headers.json`));
        await writeFile(tmp, doc.body);
        await rename(tmp, join(options.cacheDir, key));
      }
      return doc;
    },
  };
}
