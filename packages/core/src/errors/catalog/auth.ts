import type { Catalog } from '../info.js';

/** Error codes of login, sessions and per-message authentication (@flare/auth). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const AUTH_CODES = {
  E_AUTH_HANDSHAKE: {
    meaning: 'A login message is malformed, out of place or of an unsupported protocol version.',
    action: 'Check that both sides run compatible FLARE-TS versions; a peer that keeps doing this is faulty or hostile.',
  },
  E_AUTH_SIGNATURE: {
    meaning: 'The login signature does not verify with the public key of the certificate the peer presented.',
    action: 'The peer\'s certificate and private key do not belong together, or the login was altered in transit: use an unmodified startup kit.',
  },
  E_AUTH_KEY: {
    meaning: 'The kit\'s private key is of a type the login handshake cannot sign with, or does not match its certificate.',
    action: 'Re-provision the participant: kits use RSA, ECDSA P-256/P-384 or Ed25519 keys matching their certificate.',
  },
  E_AUTH_STALE: {
    meaning: 'A login or message timestamp is outside the allowed clock skew window.',
    action: 'Synchronise the clocks of both machines (NTP); if the link is very slow, raise maxSkewMs on the receiver.',
  },
  E_AUTH_REPLAY: {
    meaning: 'A login nonce or a message sequence number was seen before: the message is a replay.',
    action: 'Nothing to do for a FLARE-TS peer; someone on the path is replaying captured traffic, so investigate the network.',
  },
  E_AUTH_OUT_OF_ORDER: {
    meaning: 'A message arrived with a sequence number ahead of the next expected one: messages were dropped or reordered.',
    action: 'The connection is closed; the client reconnects. Investigate the path if it repeats: an ordered stream never reorders by itself.',
  },
  E_AUTH_MAC: {
    meaning: 'A message\'s authentication code does not match its header and payload: it was altered in transit or forged.',
    action: 'The connection is closed; investigate what sits between the peers (a proxy that rewrites messages, or an attacker).',
  },
  E_AUTH_SESSION_EXPIRED: {
    meaning: 'The session expired before the message was sent or received.',
    action: 'Log in again (the client does it by itself on reconnect); keep session renewal enabled for long jobs.',
  },
  E_AUTH_SESSION_REVOKED: {
    meaning: 'The server revoked this session or every session of this participant.',
    action: 'Ask the project admin why the participant was disconnected; log in again only if it is allowed to.',
  },
  E_AUTH_SESSION_REPLACED: {
    meaning: 'A newer login of the same participant replaced this session (one live session per participant; admins may hold a few).',
    action: 'Make sure only one process runs with this kit; if you did not start the other one, the kit may be stolen: revoke it and re-provision.',
  },
  E_AUTH_SESSION_BINDING: {
    meaning: 'A message names a session that is not the one established on this connection.',
    action: 'Nothing to do for a FLARE-TS peer; a session can only be used on the connection that logged in, so someone is reusing captured messages.',
  },
  E_AUTH_NOT_LOGGED_IN: {
    meaning: 'An application message arrived before the login completed.',
    action: 'Log in first: every connection must complete the login handshake before it sends anything else.',
  },
  E_AUTH_CHANNEL_BINDING: {
    meaning: 'The TLS channel binding differs between the peers, or one side requires it and the other cannot provide it.',
    action: 'If a TLS-terminating proxy sits between the peers, configure the client with custom_ca_cert (binding off); otherwise someone is intercepting TLS.',
  },
  E_AUTH_TLS_IDENTITY: {
    meaning: 'With mtls, the certificate used to log in is not the certificate presented in the TLS handshake.',
    action: 'Use the same kit certificate for TLS and for login; a mismatch means the connection is being relayed.',
  },
  E_AUTH_RELAY_PATH: {
    meaning: 'A login did not come through the relays its signed hello names: through another relay, directly although it names a relay, or through a certificate that is not a relay\'s.',
    action: 'Connect the participant to the relay its kit names (fqsn, parent and connect_to in project.yml); re-provision it if the topology changed. Otherwise someone relays it who should not.',
  },
  E_AUTH_REFUSED: {
    meaning: 'The site\'s login hook refused this participant.',
    action: 'Provide the credentials the site requires (for example a fresh OIDC token) or ask the site admin to allow the participant.',
  },
  E_AUTH_RENEWAL: {
    meaning: 'Renewing the session failed, so the connection was closed.',
    action: 'The client reconnects and logs in again by itself; if it repeats, check both sides\' clocks and versions.',
  },
} as const satisfies Catalog;
