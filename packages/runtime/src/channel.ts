import { hkdfSync } from 'node:crypto';
import type { JsonValue } from '@flare/core';
import type { PeerIdentity } from './event-bus.js';

/** A message header as it travels (JSON object); the receiver validates it before use. */
export type ChannelHeader = { readonly [key: string]: JsonValue };

/**
 * One authenticated, message-oriented connection to a peer: what @flare/transport + @flare/auth give the
 * runtime (an mTLS WebSocket with a login-derived session whose every message is MAC'd). `peer` is the
 * identity the handshake proved; the runtime never takes identity from message fields. A message is a JSON
 * header and a byte payload (a safetensors model or nothing), delivered whole and in order.
 */
export interface PeerChannel {
  readonly peer: PeerIdentity;
  /** Sends one message; resolves when the transport accepted it (backpressure). */
  send(header: ChannelHeader, payload?: Uint8Array): Promise<void>;
  /** Sets the handler for incoming messages (one handler; a later call replaces it). `header` is untrusted. */
  onMessage(handler: (header: unknown, payload: Uint8Array) => void): void;
  /** Called once when the connection ends, for any reason. */
  onClose(handler: (reason?: Error) => void): void;
  /** Closes the connection. */
  close(): void;
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
 * Two connected in-memory channels (a: as seen by `aPeer`'s side, whose remote is `bPeer`, and back).
 * For tests and for composing engines in one process; delivery is asynchronous and in order. With
 * `keyingMaterial` (a secret both ends share, at least 32 bytes) the channels export keying material the way
 * an authenticated session does (HKDF-SHA256 per label), so attestation can be exercised in memory.
 */
export function channelPair(aPeer: PeerIdentity, bPeer: PeerIdentity, options: { readonly keyingMaterial?: Uint8Array } = {}): [PeerChannel, PeerChannel] {
  const secret = options.keyingMaterial;
  if (secret !== undefined && secret.length < 32) throw new RangeError(`"keyingMaterial" expected at least 32 bytes, got ${secret.length}`);
  const exporter = secret === undefined ? undefined : (label: string, length: number): Uint8Array => new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), `flare-ts channelPair exporter ${label}`, length));
  type Msg = [unknown, Uint8Array];
  type Side = { handler?: (h: unknown, p: Uint8Array) => void; closeHandlers: Array<(r?: Error) => void>; queue: Msg[]; closed: boolean };
  const sides: [Side, Side] = [
    { closeHandlers: [], queue: [], closed: false },
    { closeHandlers: [], queue: [], closed: false },
  ];
  const make = (me: 0 | 1, remote: PeerIdentity): PeerChannel => {
    const mine = sides[me];
    const other = sides[me === 0 ? 1 : 0];
    const shut = (s: Side, reason?: Error): void => {
      if (s.closed) return;
      s.closed = true;
      for (const h of s.closeHandlers) queueMicrotask(() => h(reason));
    };
    // As on a wire: this end stops at once; the far end sees the close after what this end sent before it.
    const closeBoth = (reason?: Error): void => {
      if (mine.closed) return;
      shut(mine, reason);
      setImmediate(() => shut(other, reason));
    };
    return {
      peer: remote,
      send: async (header, payload = new Uint8Array(0)) => {
        if (mine.closed) throw new Error('channel closed');
        // Copies, as a wire would: the receiver never shares the sender's buffers.
        const msg: Msg = [JSON.parse(JSON.stringify(header)) as unknown, new Uint8Array(payload)]; // a copy even for a Buffer (whose .slice() is a view)
        setImmediate(() => {
          if (other.closed) return;
          if (other.handler) other.handler(...msg);
          else other.queue.push(msg);
        });
      },
      onMessage: (h) => {
        mine.handler = h;
        for (const m of mine.queue.splice(0)) setImmediate(() => h(...m));
      },
      onClose: (h) => {
        if (mine.closed) queueMicrotask(() => h());
        else mine.closeHandlers.push(h);
      },
      close: () => closeBoth(),
      ...(exporter === undefined ? {} : { exportKeyingMaterial: exporter }),
    };
  };
  // a's channel talks to b: its `peer` is b.
  return [make(0, bPeer), make(1, aPeer)];
}
