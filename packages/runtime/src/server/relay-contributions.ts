import { FlareRuntimeError, META, type AuditHook, type FLModel } from '@flare/core';

/**
 * The meta key of an aggregating relay's update naming the sites it aggregated (a JSON array of names). The
 * receiver checks every name is provisioned below that relay and audits them with the contribution.
 */
export const RELAY_SITES_META = 'flare.relay.sites';

/** The aggregating relays below a server (or relay), each with the sites provisioned below it (`relayTreeOf`). */
export type RelayTree = ReadonlyMap<string, readonly string[]>;

/**
 * The most local steps one contributor's update counts with: `maxSteps` for a site, and for an aggregating
 * relay the sum of the caps of the sites provisioned below it, so a relay weighs at most what its sites could
 * claim together and a hostile relay cannot outweigh the rest of the federation by claiming more.
 */
export function contributorMaxSteps(relays: RelayTree, maxSteps: number | undefined): (from: string) => number | undefined {
  return (from) => {
    if (maxSteps === undefined) return undefined;
    const below = relays.get(from);
    return below === undefined ? maxSteps : maxSteps * below.length;
  };
}

/**
 * Checks an update against what its sender may claim about aggregation: an aggregating relay's must name
 * the sites it aggregated, each provisioned below it, once; a site's may name none. A relay's steps count
 * with at most `maxSteps` per site it names (the update to accept carries the capped count). Audits a relay's
 * contribution (`relay_contribution`: the sites, its steps, its cap, and E_RUNTIME_RELAY_WEIGHT when capped)
 * so the audit log shows the tree.
 *
 * @throws FlareRuntimeError E_RUNTIME_RELAY_WEIGHT naming the sender and the claim at fault.
 */
export function checkRelayContribution(update: FLModel, from: string, relays: RelayTree, maxSteps: number | undefined, audit?: AuditHook): FLModel {
  const claimed = update.meta[RELAY_SITES_META];
  const below = relays.get(from);
  if (below === undefined) {
    if (claimed !== undefined) throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `'${from}' is not an aggregating relay of this project, yet its update claims to aggregate other sites (meta ${RELAY_SITES_META})`);
    return update;
  }
  if (!Array.isArray(claimed) || claimed.length === 0 || claimed.length > below.length || !claimed.every((s) => typeof s === 'string')) {
    throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `the update of aggregating relay '${from}' must name in meta ${RELAY_SITES_META} the sites it aggregated (at most the ${below.length} provisioned below it)`);
  }
  const names = claimed as string[];
  const stranger = names.find((s) => !below.includes(s));
  if (stranger !== undefined) throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `aggregating relay '${from}' claims site '${stranger.slice(0, 80)}', which is not provisioned below it`);
  if (new Set(names).size !== names.length) throw new FlareRuntimeError('E_RUNTIME_RELAY_WEIGHT', `aggregating relay '${from}' names a site twice in meta ${RELAY_SITES_META}`);
  const steps = Number(update.meta[META.NUM_STEPS_CURRENT_ROUND] ?? 1);
  // The caps of the sites it names, not of all below it: sites that sent nothing lend it no weight.
  const relayCap = maxSteps === undefined ? undefined : maxSteps * names.length;
  const capped = relayCap !== undefined && !(steps <= relayCap);
  audit?.({
    action: 'relay_contribution',
    user: from,
    msg: `relay ${from} aggregated ${names.length} sites (${names.join(', ')}) into one update of ${steps} steps${capped ? `, capped at ${relayCap}` : ''}`.slice(0, 2000),
    data: { relay: from, sites: [...names], steps, ...(relayCap === undefined ? {} : { cap: relayCap }), ...(capped ? { code: 'E_RUNTIME_RELAY_WEIGHT' } : {}) },
  });
  return capped ? { ...update, meta: { ...update.meta, [META.NUM_STEPS_CURRENT_ROUND]: relayCap } } : update;
}
