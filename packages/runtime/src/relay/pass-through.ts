import { FlareRuntimeError } from '@flare/core';
import type { Header, MessageGuard } from '@flare/transport';

type PayloadDigest = ReturnType<NonNullable<MessageGuard['payloadDigest']>>;

// A relay moves each message of a site's session with the trailer the site's (or the server's) session sealed
// it with, untouched. The transport attaches trailers through a connection's guard, so the relay installs this
// guard on both of its connections: on the receiving side it keeps each trailer instead of checking it (the
// relay holds no key: the far end checks), on the sending side it hands back the trailer of the message being
// forwarded. The transport calls `open` in delivery order and `seal` in send order, one call per message, so a
// queue per direction pairs them.

/** The transport's goodbye header key (a refusal sealed by the session, sent before the close frame). */
const GOODBYE_KEY = '$close';

const NO_DIGEST: PayloadDigest = { update: () => undefined, digest: () => EMPTY };
const EMPTY = new Uint8Array(0);

/** The trailer guard of one relayed connection. */
export class PassThroughGuard implements MessageGuard {
  readonly #received: Array<Header | undefined> = [];
  readonly #toSend: Header[] = [];
  /** The sealed trailer of the peer's goodbye, when it sent one (forwarded with its code on close). */
  goodbye: { readonly code: string; readonly trailer: Header } | undefined;
  #goodbyeToSend: Header | undefined;

  /** The relay neither hashes nor checks payloads: the MAC over the payload's digest is checked end to end. */
  payloadDigest(): PayloadDigest {
    return NO_DIGEST;
  }

  open(header: Header, _length: number, _digest: Uint8Array, trailer: Header | undefined): boolean {
    if (Object.hasOwn(header, GOODBYE_KEY) && trailer !== undefined) {
      this.goodbye = { code: String(header[GOODBYE_KEY]), trailer };
      return false;
    }
    this.#received.push(trailer);
    return true;
  }

  /** The trailer that came with the message just delivered (call once per delivered message, in order). */
  takeReceived(): Header | undefined {
    return this.#received.shift();
  }

  /** Queues the trailer of the next message sent on this connection. */
  willSend(trailer: Header | undefined): void {
    if (trailer === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', 'the relay was asked to forward a message without a session trailer');
    this.#toSend.push(trailer);
  }

  /** Makes the next goodbye this connection sends carry the peer's sealed trailer instead of one of its own. */
  forwardGoodbye(trailer: Header): void {
    this.#goodbyeToSend = trailer;
  }

  seal(header: Header): Header {
    if (Object.hasOwn(header, GOODBYE_KEY)) {
      const t = this.#goodbyeToSend;
      // Throwing makes the transport send the close frame alone (the relay cannot seal a refusal of its own).
      if (t === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', 'the relay cannot seal a goodbye');
      this.#goodbyeToSend = undefined;
      return t;
    }
    const t = this.#toSend.shift();
    if (t === undefined) throw new FlareRuntimeError('E_RUNTIME_PROTOCOL', 'the relay has no trailer for this message');
    return t;
  }
}
