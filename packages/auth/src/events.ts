import { EventEmitter } from 'node:events';
import type { Logger } from '@flare/core';
import type { Peer } from './session.js';

/**
 * A message inside an established session was refused: altered (E_AUTH_MAC), replayed (E_AUTH_REPLAY),
 * reordered or dropped (E_AUTH_OUT_OF_ORDER), of another session (E_AUTH_SESSION_BINDING), stale or expired, or
 * an unexpected control message. `by: 'local'` when this side detected it; `by: 'peer'` when the peer reported
 * it in its authenticated goodbye (so both ends of a tampered connection can audit it). The connection closes.
 */
export interface MessageRefused {
  readonly peer: Peer;
  readonly sessionId: string;
  readonly code: string;
  readonly message: string;
  readonly by: 'local' | 'peer';
}

/** Server: a newer login of the same participant replaced an older live session, which closes with E_AUTH_SESSION_REPLACED. */
export interface SessionReplaced {
  readonly peer: Peer;
  /** The session that was closed. */
  readonly sessionId: string;
  /** The session that replaced it. */
  readonly replacedBy: string;
}

/** Events of {@link ServerAuth} and {@link ClientAuth}: what the runtime audits. */
export interface AuthEvents {
  refused: [MessageRefused];
  replaced: [SessionReplaced];
}

/** The subscription half of an auth object's events. */
export interface AuthEventSource {
  on<E extends keyof AuthEvents>(event: E, listener: (...args: AuthEvents[E]) => void): this;
  off<E extends keyof AuthEvents>(event: E, listener: (...args: AuthEvents[E]) => void): this;
}

/** @internal Where sessions report their events. */
export interface AuthEventSink {
  emit<E extends keyof AuthEvents>(event: E, ...args: AuthEvents[E]): void;
}

/**
 * @internal A typed emitter. Events are emitted from inside the guard's `open`: a listener that throws must not
 * turn into the connection's refusal code or keep the other listeners from hearing it, so its error is logged.
 */
export class AuthEmitter extends EventEmitter implements AuthEventSink {
  constructor(private readonly logger: Logger) {
    super();
  }

  override emit<E extends keyof AuthEvents>(event: E, ...args: AuthEvents[E]): boolean {
    const listeners = this.rawListeners(event) as Array<(...a: AuthEvents[E]) => void>;
    for (const listener of listeners) {
      try {
        listener(...args);
      } catch (error) {
        this.logger.error('an auth event listener threw', { event, error: String(error) });
      }
    }
    return listeners.length > 0;
  }
}
