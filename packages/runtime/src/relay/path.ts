import { FlareRuntimeError } from '@flare/core';
import type { Kit } from '@flare/pki';

/**
 * The relays between a site (or relay) and the server, nearest the server first, from its kit's signed fqsn
 * (FLARE's fully qualified site name: `relay-top.relay-1.site-1` for a site whose project.yml `parent` is
 * relay-1, whose own parent is relay-top). Empty for a participant that connects to the server itself.
 *
 * @throws FlareRuntimeError E_RUNTIME_CONFIG when the fqsn does not end with the kit's own name.
 */
export function relayPathOf(kit: Kit): string[] {
  const type = kit.participant.type;
  if (type !== 'client' && type !== 'relay') return [];
  const config = kit.config as { readonly client?: { readonly fqsn?: unknown }; readonly relay?: { readonly fqsn?: unknown } };
  const fqsn = (type === 'relay' ? config.relay : config.client)?.fqsn;
  if (typeof fqsn !== 'string') return [];
  const parts = fqsn.split('.');
  if (parts.at(-1) !== kit.participant.name || parts.some((p) => p.length === 0)) {
    throw new FlareRuntimeError('E_RUNTIME_CONFIG', `the kit of '${kit.participant.name}' names fqsn '${fqsn}', which does not end with its own name: re-provision it`);
  }
  return parts.slice(0, -1);
}
