import type { FlareError, Identity, JsonValue } from '@flare/core';

/**
 * The identity a participant proved (certificate, then session): core's {@link Identity} (`name`, `org`,
 * `type`, `role` for admins) plus what only the runtime needs. Never a field of a message. An aggregating relay
 * that logs in as a contributor has type `relay` and is served as a site.
 */
export interface PeerIdentity extends Identity {
  /** The relays a site's login came through, nearest the server first (its signed relay path; docs/relays.md). */
  readonly via?: readonly string[];
  /**
   * The serial of the certificate the peer proved itself with (lowercase hex, as a CRL lists it): a newer CRL
   * that revokes it ends the session at once (see `LiveSessions`). Absent for in-memory test channels.
   */
  readonly serial?: string;
  /**
   * For a login that came through forwarding relays: the serial of the verified TLS certificate of the relay
   * that handed it to this side (`via[0]` at the server). A newer CRL that revokes it ends the session at once:
   * a revoked relay carries nothing further.
   */
  readonly relaySerial?: string;
}

/** True for a participant the server serves as a site: a client, or an aggregating relay contributing for its sites. */
export function isSite(peer: Identity): boolean {
  return peer.type === 'client' || peer.type === 'relay';
}

/** A message header as it travels (JSON object); the receiver validates it before use. */
export type ChannelHeader = { readonly [key: string]: JsonValue };

/**
 * One authenticated, message-oriented connection to a peer: what @flare/transport + @flare/auth give the
 * runtime (an mTLS WebSocket with a login-derived session whose every message is MAC'd). `peer` is the
 * identity the handshake proved; the runtime never takes identity from message fields. A message is a JSON
 * header and a byte payload (a model, a job bundle, or nothing), delivered whole and in order.
 */
export interface PeerChannel {
  readonly peer: PeerIdentity;
  /** Sends one message; resolves when the transport accepted it (backpressure). */
  send(header: ChannelHeader, payload?: Uint8Array): Promise<void>;
  /** Sets the handler for incoming messages (one handler; a later call replaces it). `header` is untrusted. */
  onMessage(handler: (header: unknown, payload: Uint8Array) => void): void;
  /** Called once when the connection ends, for any reason. */
  onClose(handler: (reason?: Error) => void): void;
  /**
   * Closes the connection; with `reason`, the peer is told its code (an authenticated refusal, e.g.
   * E_CERT_REVOKED when a newer CRL revokes the peer's certificate).
   */
  close(reason?: FlareError): void;
  /**
   * Keying material exported from the authenticated session on this connection (@flare/auth's
   * `session.exportKeyingMaterial`): equal on both ends, never sent, distinct per label. Attestation derives
   * its nonces from it, binding evidence to this session and peer. Absent when the authenticator made no
   * session (e.g. certificate identity only); a federation that requires attestation refuses such peers.
   */
  readonly exportKeyingMaterial?: (label: string, length: number) => Uint8Array;
}

/** Accepts authenticated channels (the server side of a transport). */
export interface ChannelServer {
  /** Called for every channel that completed authentication. */
  onChannel(handler: (channel: PeerChannel) => void): void;
  close(): Promise<void>;
}

/**
 * A site's way to the server: keeps one authenticated channel open, opening a new one (with backoff) whenever
 * it closes, until it is stopped or gives up. {@link linkToServer} builds one on @flare/transport's
 * reconnecting client; `@flare/runtime/testing` has an in-memory one.
 */
export interface ServerLink {
  /** Called with every new authenticated channel to the server (one at a time; the previous one has closed). */
  onChannel(handler: (channel: PeerChannel) => void): void;
  /** Called once when the link stops trying for good (it gave up, or a failure that retrying cannot fix). */
  onGiveUp(handler: (error: FlareError) => void): void;
  /** Called when an attempt failed and the next starts after `delayMs` (for logs). */
  onRetry?(handler: (info: { readonly attempt: number; readonly delayMs: number; readonly error: FlareError }) => void): void;
  /** Stops reconnecting and closes the open channel. */
  stop(): Promise<void>;
}
