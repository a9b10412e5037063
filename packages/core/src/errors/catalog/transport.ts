import type { Catalog } from '../info.js';

/** Error codes of the WebSocket transport (@flare/transport). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const TRANSPORT_CODES = {
  E_TRANSPORT_CONFIG: {
    meaning: 'The endpoint configuration cannot work (for example tls or mtls without a certificate, or no server address).',
    action: 'Check the kit (connection_security, certificates, host names, ports) or the options passed to the endpoint.',
  },
  E_TRANSPORT_CONNECT: {
    meaning: 'No connection could be made to any of the server addresses.',
    action: 'Check that the server is running, the host names and port in the kit, firewalls and the proxy setting; the client retries with backoff.',
  },
  E_TRANSPORT_TLS: {
    meaning: 'The TLS handshake failed: a certificate was missing, untrusted or refused by the peer.',
    action: 'Use the startup kit of this project (its rootCA.pem and certificate); with mtls the client must present its kit certificate; behind a TLS-terminating proxy set custom_ca_cert.',
  },
  E_TRANSPORT_PROXY: {
    meaning: 'The HTTP CONNECT proxy refused or failed to open a tunnel to the server.',
    action: 'Check the proxy address, that it allows CONNECT to the server host and port, and its credentials.',
  },
  E_TRANSPORT_CLOSED: {
    meaning: 'The connection closed before the operation completed.',
    action: 'Send again on the new connection once the client has reconnected; nothing sent on the closed one is guaranteed to have arrived.',
  },
  E_TRANSPORT_PROTOCOL: {
    meaning: 'The peer sent frames that break the FLARE-TS transport protocol (unexpected frame, bad chunk order or length).',
    action: 'Check that both sides run compatible FLARE-TS versions; a peer that keeps doing this is faulty or hostile.',
  },
  E_TRANSPORT_MESSAGE_TOO_LARGE: {
    meaning: 'A message is larger than the per-message size limit of the receiving endpoint.',
    action: 'Raise maxMessageBytes on the receiver if models of this size are expected; otherwise treat the sender as faulty.',
  },
  E_TRANSPORT_PRELOGIN_LIMIT: {
    meaning: 'A peer that has not logged in sent more data than the small pre-login limit allows.',
    action: 'Nothing to do for a FLARE-TS peer; a peer that does this is not speaking the protocol or is flooding the server.',
  },
  E_TRANSPORT_LOGIN_TIMEOUT: {
    meaning: 'The peer did not complete the login within the login deadline, so the connection was closed.',
    action: 'Check that the client uses a FLARE-TS kit of this project and that the network is not stalling; raise loginTimeoutMs for very slow links.',
  },
  E_TRANSPORT_HANDSHAKE_TIMEOUT: {
    meaning: 'A socket did not complete the TLS handshake and the WebSocket upgrade within the handshake deadline, so it was cut.',
    action: 'Check that the client speaks TLS with this server\'s settings and that the network is not stalling; raise handshakeTimeoutMs for very slow links.',
  },
  E_TRANSPORT_STALLED: {
    meaning: 'A message in progress arrived slower than the minimum rate, or did not complete within the message deadline, so the connection was cut.',
    action: 'Check the link between the peers; for very slow links lower minBytesPerSecond or raise stallWindowMs / messageTimeoutMs on the receiver. A peer that stalls on purpose is holding memory: investigate it.',
  },
  E_TRANSPORT_IDLE: {
    meaning: 'Nothing was received from the peer (not even a heartbeat) within the idle timeout.',
    action: 'Check the network between the peers; the client reconnects by itself.',
  },
  E_TRANSPORT_CONNECTION_LIMIT: {
    meaning: 'The server refused or displaced a connection that had not logged in, because a connection, handshake or pending-login limit was reached (in all, from one address, or for one participant).',
    action: 'Retry (the client backs off by itself); if it persists, someone may be flooding the server from your address, or raise the limits (maxConnections, maxPendingLogins, maxPendingLoginsPerAddress) on the server.',
  },
  E_TRANSPORT_SHUTDOWN: {
    meaning: 'The peer closed the connection because it is shutting down.',
    action: 'Wait for the peer to come back; the client reconnects by itself.',
  },
  E_TRANSPORT_REFUSED: {
    meaning: 'The peer closed the connection with a reason this build does not know.',
    action: 'Check the peer\'s log for the reason and that both sides run compatible FLARE-TS versions.',
  },
} as const satisfies Catalog;
