// @flare/auth: Login handshake, session keys, per-message authentication and replay defence bound to the kit's identity.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
