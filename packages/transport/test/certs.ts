// Test certificates made by the real openssl CLI (/usr/bin/openssl): a project root CA, a server and a client
// leaf, and an unrelated CA with its own client. The transport depends on @flare/core only, so its tests do not
// use @flare/pki; @flare/auth's tests use pki's provision() for real kits.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  readonly caPem: string;
  readonly serverCertPem: string;
  readonly serverKeyPem: string;
  readonly clientCertPem: string;
  readonly clientKeyPem: string;
  readonly otherCaPem: string;
  readonly otherClientCertPem: string;
  readonly otherClientKeyPem: string;
  /** A server certificate of the other CA: a TLS-terminating proxy's own certificate. */
  readonly proxyCertPem: string;
  readonly proxyKeyPem: string;
  readonly dir: string;
}

const ossl = (dir: string, args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

function ca(dir: string, name: string): void {
  ossl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  ossl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '30', '-subj', `/CN=${name}`, '-out', `${name}.pem`,
    '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function leaf(dir: string, caName: string, name: string, ext: string): void {
  ossl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.ec`]);
  ossl(dir, ['pkcs8', '-topk8', '-nocrypt', '-in', `${name}.ec`, '-out', `${name}.key`]);
  ossl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}/O=test`, '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  ossl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '30', '-sha256',
    '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
}

let cached: TestPki | undefined;

/** Creates (once per test file) the certificates in a temporary folder. */
export function testPki(): TestPki {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'flare-transport-'));
  ca(dir, 'root');
  ca(dir, 'other');
  leaf(dir, 'root', 'server', 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n');
  leaf(dir, 'root', 'site-1', 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:site-1\n');
  leaf(dir, 'other', 'proxy', 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  leaf(dir, 'other', 'intruder', 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  const r = (f: string): string => readFileSync(join(dir, f), 'utf8');
  cached = {
    dir,
    caPem: r('root.pem'),
    serverCertPem: r('server.crt'),
    serverKeyPem: r('server.key'),
    clientCertPem: r('site-1.crt'),
    clientKeyPem: r('site-1.key'),
    otherCaPem: r('other.pem'),
    otherClientCertPem: r('intruder.crt'),
    otherClientKeyPem: r('intruder.key'),
    proxyCertPem: r('proxy.crt'),
    proxyKeyPem: r('proxy.key'),
  };
  return cached;
}

/** Resolves when `promise` settles, or fails the test after `ms` (no sleeps: wait for the event, bounded). */
export function within<T>(promise: Promise<T>, ms = 60_000, what = 'event'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e)),
    );
  });
}
