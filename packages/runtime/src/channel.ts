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
}

/** Accepts authenticated channels (the server side of a transport). */
export interface ChannelServer {
  /** Called for every channel that completed authentication. */
  onChannel(handler: (channel: PeerChannel) => void): void;
  close(): Promise<void>;
}

/**
 * Two connected in-memory channels (a: as seen by `aPeer`'s side, whose remote is `bPeer`, and back).
 * For tests and for composing engines in one process; delivery is asynchronous and in order.
 */
export function channelPair(aPeer: PeerIdentity, bPeer: PeerIdentity): [PeerChannel, PeerChannel] {
  type Msg = [unknown, Uint8Array];
  type Side = { handler?: (h: unknown, p: Uint8Array) => void; closeHandlers: Array<(r?: Error) => void>; queue: Msg[]; closed: boolean };
  const sides: [Side, Side] = [
    { closeHandlers: [], queue: [], closed: false },
    { closeHandlers: [], queue: [], closed: false },
  ];
  const make = (me: 0 | 1, remote: PeerIdentity): PeerChannel => {
    const mine = sides[me];
    const other = sides[me === 0 ? 1 : 0];
    const closeBoth = (reason?: Error): void => {
      for (const s of sides) {
        if (s.closed) continue;
        s.closed = true;
        for (const h of s.closeHandlers) queueMicrotask(() => h(reason));
      }
    };
    return {
      peer: remote,
      send: async (header, payload = new Uint8Array(0)) => {
        if (mine.closed) throw new Error('channel closed');
        // Copies, as a wire would: the receiver never shares the sender's buffers.
        const msg: Msg = [JSON.parse(JSON.stringify(header)) as unknown, payload.slice()];
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
    };
  };
  // a's channel talks to b: its `peer` is b.
  return [make(0, bPeer), make(1, aPeer)];
}
