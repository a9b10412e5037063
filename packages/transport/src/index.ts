// @flare/transport: WebSocket endpoints (clear, TLS, mTLS) with streaming, backpressure, heartbeats and reconnects.

export { listen } from './server.js';
export type { Refusal, ServerEndpoint, ServerEvents, ServerOptions } from './server.js';
export { createClient, dial, isFinalRefusal } from './client.js';
export type { Client, ClientEvents, ClientOptions, ReconnectingClientOptions, Target } from './client.js';
export type { Connection, ConnectionEvents, Header, Message, MessageGuard, Payload, PayloadDigest, TlsInfo } from './connection.js';
export { CLOSE_REFUSED, errorFromClose, refusalOf } from './close.js';
export type { CloseInfo, PeerRefusal } from './close.js';
export { TRANSPORT_DEFAULTS } from './limits.js';
export type { ServerLimits, TransportLimits } from './limits.js';
export { backoffDelay } from './backoff.js';
export { checkRanLate } from './liveness.js';
export type { BackoffOptions, RandomSource } from './backoff.js';
export { authority, connectTunnel } from './proxy.js';
export type { HttpProxy } from './proxy.js';
export { clientOptionsFromKit, serverOptionsFromKit } from './kit.js';
export type { TransportKit } from './kit.js';
export type { ConnectionSecurity, PrivateKeyInput } from './tls-options.js';
