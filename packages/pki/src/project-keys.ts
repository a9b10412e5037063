// Which keys a project.yml participant may have. FLARE's own (nvflare/lighter constants PropKey, the sample
// projects and the provisioning docs) are accepted; kit builders add the keys they read (KitBuilder
// participantKeys); anything else is a typo until proven otherwise (a silently ignored `fed_learn_prot` leaves
// the server on the default port).

/** Participant keys FLARE-TS reads or FLARE defines, for every participant type. */
export const FLARE_PARTICIPANT_KEYS: ReadonlySet<string> = new Set([
  'name',
  'type',
  'org',
  'role',
  'fed_learn_port',
  'admin_port',
  'host_names',
  'default_host',
  'connect_to',
  'listening_host',
  'parent',
  'capacity',
  'connection_security',
  'custom_ca_cert',
  // FLARE-TS: a relay's mode, `forward` (default) or `aggregate` (hierarchical aggregation, docs/relays.md).
  'mode',
  // FLARE keys FLARE-TS does not use (kept so a FLARE project provisions as is).
  'cc_config',
  'use_aio',
  'protocol',
  'api_root',
  'port',
  'overseer_end_point',
]);

/** Levenshtein distance, bounded: returns `max + 1` as soon as it must exceed `max`. */
function distance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      row.push(v);
      best = Math.min(best, v);
    }
    if (best > max) return max + 1;
    prev = row;
  }
  return prev[b.length]!;
}

/** The known key closest to `key` (at most 2 edits, or a third of its length), if one is that close. */
export function didYouMean(key: string, known: Iterable<string>): string | undefined {
  const max = Math.max(1, Math.min(2, Math.floor(key.length / 3)));
  let best: string | undefined;
  let bestD = max + 1;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k, max);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}
