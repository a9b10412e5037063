// @flare/cc-attest: Offline verification of AMD SEV-SNP, Intel TDX and NVIDIA GPU attestation evidence, with attestation policy.
// Nothing is exported until its issue lands: no stubs that pretend.
export {};
