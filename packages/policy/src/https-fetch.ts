import { request } from 'node:https';

/** Largest JWKS document accepted (real ones are a few KiB). */
const MAX_JWKS_BYTES = 256 * 1024;

/**
 * A fetch for jose's remote JWKS over node:https, so a site can trust a private CA (KeyCloak inside a
 * hospital network) without touching the process-wide trust store. No redirects; the body is bounded.
 */
export function httpsFetch(ca: string | readonly string[] | undefined) {
  return (url: string, options: { headers: Headers; signal: AbortSignal }): Promise<Response> =>
    new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'GET',
          headers: Object.fromEntries(options.headers),
          signal: options.signal,
          ...(ca === undefined ? {} : { ca: typeof ca === 'string' ? ca : [...ca] }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_JWKS_BYTES) {
              res.destroy(new Error(`JWKS response larger than ${MAX_JWKS_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', reject);
          res.on('end', () => {
            const headers = new Headers();
            const type = res.headers['content-type'];
            if (type !== undefined) headers.set('content-type', type);
            resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 500, headers }));
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
}
