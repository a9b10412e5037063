import { hkdfSync, randomBytes } from 'node:crypto';
import { FlareRuntimeError, type FlareError } from '@flare/core';
import type { ChannelServer, PeerChannel, PeerIdentity, ServerLink } from '../protocol/channel.js';

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
        if (mine.closed) throw new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'channel closed');
        // Copies, as a wire would: the receiver never shares the sender's buffers.
        const msg: Msg = [JSON.parse(JSON.stringify(header)) as unknown, new Uint8Array(payload)];
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
      close: (reason) => closeBoth(reason),
      ...(exporter === undefined ? {} : { exportKeyingMaterial: exporter }),
    };
  };
  // a's channel talks to b: its `peer` is b.
  return [make(0, bPeer), make(1, aPeer)];
}

/** An in-memory {@link ChannelServer} that peers join with the identity they are given. */
export interface MemoryHub extends ChannelServer {
  /** Opens a channel as `who` (its server side is handed to the server's handler). */
  connect(who: PeerIdentity): Promise<PeerChannel>;
  /** The server sides of every channel opened so far. */
  readonly channels: readonly PeerChannel[];
  /** Whether the hub accepts connections (false after close, or while `down`). */
  readonly up: boolean;
  /** Takes the hub down (closing every channel) or brings it back: a server outage without a restart. */
  setUp(up: boolean): void;
}

/**
 * A {@link ChannelServer} whose clients connect in memory with a given identity. With `sessions`, each
 * connection exports keying material like an @flare/auth session (a fresh secret per connection).
 */
export function memoryHub(server: PeerIdentity, options: { readonly sessions?: boolean } = {}): MemoryHub {
  let handler: ((ch: PeerChannel) => void) | undefined;
  const channels: PeerChannel[] = [];
  let up = true;
  const closeAll = (): void => {
    for (const c of channels) c.close();
  };
  return {
    channels,
    get up() {
      return up && handler !== undefined;
    },
    setUp: (u) => {
      up = u;
      if (!u) closeAll();
    },
    onChannel: (h) => {
      handler = h;
    },
    close: async () => {
      up = false;
      closeAll();
    },
    connect: async (who) => {
      if (!up || handler === undefined) throw new FlareRuntimeError('E_RUNTIME_DISCONNECTED', 'the server is not listening');
      const [clientSide, serverSide] = channelPair(who, server, options.sessions === true ? { keyingMaterial: randomBytes(32) } : {});
      channels.push(serverSide);
      handler(serverSide);
      return clientSide;
    },
  };
}

/** Options of {@link memoryLink}. */
export interface MemoryLinkOptions {
  /** Delay between attempts (default 20 ms). */
  readonly retryMs?: number;
  /** Give up after failing this long without a channel (default never). */
  readonly giveUpAfterMs?: number;
}

/**
 * A {@link ServerLink} over `connect` (e.g. a {@link MemoryHub}'s): opens a channel, and a new one whenever it
 * closes, retrying every `retryMs` while `connect` fails, until stopped or `giveUpAfterMs` passed without one.
 */
export function memoryLink(connect: () => Promise<PeerChannel>, options: MemoryLinkOptions = {}): ServerLink & { readonly current: PeerChannel | undefined } {
  const retryMs = options.retryMs ?? 20;
  let onChannel: ((ch: PeerChannel) => void) | undefined;
  let onGiveUp: ((e: FlareError) => void) | undefined;
  let current: PeerChannel | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let since = Date.now();
  let attempt = 0;
  const tryOnce = (): void => {
    timer = undefined;
    if (stopped) return;
    connect().then(
      (ch) => {
        if (stopped) return ch.close();
        attempt = 0;
        current = ch;
        ch.onClose(() => {
          if (current !== ch) return;
          current = undefined;
          since = Date.now();
          schedule();
        });
        onChannel?.(ch);
      },
      (e: unknown) => {
        attempt += 1;
        if (options.giveUpAfterMs !== undefined && Date.now() - since >= options.giveUpAfterMs) {
          stopped = true;
          const last = e instanceof Error ? e.message : String(e);
          onGiveUp?.(new FlareRuntimeError('E_RUNTIME_SERVER_UNREACHABLE', `no connection to the server for ${Math.round((Date.now() - since) / 1000)} s; the last attempt failed: ${last}`, { cause: e }));
          return;
        }
        schedule();
      },
    );
  };
  const schedule = (): void => {
    if (stopped || timer !== undefined) return;
    timer = setTimeout(tryOnce, attempt === 0 ? 0 : retryMs);
  };
  return {
    get current() {
      return current;
    },
    onChannel: (h) => {
      onChannel = h;
      schedule();
    },
    onGiveUp: (h) => {
      onGiveUp = h;
    },
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      current?.close();
    },
  };
}
