// @flare/pki: Provision a FLARE project.yml into signed startup kits: root CA, certificates, kit signatures, CRL, distributed provisioning.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
