import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AttestError, parseStrictJson, writeFileAtomic } from '@flare/core';
import { z } from 'zod';
import { parseCrl } from './crl.js';

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

/** What the injected `fetch` of {@link CachingFetcherOptions} returns: the parts of a WHATWG Response used here. */
export interface FetchResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: { forEach(cb: (value: string, key: string) => void): void };
  /** The body as a stream: read chunk by chunk, so an oversized body is cut off, never buffered whole. */
  readonly body?: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | null;
  /** Used only when there is no `body` stream (a test double); the size limit then applies after reading. */
  arrayBuffer?(): Promise<ArrayBuffer>;
}

/** Options of {@link createCachingFetcher}. */
export interface CachingFetcherOptions {
  /** A folder where responses are kept by URL hash; without it, responses are cached in memory only. */
  readonly cacheDir?: string;
  /** Hosts that may be contacted (default: the three vendor services). */
  readonly allowedHosts?: readonly string[];
  /** Per-request timeout in milliseconds (default 15 000). */
  readonly timeoutMs?: number;
  /** Largest accepted body in bytes (default 4 MiB), enforced while the body arrives. */
  readonly maxBytes?: number;
  /**
   * Longest time a response is used before it is fetched again, in milliseconds (default 24 hours). A
   * response expires earlier when the document says so (a CRL's nextUpdate, Intel TCB info's or QE
   * identity's nextUpdate) or its HTTP headers do (Cache-Control max-age or no-store, Expires).
   */
  readonly maxAgeMs?: number;
  /** The clock (default: `() => new Date()`); tests inject one. */
  readonly now?: () => Date;
  /** The fetch implementation (default globalThis.fetch); tests inject one. */
  readonly fetch?: (url: string, init: { signal: AbortSignal; method?: string; body?: Uint8Array; headers?: Record<string, string> }) => Promise<FetchResponse>;
}

/** The vendor services this package may contact. */
export const VENDOR_HOSTS: readonly string[] = ['kdsintf.amd.com', 'api.trustedservices.intel.com', 'certificates.trustedservices.intel.com', 'rim.attestation.nvidia.com', 'ocsp.ndis.nvidia.com'];

const DEFAULT_MAX_AGE_MS = 24 * 3600_000;

/** A cached response and until when it may be used. */
interface Entry {
  readonly doc: FetchedDocument;
  readonly expiresAt: number;
}

const metaSchema = z.strictObject({
  format: z.literal('flare-ts-fetch-cache/1'),
  url: z.string().max(4096),
  fetchedAt: z.iso.datetime(),
  expiresAt: z.iso.datetime(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  headers: z.record(z.string(), z.string().max(65536)),
});

/** The expiry a document states about itself: a CRL's nextUpdate, or Intel collateral's nextUpdate. */
function documentExpiry(body: Uint8Array): number | undefined {
  if (body[0] === 0x30) {
    try {
      return parseCrl(body).nextUpdate?.getTime();
    } catch {
      return undefined; // a certificate or another DER document: no expiry of its own here
    }
  }
  if (body[0] === 0x7b /* { */) {
    try {
      const json = parseStrictJson(Buffer.from(body).toString('utf8'), { maxDepth: 64 }) as Record<string, { nextUpdate?: unknown } | undefined>;
      const next = json['tcbInfo']?.nextUpdate ?? json['enclaveIdentity']?.nextUpdate;
      const t = typeof next === 'string' ? Date.parse(next) : NaN;
      return Number.isFinite(t) ? t : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** RFC 9111 5.2.2, 5.3: the freshness the server grants (no-store/no-cache: none; max-age; Expires). */
function headerExpiry(headers: Readonly<Record<string, string>>, fetchedAt: number): number | undefined {
  const cc = headers['cache-control']?.toLowerCase();
  if (cc !== undefined) {
    if (/(^|,)\s*(no-store|no-cache)\s*(,|$)/.test(cc)) return fetchedAt;
    const m = /(^|,)\s*max-age\s*=\s*"?(\d{1,10})"?\s*(,|$)/.exec(cc);
    if (m) return fetchedAt + Number(m[2]) * 1000;
  }
  const expires = headers['expires'];
  if (expires !== undefined) {
    const t = Date.parse(expires);
    return Number.isFinite(t) ? t : fetchedAt; // an invalid Expires means already expired (RFC 9111 5.3)
  }
  return undefined;
}

async function readLimited(res: FetchResponse, maxBytes: number): Promise<Uint8Array> {
  const stream = res.body;
  if (stream === undefined || stream === null) {
    if (res.arrayBuffer === undefined) throw new Error('the response has no body');
    const buf = await res.arrayBuffer();
    if (buf.byteLength > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
    return new Uint8Array(buf);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const iterable: AsyncIterable<Uint8Array> = Symbol.asyncIterator in stream ? stream : readerIterable(stream);
  for await (const chunk of iterable) {
    total += chunk.byteLength;
    // Stop reading (the iterator's return() cancels the stream) before holding more than the limit.
    if (total > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

async function* readerIterable(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/**
 * A fetcher that only contacts the vendor services over https, bounds time and size (while the body
 * streams), and caches each successful response (in memory, and in `cacheDir` when given) until it expires:
 * at the document's own nextUpdate (CRLs, Intel TCB info and QE identity), at what its HTTP headers allow, and
 * after `maxAgeMs` at most. An expired entry is fetched again, so new revocations reach the verifier.
 *
 * @example
 * ```ts
 * const fetcher = createCachingFetcher({ cacheDir: '/var/cache/flare-attest' });
 * await verifyEvidence({ type: 'snp', evidence, at: new Date(), fetcher });
 * ```
 */
export function createCachingFetcher(options: CachingFetcherOptions = {}): CollateralFetcher {
  const memory = new Map<string, Entry>();
  const hosts = new Set(options.allowedHosts ?? VENDOR_HOSTS);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const maxBytes = options.maxBytes ?? 4 * 2 ** 20;
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  if (!(maxAgeMs >= 0)) throw new RangeError(`"maxAgeMs" expected a non-negative number, got ${maxAgeMs}`);
  const now = (): number => (options.now?.() ?? new Date()).getTime();
  const doFetch =
    options.fetch ??
    ((url: string, init: { signal: AbortSignal; method?: string; body?: Uint8Array; headers?: Record<string, string> }): Promise<FetchResponse> =>
      fetch(url, { signal: init.signal, method: init.method ?? 'GET', ...(init.headers ? { headers: init.headers } : {}), ...(init.body ? { body: Buffer.from(init.body) } : {}) }));
  const check = (url: string): URL => {
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
      const headers: Record<string, string> = Object.create(null) as Record<string, string>;
      res.headers.forEach((value, name) => {
        headers[name.toLowerCase()] = value;
      });
      const declared = Number(headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) throw new Error(`response of ${declared} bytes is larger than ${maxBytes}`);
      return { body: await readLimited(res, maxBytes), headers };
    } catch (cause) {
      throw new AttestError('E_ATTEST_FETCH', `fetching ${parsed.hostname}${parsed.pathname} failed`, { cause });
    }
  };
  const expiryOf = (doc: FetchedDocument, fetchedAt: number): number =>
    Math.min(fetchedAt + maxAgeMs, documentExpiry(doc.body) ?? Infinity, headerExpiry(doc.headers, fetchedAt) ?? Infinity);

  const fromDisk = async (url: string, key: string): Promise<Entry | undefined> => {
    if (options.cacheDir === undefined) return undefined;
    try {
      const meta = metaSchema.parse(parseStrictJson(await readFile(join(options.cacheDir, `${key}.meta.json`), 'utf8'), { maxDepth: 3 }));
      const body = new Uint8Array(await readFile(join(options.cacheDir, key)));
      // A torn or foreign pair (another URL, a body from another write) is not a cache hit.
      if (meta.url !== url || createHash('sha256').update(body).digest('hex') !== meta.sha256) return undefined;
      return { doc: { body, headers: meta.headers }, expiresAt: Date.parse(meta.expiresAt) };
    } catch {
      return undefined; // not cached yet, or from an older cache format: fetch
    }
  };
  const toDisk = async (url: string, key: string, doc: FetchedDocument, fetchedAt: number, expiresAt: number): Promise<void> => {
    if (options.cacheDir === undefined) return;
    await mkdir(options.cacheDir, { recursive: true });
    const meta = {
      format: 'flare-ts-fetch-cache/1',
      url,
      fetchedAt: new Date(fetchedAt).toISOString(),
      expiresAt: new Date(Math.min(expiresAt, 8.64e15)).toISOString(),
      sha256: createHash('sha256').update(doc.body).digest('hex'),
      headers: doc.headers,
    };
    await writeFileAtomic(join(options.cacheDir, key), doc.body, { mode: 0o644 });
    await writeFileAtomic(join(options.cacheDir, `${key}.meta.json`), JSON.stringify(meta), { mode: 0o644 });
  };

  return {
    async post(url: string, body: Uint8Array, contentType: string): Promise<FetchedDocument> {
      return request(url, check(url), { method: 'POST', body, headers: { 'content-type': contentType } });
    },
    async get(url: string): Promise<FetchedDocument> {
      const parsed = check(url);
      const at = now();
      const hit = memory.get(url);
      if (hit !== undefined && at < hit.expiresAt) return hit.doc;
      const key = createHash('sha256').update(url).digest('hex');
      const cached = await fromDisk(url, key);
      if (cached !== undefined && at < cached.expiresAt) {
        memory.set(url, cached);
        return cached.doc;
      }
      const doc = await request(url, parsed, {});
      const fetchedAt = now();
      const expiresAt = expiryOf(doc, fetchedAt);
      memory.set(url, { doc, expiresAt });
      await toDisk(url, key, doc, fetchedAt, expiresAt);
      return doc;
    },
  };
}
