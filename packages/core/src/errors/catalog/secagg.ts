import type { Catalog } from '../info.js';

/** Error codes of masking secure aggregation and distributed DP (@flare/secagg). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const SECAGG_CODES = {
  E_SECAGG_CONFIG: {
    meaning: 'The secure-aggregation round configuration is invalid: the site list, the neighbourhood degree, the threshold, the ring size or the encoding break a rule of the protocol, or this site is not in the round.',
    action: 'Recompute the round with planSecAggRound (or fix the job\'s secagg settings); the message names the field and the rule it breaks.',
  },
  E_SECAGG_PARAMS: {
    meaning: 'No secure-aggregation or distributed-DP parameters satisfy the request: the ring is too small for the number of sites, the dimension and the noise, or no neighbourhood size reaches the stated failure probability.',
    action: 'Use more bits, fewer sites per round, a larger clip-to-noise ratio or a looser failure probability; the message says which bound failed and by how much.',
  },
  E_SECAGG_MALFORMED: {
    meaning: 'A secure-aggregation message could not be parsed: not a frame, truncated, a header that fails its schema, or a payload whose length does not match the round.',
    action: 'The sender runs an incompatible or broken implementation, or the bytes were altered on the way: check both sides run the same @flare/secagg version; the message names the phase and the field.',
  },
  E_SECAGG_TOO_LARGE: {
    meaning: 'A secure-aggregation message is larger than anything the round\'s configuration allows, so it was refused before being parsed.',
    action: 'Check the sender: an honest site or server never sends more than the round needs; if the round really needs more, the configuration (sites, dimension, bits) is wrong.',
  },
  E_SECAGG_CONTEXT: {
    meaning: 'A secure-aggregation message is bound to another job, round or configuration than the one in progress (a replay from an earlier round, or a server showing sites different configurations).',
    action: 'Discard the message; if it repeats, the server or a relay replays or mixes rounds: investigate it.',
  },
  E_SECAGG_PHASE: {
    meaning: 'A secure-aggregation message arrived in the wrong phase of the protocol, or after the participant had stopped.',
    action: 'Deliver the phases in order (setup, keys, shares, masked input, consistency, unmask); a participant that refused a message stays stopped for this round: start a new round.',
  },
  E_SECAGG_REPLAY: {
    meaning: 'A second message for a phase that is already done arrived (from a site at the server, or from the server at a site).',
    action: 'Nothing is accepted twice: if the relay retried, drop the duplicate; otherwise the sender replays messages: investigate it.',
  },
  E_SECAGG_UNKNOWN_SITE: {
    meaning: 'A secure-aggregation message names or comes from a site that is not in the round, or that is not a neighbour where a neighbour is required.',
    action: 'Check the round\'s site list; the server must only relay messages between the sites the round names and along the neighbourhood graph.',
  },
  E_SECAGG_SIGNATURE: {
    meaning: 'The signature of a site over its advertised keys, or over the survivor set in the consistency check, does not verify with that site\'s identity key.',
    action: 'The keys were altered on the way or signed by another key: refuse the round and check which site\'s certificate the verifier used; the message names the site.',
  },
  E_SECAGG_BAD_KEY: {
    meaning: 'An advertised key-agreement public key is malformed, repeats another site\'s key, or yields an all-zero shared secret (a low-order point).',
    action: 'The advertising site is broken or malicious: the round refuses it; exclude the site and start a new round.',
  },
  E_SECAGG_TAMPERED: {
    meaning: 'An encrypted share failed authentication: it was altered, truncated, or encrypted for another sender, recipient, job or round.',
    action: 'The server or a relay altered or rerouted shares: the site stops for this round; investigate the relay path.',
  },
  E_SECAGG_TOO_FEW: {
    meaning: 'Fewer sites than the threshold remain at a phase of the protocol, so the round cannot complete without weakening its guarantee.',
    action: 'Start a new round when more sites are online, or plan the round for a larger dropout fraction (a smaller threshold relative to the degree).',
  },
  E_SECAGG_BELOW_THRESHOLD: {
    meaning: 'Fewer shares than the threshold arrived for a site\'s secret, so the server cannot remove that site\'s mask and the sum cannot be unmasked.',
    action: 'Too many neighbours of that site dropped during unmasking: the round fails; start a new round, or plan for more dropouts.',
  },
  E_SECAGG_SHARE_INVALID: {
    meaning: 'The secret reconstructed from a site\'s shares does not match what the site committed to (its public key or its self-mask commitment): some share was wrong.',
    action: 'A site revealed a false share: the round fails rather than produce a wrong sum; find the site from the audit trail and exclude it.',
  },
  E_SECAGG_INCONSISTENT: {
    meaning: 'The consistency check failed: the server showed this site a survivor set that its neighbours did not sign, or that contradicts what the site saw earlier.',
    action: 'The server gave sites different views of who survived, which could reveal an individual update: the site refuses to unmask; investigate the server.',
  },
  E_SECAGG_BOTH_SHARES: {
    meaning: 'The server asked this site for the share of a neighbour\'s self-mask seed after it had revealed that neighbour\'s mask-key share, or the reverse: with both, the neighbour\'s update could be unmasked alone.',
    action: 'The site refuses; an honest server never asks twice: investigate the server.',
  },
  E_SECAGG_DP_TOO_FEW: {
    meaning: 'Fewer sites survived than the distributed-DP plan assumes add noise, so the sum would carry less noise than each site\'s privacy accounting charged for.',
    action: 'The round stops before unmasking; start a new round with more sites online, or plan the noise for fewer honest sites.',
  },
  E_SECAGG_NON_FINITE: {
    meaning: 'The update to aggregate contains NaN or infinite values, so it cannot be clipped, quantized or protected.',
    action: 'Fix the local training that diverged (lower the learning rate, check the data), then run the round again.',
  },
  E_SECAGG_DIMENSION: {
    meaning: 'The update to aggregate does not have the number of values the round was planned for.',
    action: 'Plan the round with the model\'s parameter count, or send the same tensors as every other site.',
  },
  E_SECAGG_SAMPLER: {
    meaning: 'The injected discrete-Gaussian sampler returned values that are not finite integers, so the noise cannot be trusted.',
    action: 'Pass the CSPRNG sampler from @flare/filters-dp (the runtime does); a custom sampler must fill integers only.',
  },
  E_SECAGG_INCOMPATIBLE: {
    meaning: 'The job asks for secure aggregation together with something that needs to see individual updates or that hides them differently (a robust aggregator, server-side filters of single updates, homomorphic encryption).',
    action: 'Choose either secure aggregation with a mean-based aggregator (fedavg, fedavgm, fedadagrad, fedadam, fedyogi) or the other feature; the message names the conflicting setting.',
  },
} as const satisfies Catalog;
