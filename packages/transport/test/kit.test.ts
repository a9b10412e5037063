import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clientOptionsFromKit, serverOptionsFromKit, type TransportKit } from '../src/index.js';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const kit = (type: string, extra: Partial<TransportKit> = {}): TransportKit => ({
  participant: { name: type === 'server' ? 'server1' : 'site-1', type },
  rootCaPem: 'ROOT',
  certPem: 'CERT',
  privateKey,
  connectionSecurity: 'mtls',
  server: { name: 'server1', hosts: ['server1.example.com', '10.0.0.5', '::1'], port: 8002, adminPort: 8003 },
  ...extra,
});

describe('options from a kit', () => {
  it('a server kit gives its port, security, certificate and the root CA for clients', () => {
    expect(serverOptionsFromKit(kit('server'))).toEqual({ security: 'mtls', port: 8002, tls: { certPem: 'CERT', privateKey, caPem: 'ROOT' } });
  });

  it('a client kit targets every server host (DNS, IPv4, IPv6) on the FL port and trusts the root', () => {
    const o = clientOptionsFromKit(kit('client'));
    expect(o.targets).toEqual([{ host: 'server1.example.com', port: 8002 }, { host: '10.0.0.5', port: 8002 }, { host: '::1', port: 8002 }]);
    // TLS is end to end: the TLS peer must be the kit's server for its refusals to be authentic.
    expect(o.tls).toEqual({ caPem: 'ROOT', certPem: 'CERT', privateKey, peerName: 'server1' });
  });

  it('an admin kit uses the admin port; custom_ca_cert replaces the root for a TLS-terminating proxy', () => {
    const o = clientOptionsFromKit(kit('admin', { customCaPem: 'PROXY-CA', connectionSecurity: 'tls' }));
    expect(o.targets.every((t) => t.port === 8003)).toBe(true);
    expect(o.tls?.caPem).toBe('PROXY-CA');
    // Behind the proxy the TLS peer is the proxy: no refusal before login is authentic.
    expect(o.tls?.peerName).toBeUndefined();
    expect(o.security).toBe('tls');
  });

  it('falls back to the server name when the kit lists no host, and refuses a client kit as a server (E_TRANSPORT_CONFIG)', () => {
    expect(clientOptionsFromKit(kit('client', { server: { name: 'server1', hosts: [], port: 1, adminPort: 2 } })).targets).toEqual([{ host: 'server1', port: 1 }]);
    expect(() => serverOptionsFromKit(kit('client'))).toThrow(expect.objectContaining({ code: 'E_TRANSPORT_CONFIG' }));
  });
});
