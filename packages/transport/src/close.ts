import { flareErrorFromCode, FlareError, isFlareErrorCode, TransportError } from '@flare/core';

/**
 * How a connection ended. `code` is the WebSocket close code (RFC 6455 section 7.4: 1000 normal, 1001 going
 * away, 1006 abnormal; 4000 means "refused", with the FlareError code as the reason); `error` is the refusal
 * as a FlareError when the close was not a normal one.
 */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  /** Which side decided to close: this endpoint ('local') or the peer / the network ('remote'). */
  readonly by: 'local' | 'remote';
  readonly error?: FlareError;
  /**
   * True when the peer refused and the refusal provably comes from the peer this connection authenticated: it arrived sealed by the
   * session guard (an authenticated goodbye), or, before a session exists, over TLS from the pinned server
   * (`tls.peerName`). Close frames themselves are not authenticated (RFC 6455): on a clear connection, or
   * behind a TLS-terminating proxy, anyone on the path can forge one. Only an authenticated refusal may stop a
   * client for good; everything else is retried. False when this side closed (`by: 'local'`).
   */
  readonly authenticated: boolean;
}

/** What the peer said when it refused: its code, and whether the refusal was authenticated ({@link refusalOf}). */
export interface PeerRefusal {
  readonly code: string;
  /** See {@link CloseInfo.authenticated}. */
  readonly authenticated: boolean;
}

/** RFC 6455 7.4.2: 4000-4999 are for applications. We use one: the reason then carries a FlareError code. */
export const CLOSE_REFUSED = 4000;
export const CLOSE_NORMAL = 1000;
const CLOSE_GOING_AWAY = 1001;

// Errors this transport re-created from what a peer sent (a close frame or a goodbye), with how it arrived.
const refusals = new WeakMap<FlareError, PeerRefusal>();

/**
 * Whether `error` is a refusal the peer sent (re-created from its close frame or goodbye), and if so whether
 * it was authenticated; undefined for errors this side decided (a local check, a timeout, a lost connection).
 * A client decides from this whether a refusal may be final: see {@link CloseInfo.authenticated}.
 *
 * @example
 * ```ts
 * client.on('retry', ({ error }) => log.warn('refused', { code: error.code, authenticated: refusalOf(error)?.authenticated }));
 * ```
 */
export function refusalOf(error: unknown): PeerRefusal | undefined {
  return error instanceof FlareError ? refusals.get(error) : undefined;
}

/** @internal Records that `error` is the peer's refusal, authenticated or not. */
export function markRefusal(error: FlareError, authenticated: boolean): FlareError {
  refusals.set(error, { code: error.code, authenticated });
  return error;
}

/** Re-creates the FlareError a peer reported in its close reason (an unknown code becomes E_TRANSPORT_REFUSED). */
export function errorFromClose(code: number, reason: string): FlareError | undefined {
  if (code === CLOSE_NORMAL) return undefined;
  if (code === CLOSE_GOING_AWAY) return new TransportError('E_TRANSPORT_SHUTDOWN', 'the peer is shutting down');
  if (code === 1009) return new TransportError('E_TRANSPORT_MESSAGE_TOO_LARGE', 'the peer closed the connection: a WebSocket frame exceeded its limit');
  // The code's own area class (core's catalog), so that `instanceof AuthError` works on both sides.
  if (code === CLOSE_REFUSED && isFlareErrorCode(reason)) return flareErrorFromCode(reason, `the peer refused the connection (${reason})`);
  if (code === 1006 || code === 1005) return new TransportError('E_TRANSPORT_CLOSED', 'the connection was lost');
  return new TransportError('E_TRANSPORT_REFUSED', `the peer closed the connection with code ${code}`);
}
