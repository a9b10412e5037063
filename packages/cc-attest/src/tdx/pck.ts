import { AttestError } from '@flare/core';
import { hex } from '../bytes.js';
import type { ParsedCertificate } from '../cert.js';
import { children, oid, readTlv, TAG, uint } from '../der.js';

// The SGX extension of PCK certificates (Intel "SGX PCK Certificate and CRL Profile": OID
// 1.2.840.113741.1.13.1 with .1 PPID, .2 TCB (.2.1-.2.16 component SVNs, .2.17 PCESVN, .2.18 CPUSVN),
// .3 PCE-ID, .4 FMSPC).

const SGX = '1.2.840.113741.1.13.1';

/** What a PCK certificate says about the platform's TCB. */
export interface PckTcb {
  readonly sgxComponents: readonly number[];
  readonly pceSvn: number;
  readonly cpuSvn: string;
  readonly pceId: string;
  readonly fmspc: string;
}

/** Reads the SGX extension of a PCK leaf. @throws AttestError E_ATTEST_CERT_PROFILE */
export function readPckTcb(cert: ParsedCertificate): PckTcb {
  const ext = cert.extensions.get(SGX);
  if (ext === undefined) throw new AttestError('E_ATTEST_CERT_PROFILE', 'PCK certificate has no SGX extension (1.2.840.113741.1.13.1)');
  const fields = new Map<string, Uint8Array>();
  const tcb = new Map<string, Uint8Array>();
  for (const item of children(readTlv(ext).value)) {
    const [id, value] = children(item.value);
    if (id?.tag !== TAG.OID || value === undefined) continue;
    const name = oid(id.value);
    fields.set(name, value.raw);
    if (name === `${SGX}.2`) {
      for (const comp of children(value.value)) {
        const [cid, cv] = children(comp.value);
        if (cid?.tag === TAG.OID && cv !== undefined) tcb.set(oid(cid.value), cv.value);
      }
    }
  }
  const num = (n: number) => {
    const v = tcb.get(`${SGX}.2.${n}`);
    if (v === undefined) throw new AttestError('E_ATTEST_CERT_PROFILE', `PCK certificate lacks TCB component ${n}`);
    return uint(v);
  };
  const octets = (name: string) => {
    const v = fields.get(name);
    if (v === undefined) throw new AttestError('E_ATTEST_CERT_PROFILE', `PCK certificate lacks ${name}`);
    return hex(readTlv(v).value);
  };
  return {
    sgxComponents: Array.from({ length: 16 }, (_, i) => num(i + 1)),
    pceSvn: num(17),
    cpuSvn: hex(tcb.get(`${SGX}.2.18`) ?? new Uint8Array()),
    pceId: octets(`${SGX}.3`),
    fmspc: octets(`${SGX}.4`),
  };
}
