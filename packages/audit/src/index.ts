// @flare/audit: Append-only, hash-chained, signed audit log with cross-site tracing and verification.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
