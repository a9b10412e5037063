import { X509Certificate } from 'node:crypto';
import { PkiError } from '@flare/core';
import type { SignerCertificateCheck } from '../src/index.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';



/** A scratch folder removed by the returned cleanup. */
export function scratch(prefix = 'flare-policy-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const openssl = (dir: string, args: string[]) => execFileSync('/usr/bin/openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

/** Key algorithms for test certificates made with the openssl CLI. */
export type KeyKind = 'ec' | 'rsa' | 'ed25519';
const keyArgs = (kind: KeyKind) =>
  kind === 'ec' ? ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'] : kind === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'ED25519'];

/** A certificate and its key, as PEM text, made by the real openssl CLI. */
export interface TestCert {
  readonly cert: string;
  readonly key: string;
  readonly certPath: string;
  readonly keyPath: string;
}

/** A self-signed root CA (like a project's rootCA.pem). */
export function makeCa(dir: string, name: string, kind: KeyKind = 'ec'): TestCert {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.crt`);
  openssl(dir, ['genpkey', ...keyArgs(kind), '-out', keyPath]);
  openssl(dir, ['req', '-x509', '-new', '-key', keyPath, '-subj', `/CN=${name}`, '-days', '30', '-out', certPath,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, keyPath };
}

/** A leaf issued by `ca`: subject CN/O, and the given extensions (default: an admin client certificate). */
export function issue(
  dir: string,
  ca: TestCert,
  file: string,
  { cn, o, ou, role, kind = 'ec', ext = ['basicConstraints=critical,CA:FALSE', 'extendedKeyUsage=clientAuth'] }: { cn: string; o?: string; ou?: string; role?: string; kind?: KeyKind; ext?: string[] },
): TestCert {
  const keyPath = join(dir, `${file}.key`);
  const csrPath = join(dir, `${file}.csr`);
  const certPath = join(dir, `${file}.crt`);
  const extPath = join(dir, `${file}.ext`);
  openssl(dir, ['genpkey', ...keyArgs(kind), '-out', keyPath]);
  // FLARE-TS's subject layout (@flare/pki): CN = name, O = org, OU = participant type, unstructuredName = admin role.
  const subject = `/CN=${cn}${o === undefined ? '' : `/O=${o}`}${ou === undefined ? '' : `/OU=${ou}`}${role === undefined ? '' : `/unstructuredName=${role}`}`;
  openssl(dir, ['req', '-new', '-key', keyPath, '-subj', subject, '-out', csrPath]);
  writeFileSync(extPath, `${ext.join('\n')}\n`);
  openssl(dir, ['x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-CAcreateserial', '-days', '10', '-extfile', extPath, '-out', certPath]);
  return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, keyPath };
}

/**
 * A test double of @flare/pki's `verifyCertificate` bound to a root (policy may not import pki; the real pair is
 * tested in packages/cli/test/job-signature.test.ts): chain to `root` by node:crypto, validity, a revoked-serial
 * set, and the subject read as pki writes it (CN, O, OU = type, unstructuredName = role).
 */
export function certificateCheck(root: TestCert, revoked: ReadonlySet<string> = new Set()): SignerCertificateCheck {
  const ca = new X509Certificate(root.cert);
  return (pem) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (cause) {
      throw new PkiError('E_CERT_MALFORMED', 'not a certificate', { cause });
    }
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new PkiError('E_CERT_UNTRUSTED', 'not issued by the project root');
    if (Date.now() > Date.parse(cert.validTo)) throw new PkiError('E_CERT_EXPIRED', 'expired');
    if (revoked.has(cert.serialNumber.toUpperCase())) throw new PkiError('E_CERT_REVOKED', 'revoked');
    const field = (f: string) => cert.subject.split('\n').find((l) => l.startsWith(`${f}=`))?.slice(f.length + 1);
    const role = field('unstructuredName');
    return { name: field('CN') ?? '', org: field('O') ?? '', type: field('OU') ?? '', ...(role === undefined ? {} : { role }), publicKey: cert.publicKey };
  };
}
