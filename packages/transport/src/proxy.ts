import { request } from 'node:http';
import { isIPv6, type Socket } from 'node:net';
import { TransportError } from '@flare/core';

/** An HTTP proxy that supports CONNECT (RFC 9110 section 9.3.6), e.g. a corporate egress proxy. */
export interface HttpProxy {
  readonly host: string;
  readonly port: number;
  /** Extra request headers, e.g. `Proxy-Authorization`. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Formats host:port for an authority (RFC 3986 section 3.2.2: IPv6 literals in brackets). */
export function authority(host: string, port: number): string {
  return `${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

/**
 * Opens a TCP tunnel to host:port through an HTTP CONNECT proxy and returns the raw socket (TLS, if any,
 * runs end-to-end inside it: the proxy sees only ciphertext).
 *
 * @throws TransportError E_TRANSPORT_PROXY when the proxy is unreachable, answers other than 2xx, or times out.
 */
export function connectTunnel(proxy: HttpProxy, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const target = authority(host, port);
  return new Promise((resolve, reject) => {
    const req = request({ host: proxy.host, port: proxy.port, method: 'CONNECT', path: target, headers: { host: target, ...proxy.headers }, agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new TransportError('E_TRANSPORT_PROXY', `the proxy did not open a tunnel to ${target} within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
    req.once('connect', (res, socket, head) => {
      clearTimeout(timer);
      if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode > 299) {
        socket.destroy();
        return reject(new TransportError('E_TRANSPORT_PROXY', `the proxy answered ${res.statusCode ?? '?'} to CONNECT ${target}`));
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('error', (cause) => {
      clearTimeout(timer);
      reject(new TransportError('E_TRANSPORT_PROXY', `cannot reach the proxy at ${authority(proxy.host, proxy.port)}`, { cause }));
    });
    req.end();
  });
}
