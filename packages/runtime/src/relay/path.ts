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

/**
 * The relay whose aggregation this participant contributes to, when its parent relay runs in aggregate mode:
 * provisioning then names that relay as the kit's server identity, and the participant's session ends there
 * (no relay path is signed: it logs in to the relay itself). Undefined when it reaches the server (directly or
 * through forwarding relays).
 */
export function aggregatingRelayOf(kit: Kit): string | undefined {
  const parent = relayPathOf(kit).at(-1);
  return parent !== undefined && kit.server.name === parent ? parent : undefined;
}

/**
 * The sites below each aggregating relay, by relay name, from a server's or an aggregating relay's kit
 * (`relay_tree`, written by provisioning from project.yml): an aggregating relay's update counts with at most
 * the steps these sites could claim. Empty when the project has no aggregating relay there.
 */
export function relayTreeOf(kit: Kit): ReadonlyMap<string, readonly string[]> {
  const config = kit.config as { readonly servers?: ReadonlyArray<{ readonly relay_tree?: unknown }>; readonly relay?: { readonly relay_tree?: unknown } };
  const raw = kit.participant.type === 'server' ? config.servers?.[0]?.relay_tree : config.relay?.relay_tree;
  const tree = new Map<string, readonly string[]>();
  if (raw === null || typeof raw !== 'object') return tree;
  for (const [relay, sites] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(sites) && sites.every((s): s is string => typeof s === 'string')) tree.set(relay, [...sites]);
  }
  return tree;
}

/** The mode project.yml gave a relay kit: `aggregate` or `forward` (the default). */
export function relayModeOf(kit: Kit): 'forward' | 'aggregate' {
  const config = kit.config as { readonly relay?: { readonly mode?: unknown } };
  return config.relay?.mode === 'aggregate' ? 'aggregate' : 'forward';
}
