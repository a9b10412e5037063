// @flare/transport: WebSocket endpoints (clear, TLS, mTLS) with streaming, backpressure, heartbeats and reconnects.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
