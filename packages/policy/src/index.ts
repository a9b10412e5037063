// @flare/policy: site-local authorization.json, privacy.json scopes, resources.json, component allow-list and
// site authenticators. Flat named exports only (house style).
export { FLARE_COMMAND_CATEGORIES } from './command-categories.js';
export { ANY_RIGHT, parseAuthorizationPolicy } from './authorization-policy.js';
export type {
  AuthorizationCondition,
  AuthorizationPolicy,
  AuthorizationPolicyOptions,
  AuthorizationRole,
  AuthorizationRule,
} from './authorization-policy.js';
export { assertAuthorized, authorize } from './authorize.js';
export type { AuthorizationDecision, AuthorizationRequest, Person } from './authorize.js';
export { checkLocalModelRelease, checkScopeAggregation, filterSpecSchema, parsePrivacyPolicy, resolveFilterSpecs, resolvePrivacyScope } from './privacy-policy.js';
export type { FilterDirection, FilterRegistry, FilterRegistryOptions, FilterSpec, PrivacyPolicy, PrivacyScope } from './privacy-policy.js';
export { composeFilterChain, createFilterChain, parseJobFilters } from './filter-chain.js';
export { DEFAULT_MAX_CONCURRENT_JOBS, parseResourcePolicy, parseResourceRequest } from './resource-policy.js';
export type { ResourceLimits, ResourceRequest } from './resource-policy.js';
export { ResourceManager } from './resource-manager.js';
export type { Reservation, ResourceCheck, ResourceManagerOptions } from './resource-manager.js';
export { parseComponentPolicy } from './component-policy.js';
export type { ComponentPolicy } from './component-policy.js';
export { byocManifest, signByoc, verifyByocSignature } from './byoc-signature.js';
export type { ByocBundle, ByocVerifyOptions } from './byoc-signature.js';
export { VerifiedSignatures, checkJobFreshness, signAbort, signJob, verifyAbort, verifyJob } from './job-signature.js';
export type {
  AbortSignature,
  AdminSigningKey,
  CertifiedSigner,
  JobFreshnessOptions,
  JobSignature,
  JobSigner,
  JobVerifyOptions,
  SignerCertificateCheck,
  VerifiedAbort,
  VerifiedJob,
} from './job-signature.js';
export { admitAbort, admitJob } from './admit-job.js';
export type {
  AbortAdmission,
  JobAdmission,
  JobAdmissionPolicy,
  JobAdmissionRequest,
} from './admit-job.js';
export { requireSiteAuthentication } from './site-authenticator.js';
export type { SiteAuthenticator, SiteAuthInput, SiteAuthVerdict } from './site-authenticator.js';
export { createOidcAuthenticator } from './oidc-authenticator.js';
export type { JwksSource, OidcAuthenticatorOptions } from './oidc-authenticator.js';
export { PolicyFile } from './policy-file.js';
export type { PolicyFileOptions, PolicyReloadResult } from './policy-file.js';
export { loadSitePolicies } from './site-policies.js';
export type { SitePolicies, SitePolicyOptions } from './site-policies.js';
