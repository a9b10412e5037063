import type { Catalog } from '../info.js';

/** Error codes of attestation evidence verification (@flare/cc-attest). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const ATTEST_CODES = {
  E_ATTEST_MALFORMED: {
    meaning: 'The attestation evidence, certificate, RIM or collateral could not be parsed: a size, a version or a field is not what the vendor format allows.',
    action: 'Check that the file is the raw evidence of the stated type (SNP report, TDX quote or SPDM request and response) and was not truncated or re-encoded.',
  },
  E_ATTEST_UNSUPPORTED: {
    meaning: 'The evidence uses a version, algorithm or product that this verifier does not support.',
    action: 'Use evidence from a supported platform (SNP report versions 2 to 5, TDX quote v4 or v5, SPDM 1.1 from Hopper, Blackwell or NVSwitch) or file an issue with a sample.',
  },
  E_ATTEST_CHAIN: {
    meaning: 'A certificate in the evidence chain is not signed by the next one, or the chain does not end at the pinned vendor root.',
    action: 'Supply the vendor-issued certificates for this evidence (VCEK or VLEK with the matching ASK or ASVK, the PCK chain in the quote, the GPU device chain) and do not substitute roots.',
  },
  E_ATTEST_CERT_PROFILE: {
    meaning: 'A certificate does not match the vendor profile (signature algorithm, key type, subject or required extension).',
    action: 'Use the certificate exactly as the vendor key distribution service issued it.',
  },
  E_ATTEST_CERT_EXPIRED: {
    meaning: 'A certificate, CRL or signed collateral is not valid at the verification time.',
    action: 'Fetch current certificates or collateral from the vendor, or check the verification time passed with --at.',
  },
  E_ATTEST_REVOKED: {
    meaning: 'A certificate of the evidence chain is listed as revoked by the vendor CRL.',
    action: 'Treat the platform as untrusted until the vendor issues new keys, and investigate why its key was revoked.',
  },
  E_ATTEST_CRL: {
    meaning: 'A supplied certificate revocation list is not signed by the expected vendor certificate or cannot be parsed.',
    action: 'Supply the CRL exactly as the vendor publishes it (AMD KDS or Intel PCS).',
  },
  E_ATTEST_SIGNATURE: {
    meaning: 'The signature over the evidence does not verify with the attesting key: the evidence was altered or signed by another key.',
    action: 'Collect fresh evidence from the platform; do not trust this evidence.',
  },
  E_ATTEST_SIGNING_KEY: {
    meaning: 'The signing-key type declared in the evidence does not match the certificate that verifies it, or is not allowed.',
    action: 'Supply the certificate of the key the report declares (VCEK or VLEK) and check the policy lists that key type.',
  },
  E_ATTEST_POLICY_WEAKER: {
    meaning: 'A site\'s own local/attestation_policy.json accepts evidence that the signed local/attestation_policy.json.default refuses (the field is named).',
    action: 'Make the named field at least as strict as the signed default (narrower lists, higher minimums, no extra allow-flags), or remove the file to use the default.',
  },
  E_ATTEST_TCB_MISMATCH: {
    meaning: 'The TCB version certified by the attesting key certificate differs from the TCB the evidence reports.',
    action: 'Fetch the VCEK for the reported TCB from AMD KDS; a mismatch means the certificate belongs to another firmware level.',
  },
  E_ATTEST_CHIP_ID: {
    meaning: 'The chip identifier in the evidence does not match the hardware identifier in the attesting key certificate.',
    action: 'Fetch the VCEK for this chip; a mismatch means the certificate belongs to another processor.',
  },
  E_ATTEST_PRODUCT: {
    meaning: 'The processor product or stepping in the evidence does not match its certificate chain or the expected product.',
    action: 'Use the certificate chain of the product that produced the evidence.',
  },
  E_ATTEST_QE_BINDING: {
    meaning: 'The TDX quoting enclave report does not bind the attestation key that signed the quote.',
    action: 'Collect a new quote; this one was assembled from parts of different quotes.',
  },
  E_ATTEST_QE_IDENTITY: {
    meaning: 'The TDX quoting enclave does not match the Intel QE identity (signer, product id, attributes) or its TCB level is not acceptable.',
    action: 'Update the platform quoting enclave, or check that the QE identity collateral is current.',
  },
  E_ATTEST_COLLATERAL: {
    meaning: 'The TDX collateral (TCB info or QE identity) is not signed by the Intel TCB signing key, or does not belong to this platform.',
    action: 'Supply the TCB info and QE identity for this FMSPC as Intel PCS publishes them, with their issuer chain.',
  },
  E_ATTEST_TCB_STATUS: {
    meaning: 'The platform TCB level is not accepted (out of date, revoked, needing configuration, or matching no level).',
    action: 'Apply the vendor firmware and microcode updates, or widen the accepted TCB statuses in the attestation policy if your risk assessment allows it.',
  },
  E_ATTEST_NONCE: {
    meaning: 'The nonce in the evidence (REPORT_DATA or the SPDM request nonce) is not the one derived from this session: the evidence may be replayed from another session or peer.',
    action: 'Collect fresh evidence with the nonce derived from the current authenticated session.',
  },
  E_ATTEST_FWID: {
    meaning: 'The GPU firmware identity in the evidence does not match the FWID in the device certificate.',
    action: 'Do not trust this GPU; collect new evidence and its certificate chain from the same device.',
  },
  E_ATTEST_RIM: {
    meaning: 'A reference integrity manifest (RIM) has an invalid XML signature, a signer chain not ending at the pinned NVIDIA RIM root, or does not describe this device.',
    action: 'Use the RIM exactly as NVIDIA publishes it for this driver or VBIOS version.',
  },
  E_ATTEST_MEASUREMENT: {
    meaning: 'A measurement in the evidence is not among the allowed reference values (RIM golden values or the policy allow-list).',
    action: 'Investigate the firmware or image that was launched; add a measurement to the policy only after reviewing what it measures.',
  },
  E_ATTEST_POLICY: {
    meaning: 'The attestation policy file is invalid: a field is unknown, missing or out of range.',
    action: 'Fix the policy file; docs/attestation.md lists every field.',
  },
  E_ATTEST_POLICY_DEBUG: {
    meaning: 'The attested guest or enclave runs with debugging enabled, which lets the host read its memory.',
    action: 'Launch the confidential VM without the debug policy bit.',
  },
  E_ATTEST_POLICY_TCB: {
    meaning: 'A TCB component, security version or firmware version is below the minimum the attestation policy requires.',
    action: 'Update the platform firmware, or lower the minimum in the policy if your risk assessment allows it.',
  },
  E_ATTEST_POLICY_VMPL: {
    meaning: 'The report was requested from a VM privilege level (VMPL) the attestation policy does not allow.',
    action: 'Request the report from an allowed VMPL, or review the policy.',
  },
  E_ATTEST_POLICY_VIOLATION: {
    meaning: 'The evidence verifies but breaks a rule of the attestation policy (migration agent, SMT, product, host data or another listed field).',
    action: 'Read the check named in the message and change the platform configuration or the policy.',
  },
  E_ATTEST_MISSING_EVIDENCE: {
    meaning: 'The attestation policy requires an evidence type that was not presented.',
    action: 'Present evidence of every type the policy requires (for example snp and gpu).',
  },
  E_ATTEST_STALE: {
    meaning: 'The evidence is older than the freshness window of the attestation policy, or carries no nonce where the policy requires one.',
    action: 'Collect fresh evidence bound to the current session nonce.',
  },
  E_ATTEST_ATTESTER: {
    meaning: 'The local attester could not produce evidence (configfs-tsm unavailable, provider error, or the external command failed).',
    action: 'Check that the machine is a confidential VM with /sys/kernel/config/tsm/report, or that the configured attestation command works.',
  },
  E_ATTEST_FETCH: {
    meaning: 'Certificates or collateral were needed from a vendor service but network fetching is disabled or the fetch failed.',
    action: 'Supply the certificates and collateral as files for offline verification, or allow fetching.',
  },
} as const satisfies Catalog;
