// @flare/cli: The flare command: provision, run a server, client or admin, verify kits, audit logs and attestation.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
