import { AuthError, PkiError } from '@flare/core';
import { verifyCertificate } from '@flare/pki';
import type { AuthChannel, AuthHeader } from './channel.js';
import { CONTROL, HELLO, parseMessage } from './protocol.js';

// A relay forwards a client's login without reading or changing it: the client signs the relays it goes through
// (hello.via, nearest the server first), and every hop checks that the TLS certificate of the connection it
// received the login on belongs to the next participant down that signed path. So a relay can neither move a
// client elsewhere in the tree nor pass off its own connection as a client's, and a client cannot claim to sit
// behind a relay it does not connect through.

/** Where the certificate checks of a hop look. */
interface HopTrust {
  readonly rootCaPem: string;
  readonly crl?: string;
  readonly at?: Date;
}

/** Options of {@link checkRelayedLogin}: who the checking relay is. */
export interface RelayHopOptions extends HopTrust {
  /** This relay's participant name (its certificate CN). */
  readonly relay: string;
  /** The relays above this one, nearest the server first (its kit's fqsn without its own name; [] under the server). */
  readonly path: readonly string[];
}

/** What a relay learns from a login it forwards (nothing it has verified beyond the hop: the server checks the signature). */
export interface RelayedLogin {
  /** The participant logging in, as its hello claims and its TLS certificate to this relay confirms. */
  readonly name: string;
  /** The signed relay path, nearest the server first. */
  readonly via: readonly string[];
  /**
   * The serial of the verified TLS certificate the login arrived with: the participant's own, or the next
   * relay's down the path. A newer CRL that lists it should cut the session this relay carries.
   */
  readonly hopSerial: string;
}

/**
 * The server's check of its hop: the connection's TLS client certificate is a valid relay certificate of this
 * project named `relay` (the first relay of the path the client signed).
 *
 * @returns The serial of the relay's verified certificate.
 * @throws AuthError E_AUTH_RELAY_PATH; PkiError E_CERT_* for the relay's certificate (revoked, expired...).
 */
export function checkRelayHop(channel: Pick<AuthChannel, 'tls'>, relay: string, client: string, trust: HopTrust): string {
  const pem = channel.tls?.peerCertificatePem;
  if (pem === undefined) throw new AuthError('E_AUTH_RELAY_PATH', `'${client}' names relay '${relay}' but this hop has no TLS client certificate`);
  const hop = verifyCertificate(pem, { rootCaPem: trust.rootCaPem, ...(trust.crl !== undefined ? { crl: trust.crl } : {}), ...(trust.at !== undefined ? { at: trust.at } : {}) });
  if (hop.type !== 'relay' || hop.name !== relay) {
    throw new AuthError('E_AUTH_RELAY_PATH', `'${client}' names relay '${relay}' but came through ${hop.type} '${hop.name}'`);
  }
  return hop.serial;
}

/**
 * A relay's check of the first message a participant sends it: a well-formed login hello whose signed relay
 * path passes through this relay where its kit says, and whose sender is the participant of the connection's
 * TLS certificate (the client itself, or the next relay down the path). The relay cannot check the hello's
 * signature beyond that (the server does), and need not: it forwards the login unchanged.
 *
 * @throws AuthError E_AUTH_NOT_LOGGED_IN (not a login), E_AUTH_HANDSHAKE (malformed), E_AUTH_RELAY_PATH (wrong
 *   path or a relay below that is not the next one), E_AUTH_TLS_IDENTITY (the client's TLS certificate is not
 *   its login name's); PkiError E_CERT_* for the TLS certificate.
 */
export function checkRelayedLogin(header: AuthHeader, channel: Pick<AuthChannel, 'tls'>, o: RelayHopOptions): RelayedLogin {
  if (header[CONTROL] !== 'hello') throw new AuthError('E_AUTH_NOT_LOGGED_IN', 'the first message on a connection must be the login');
  const hello = parseMessage(HELLO, header, 'login');
  const mine = [...o.path, o.relay];
  const via = hello.via ?? [];
  if (via.length < mine.length || mine.some((r, i) => via[i] !== r)) {
    throw new AuthError('E_AUTH_RELAY_PATH', `'${hello.name}' logs in through [${via.join(', ')}], not through this relay '${mine.join('.')}'`);
  }
  const below = via[mine.length];
  const pem = channel.tls?.peerCertificatePem;
  if (pem === undefined) throw new AuthError('E_AUTH_RELAY_PATH', `relay '${o.relay}' needs mtls to know who '${hello.name}' comes from`);
  const hop = verifyCertificate(pem, { rootCaPem: o.rootCaPem, ...(o.crl !== undefined ? { crl: o.crl } : {}), ...(o.at !== undefined ? { at: o.at } : {}) });
  if (below !== undefined) {
    if (hop.type !== 'relay' || hop.name !== below) throw new AuthError('E_AUTH_RELAY_PATH', `'${hello.name}' names relay '${below}' below '${o.relay}' but came from ${hop.type} '${hop.name}'`);
  } else {
    if (hop.type === 'relay' || hop.type === 'server') throw new PkiError('E_CERT_WRONG_TYPE', `a ${hop.type} certificate cannot log in through a relay as '${hello.name}'`);
    if (hop.name !== hello.name) throw new AuthError('E_AUTH_TLS_IDENTITY', `'${hop.name}' sent the login of '${hello.name}' to relay '${o.relay}'`);
  }
  return { name: hello.name, via, hopSerial: hop.serial };
}
