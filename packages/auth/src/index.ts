// @flare/auth: login handshake, session keys, per-message authentication and replay defence bound to the kit's identity.

export { createServerAuth, DEFAULT_SESSIONS_PER_PARTICIPANT } from './server-auth.js';
export type { AuthorizeLogin, LoginCredentials, ServerAuth, ServerAuthOptions } from './server-auth.js';
export { createClientAuth } from './client-auth.js';
export type { ClientAuth, ClientAuthOptions } from './client-auth.js';
export type { Peer, Session } from './session.js';
export { SessionStore } from './session-store.js';
export { checkRelayedLogin } from './relay-path.js';
export type { RelayedLogin, RelayHopOptions } from './relay-path.js';
export type { AuthChannel, AuthGuard, AuthHeader } from './channel.js';
export type { AuthEvents, AuthEventSource, MessageRefused, SessionReplaced } from './events.js';
export type { AuthKit } from './kit.js';
export { EXPORTER_LABEL } from './channel-binding.js';
export { deriveEpochKeys, exportKeyingMaterial, PROTOCOL } from './key-schedule.js';
export type { EpochKeys } from './key-schedule.js';
export { hkdfSha256 } from './hkdf.js';
export { macEquals, messageMac } from './mac.js';
export { KEYED_DIGEST_MIN_BYTES, payloadDigest } from './payload-digest.js';
export type { PayloadDigest } from './payload-digest.js';
export type { MacInput } from './mac.js';
export { NonceCache } from './nonce-cache.js';
