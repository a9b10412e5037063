import type { FlareError, JsonValue } from '@flare/core';
import type { PayloadDigest } from './payload-digest.js';

/** A JSON object header. */
export type AuthHeader = { readonly [key: string]: JsonValue };

/**
 * What the session installs on a channel to seal outgoing and open incoming messages. The channel digests each
 * payload with `payloadDigest(length, sending)`, created when the message starts, in the order messages leave
 * or arrive, and passes the digest to `seal` / `open`.
 */
export interface AuthGuard {
  payloadDigest(length: number, sending: boolean): PayloadDigest;
  seal(header: AuthHeader, payloadLength: number, payloadDigest: Uint8Array): AuthHeader;
  open(header: AuthHeader, payloadLength: number, payloadDigest: Uint8Array, trailer: AuthHeader | undefined): boolean;
}

/**
 * The message channel the handshake runs over. @flare/transport's `Connection` has this shape (auth does not
 * import transport: the composing layer passes connections in), and so can any ordered, reliable channel.
 */
export interface AuthChannel {
  /** The TLS layer of this hop, if any: its exporter for channel binding, the peer's certificate with mtls. */
  readonly tls:
    | { readonly peerCertificatePem: string | undefined; exportKeyingMaterial(length: number, label: string): Uint8Array }
    | undefined;
  /**
   * Resolves when the channel closed. `by` and `authenticated` (the peer's refusal provably came from it, e.g.
   * in a goodbye sealed by this session: @flare/transport's CloseInfo) let the session report a peer's
   * refusal; channels that cannot tell leave them out.
   */
  readonly closed: Promise<{ readonly error?: FlareError | undefined; readonly by?: 'local' | 'remote'; readonly authenticated?: boolean }>;
  send(header: AuthHeader, payload?: Uint8Array): Promise<void>;
  receive(): Promise<{ readonly header: AuthHeader; readonly payload: Uint8Array; readonly trailer?: AuthHeader | undefined }>;
  setGuard(guard: AuthGuard): void;
  close(error?: FlareError): Promise<unknown>;
  /**
   * Told by the server's login once the peer proved who it is (certificate and signature verified), before the
   * login completes. @flare/transport uses it to keep such a connection apart from anonymous ones (which a
   * flood may displace) and to bound logins in progress per participant. Optional.
   */
  identified?(name: string): void;
}
