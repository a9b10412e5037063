import { AMD_ARK_GENOA, AMD_ARK_MILAN, AMD_ARK_TURIN, AMD_ASK_GENOA, AMD_ASK_MILAN, AMD_ASK_TURIN, AMD_ASVK_GENOA, AMD_ASVK_MILAN, AMD_ASVK_TURIN, INTEL_SGX_ROOT_CA, NVIDIA_DEVICE_IDENTITY_CA, NVIDIA_RIM_ROOT_CA } from './roots.js';
import type { SnpProduct } from './snp/tcb.js';

/**
 * The certificates a verifier trusts. {@link VENDOR_TRUST} holds the pinned vendor roots and is the default
 * everywhere; pass another value only for synthetic test evidence (the test attester makes one), never to
 * accept real evidence from an unpinned root.
 */
export interface TrustAnchors {
  /** AMD Root Keys per product (PEM). */
  readonly amdArk: Readonly<Record<SnpProduct, string>>;
  /** ASK and ASVK certificates available without a network fetch (PEM); they are still verified against the ARK. */
  readonly amdIntermediates: readonly string[];
  /** The Intel SGX Root CA (PEM). */
  readonly intelRoot: string;
  /** The NVIDIA Device Identity CA (PEM). */
  readonly nvidiaDeviceRoot: string;
  /** The NVIDIA CoRIM signing Root CA (PEM). */
  readonly nvidiaRimRoot: string;
  /** A label reported in results ("vendor" for the pinned roots). */
  readonly label: string;
}

/** The pinned vendor roots (see roots.ts for sources and fingerprints). */
export const VENDOR_TRUST: TrustAnchors = Object.freeze({
  amdArk: Object.freeze({ Milan: AMD_ARK_MILAN.pem, Genoa: AMD_ARK_GENOA.pem, Turin: AMD_ARK_TURIN.pem }),
  amdIntermediates: Object.freeze([AMD_ASK_MILAN.pem, AMD_ASK_GENOA.pem, AMD_ASK_TURIN.pem, AMD_ASVK_MILAN.pem, AMD_ASVK_GENOA.pem, AMD_ASVK_TURIN.pem]),
  intelRoot: INTEL_SGX_ROOT_CA.pem,
  nvidiaDeviceRoot: NVIDIA_DEVICE_IDENTITY_CA.pem,
  nvidiaRimRoot: NVIDIA_RIM_ROOT_CA.pem,
  label: 'vendor',
});
