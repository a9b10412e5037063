// @flare/pki: provision a FLARE project.yml into signed startup kits: root CA, certificates, kit signatures,
// CRL, distributed provisioning. Flat named exports only (house style).

export { loadParticipants, loadProject, MAX_COMMON_NAME, MAX_PROJECT_BYTES, parseProject, relayMode } from './project.js';
export type { BuilderEntry, Capacity, ConnectionSecurity, ConnectTo, HeParameters, ParseProjectOptions, Participant, ParticipantType, Project } from './project.js';
export { DEFAULT_KEY_TYPE, KEY_TYPES } from './keys.js';
export type { KeyType } from './keys.js';
export { createRootCa, DEFAULT_VALID_DAYS, issueCertificate } from './certificate.js';
export type { CertificateAuthority, CreateRootCaOptions, IssueCertificateOptions, RootCa } from './certificate.js';
export type { SubjectIdentity } from './identity.js';
export { verifyCertificate } from './verify-certificate.js';
export type { VerifiedCertificate, VerifyCertificateOptions } from './verify-certificate.js';
export { createCrl, isRevoked, loadCrl } from './crl.js';
export type { CreateCrlOptions, Crl, LoadCrlOptions, RevokedEntry } from './crl.js';
export { resolveProjectDir, revoke } from './revoke.js';
export type { RevokeOptions, RevokeResult } from './revoke.js';
export { approveCsr, createCsr } from './csr.js';
export type { ApproveCsrOptions, ApprovedCertificate, CreateCsrOptions, CsrResult } from './csr.js';
export { LOCAL_OVERRIDE_FILES, SIGNATURE_FILE, verifyKit } from './kit-signature.js';
export type { KitVerification, VerifyKitOptions } from './kit-signature.js';
export { FLARE_PARTICIPANT_KEYS } from './project-keys.js';
export { provision } from './provision.js';
export type { ProvisionedKit, ProvisionOptions, ProvisionResult } from './provision.js';
export type { ComponentAllowList } from './kit-templates.js';
export { packageKit } from './package-kit.js';
export type { PackageKitOptions } from './package-kit.js';
export { loadKit } from './load-kit.js';
export type { FedAdminConfig, FedClientConfig, FedServerConfig, Kit, LoadKitOptions } from './load-kit.js';
export { acceptNewerCrl, CRL_STATE_FILE, CrlStore } from './crl-store.js';
export type { CrlAcceptance, CrlStoreOptions } from './crl-store.js';
