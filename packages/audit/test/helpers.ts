import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A scratch folder and its cleanup. */
export function scratch(prefix = 'flare-audit-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A site key like a kit's, and its self-signed certificate made by the real openssl CLI. */
export interface SiteKey {
  readonly privateKey: KeyObject;
  readonly pem: string;
  readonly cert: string;
}

export function siteKey(dir: string, name: string, kind: 'ec' | 'rsa' | 'ed25519' = 'ec'): SiteKey {
  const { privateKey } =
    kind === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.crt`);
  writeFileSync(keyPath, pem, { mode: 0o600 });
  execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', keyPath, '-subj', `/CN=${name}/O=org_a`, '-days', '10', '-out', certPath], { stdio: 'ignore' });
  return { privateKey, pem, cert: readFileSync(certPath, 'utf8') };
}



/** The lines of a log file (without the trailing empty string). */
export const linesOf = (path: string): string[] => readFileSync(path, 'utf8').split('\n').slice(0, -1);
export const writeLines = (path: string, lines: string[]): void => writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
