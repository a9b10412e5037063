import type { KeyObject } from 'node:crypto';
import { TransportError } from '@flare/core';

/** Connection security of an endpoint, FLARE's `connection_security`. */
export type ConnectionSecurity = 'clear' | 'tls' | 'mtls';

/** A private key as a KeyObject (what a kit holds) or PEM text. */
export type PrivateKeyInput = KeyObject | string;

/** PEM text of a private key for node:tls (which does not take KeyObjects on Node 20). */
export function keyPem(key: PrivateKeyInput): string {
  return typeof key === 'string' ? key : (key.export({ format: 'pem', type: 'pkcs8' }) as string);
}

// RFC 8996 deprecates TLS 1.0 and 1.1; FLARE's minimum is 1.2. Node negotiates 1.3 when both sides have it.
export const MIN_TLS = 'TLSv1.2';

export function requireTls<T>(security: ConnectionSecurity, value: T | undefined, what: string): T {
  if (value === undefined) throw new TransportError('E_TRANSPORT_CONFIG', `connection security "${security}" needs ${what}`);
  return value;
}
