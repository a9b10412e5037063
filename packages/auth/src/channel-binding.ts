/** The TLS exporter label of the channel binding (RFC 5705 labels start with "EXPORTER"). */
export const EXPORTER_LABEL = 'EXPORTER-flare-ts-auth-v1';
