import type { KeyObject } from 'node:crypto';
import { TransportError } from '@flare/core';
import type { ClientOptions, Target } from './client.js';
import type { ServerOptions } from './server.js';
import type { ConnectionSecurity } from './tls-options.js';

/**
 * The parts of a startup kit the transport reads. It is the shape of @flare/pki's `Kit` (declared here
 * structurally: the transport depends on @flare/core only), so a loaded kit can be passed as is.
 */
export interface TransportKit {
  readonly participant: { readonly name: string; readonly type: string };
  readonly rootCaPem: string;
  readonly certPem: string;
  readonly privateKey: KeyObject;
  readonly connectionSecurity: ConnectionSecurity;
  /** custom_ca_cert: the CA of a TLS-terminating proxy the client talks to instead of the server. */
  readonly customCaPem?: string | undefined;
  readonly server: { readonly name: string; readonly hosts: readonly string[]; readonly port: number; readonly adminPort: number };
}

/**
 * Server endpoint options from a server kit: its port, its connection security, its certificate and key, and
 * the root CA for client certificates. Add `host` (default loopback), `authenticate` and limits.
 *
 * @throws TransportError E_TRANSPORT_CONFIG when the kit is not a server kit.
 */
export function serverOptionsFromKit(kit: TransportKit): Pick<ServerOptions<unknown>, 'security' | 'port' | 'tls'> {
  if (kit.participant.type !== 'server') throw new TransportError('E_TRANSPORT_CONFIG', `a "${kit.participant.type}" kit cannot run a server endpoint`);
  return {
    security: kit.connectionSecurity,
    port: kit.server.port,
    tls: { certPem: kit.certPem, privateKey: kit.privateKey, caPem: kit.rootCaPem },
  };
}

/**
 * Client endpoint options from a client or admin kit: every server address (the kit's server hosts, which
 * hold default_host, host_names or the participant's connect_to) on the federated-learning port (admin kits:
 * the admin port), trust in the root CA or in custom_ca_cert, the kit certificate for mtls, and (TLS end to
 * end) the server's name as the TLS peer whose refusals are authentic.
 *
 * @throws TransportError E_TRANSPORT_CONFIG when the kit names no server address.
 */
export function clientOptionsFromKit(kit: TransportKit): Pick<ClientOptions<unknown>, 'security' | 'targets' | 'tls'> {
  const port = kit.participant.type === 'admin' ? kit.server.adminPort : kit.server.port;
  const hosts = kit.server.hosts.length > 0 ? kit.server.hosts : [kit.server.name];
  const targets: Target[] = hosts.map((host) => ({ host, port }));
  if (targets.length === 0) throw new TransportError('E_TRANSPORT_CONFIG', 'the kit names no server address');
  return {
    security: kit.connectionSecurity,
    targets,
    // End to end, the TLS peer must be the kit's server; behind a TLS-terminating proxy it is the proxy.
    tls:
      kit.customCaPem === undefined
        ? { caPem: kit.rootCaPem, certPem: kit.certPem, privateKey: kit.privateKey, peerName: kit.server.name }
        : { caPem: kit.customCaPem, certPem: kit.certPem, privateKey: kit.privateKey },
  };
}
