/** The SEV-SNP processor generations whose reports and certificates this package verifies. */
export type SnpProduct = 'Milan' | 'Genoa' | 'Turin';

/** A decoded TCB_VERSION: security patch levels of each firmware component. `fmc` exists on Turin only. */
export interface SnpTcb {
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
  readonly fmc?: number;
  /** The raw 64-bit value, as hex (16 digits, big-endian reading of the little-endian u64). */
  readonly raw: string;
}

/**
 * Decodes a TCB_VERSION for `product`. Milan and Genoa: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode
 * (go-sev-guest kds.DecomposeTCBVersion). Turin moves them: byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP,
 * 7 microcode (virtee snpguest; confirmed on the real Turin VCEK extensions).
 *
 * @example
 * ```ts
 * decodeSnpTcb(0x4700000002000100n, 'Turin') // { fmc: 0, bootloader: 1, tee: 0, snp: 2, microcode: 71, ... }
 * ```
 */
export function decodeSnpTcb(value: bigint, product: SnpProduct): SnpTcb {
  const b = (i: number) => Number((value >> BigInt(8 * i)) & 0xffn);
  const raw = value.toString(16).padStart(16, '0');
  if (product === 'Turin') return { fmc: b(0), bootloader: b(1), tee: b(2), snp: b(3), microcode: b(7), raw };
  return { bootloader: b(0), tee: b(1), snp: b(6), microcode: b(7), raw };
}

/** The components compared between two TCBs of the same product, in a stable order. */
export function tcbComponents(t: SnpTcb): Array<[string, number]> {
  const parts: Array<[string, number]> = [
    ['bootloader', t.bootloader],
    ['tee', t.tee],
    ['snp', t.snp],
    ['microcode', t.microcode],
  ];
  if (t.fmc !== undefined) parts.unshift(['fmc', t.fmc]);
  return parts;
}

/**
 * The product from the report's CPUID fields (reports v3 and later), per go-sev-guest kds.ProductLineCpuid
 * and snpguest get_processor_model: family 0x19 model 0x00-0x0F Milan, 0x10-0x1F or 0xA0-0xAF Genoa;
 * family 0x1A model 0x00-0x11 Turin. Undefined when unknown or not reported (v2).
 */
export function productFromCpuid(family: number, model: number): SnpProduct | undefined {
  if (family === 0x19 && model <= 0x0f) return 'Milan';
  if (family === 0x19 && ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf))) return 'Genoa';
  if (family === 0x1a && model <= 0x11) return 'Turin';
  return undefined;
}
