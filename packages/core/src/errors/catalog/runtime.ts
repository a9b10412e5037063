import type { Catalog } from '../info.js';

/** Error codes of the server, client and admin engines (@flare/runtime). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const RUNTIME_CODES = {
  E_RUNTIME_JOB_INVALID: {
    meaning: 'A job definition (meta.json) does not match the job schema: a field is missing, unknown, of the wrong type or out of range.',
    action: 'Fix the field the message names in the job folder\'s meta.json and submit again; unknown fields are refused on purpose.',
  },
  E_RUNTIME_JOB_NOT_FOUND: {
    meaning: 'No job with this id exists in the server\'s job store.',
    action: 'List the jobs with `flare admin list` and use an id it shows.',
  },
  E_RUNTIME_JOB_STATE: {
    meaning: 'The requested action is not possible in the job\'s current state (e.g. downloading a job that has not finished, aborting one that already ended).',
    action: 'Check the job with `flare admin status JOB` and retry when it is in a state that allows the action.',
  },
  E_RUNTIME_NOT_AUTHORIZED: {
    meaning: 'The server\'s authorization policy does not give this admin the right the command needs.',
    action: 'Ask the project admin for the right (see the server\'s local/authorization.json), or use an admin kit whose role has it.',
  },
  E_RUNTIME_DEPLOY_REFUSED: {
    meaning: 'A site refused to deploy the job; its own policy decided, and its audit log says why.',
    action: 'Read the reason code in the message, fix the job (scope, components, resources) or ask the site to change its policy.',
  },
  E_RUNTIME_SUBMITTER_REFUSED: {
    meaning: 'This site\'s authorization.json does not give the job\'s submitter the submit_job right, so the site will not run the job.',
    action: 'Ask the site admin to grant submit_job to the submitter\'s role (and org condition), or have an authorized admin submit the job.',
  },
  E_RUNTIME_SCOPE_UNKNOWN: {
    meaning: 'The job names a privacy scope that this site\'s privacy.json does not define, so the site refuses it.',
    action: 'Use a scope the site defines (the site admin can list them), or ask the site to add the scope.',
  },
  E_RUNTIME_COMPONENT_FORBIDDEN: {
    meaning: 'The job names a component that is not on this site\'s component allow-list.',
    action: 'Use only components the site admits, or ask the site admin to add this one to its allow-list.',
  },
  E_RUNTIME_COMPONENT_UNKNOWN: {
    meaning: 'The job names a component or filter that this site does not have installed.',
    action: 'Check the component name for typos, or install the package that provides it at the site.',
  },
  E_RUNTIME_BYOC_REFUSED: {
    meaning: 'The job brings its own code (BYOC) but the submitter lacks the byoc right at this site or the site has not consented to BYOC.',
    action: 'Remove the custom code from the job, or ask the site admin to grant the byoc right and consent to BYOC in its resources.json.',
  },
  E_RUNTIME_BYOC_SIGNATURE: {
    meaning: 'The job\'s custom-code bundle is not signed by the submitter, or its files do not match the signed digests.',
    action: 'Re-submit the job with `flare admin submit` from the submitter\'s own kit; never edit a submitted bundle.',
  },
  E_RUNTIME_RESOURCES: {
    meaning: 'The job needs more resources (concurrent jobs, GPUs, memory) than this site allows or has free.',
    action: 'Lower the job\'s resource needs, wait for other jobs to end, or ask the site admin to raise its resources.json limits.',
  },
  E_RUNTIME_MIN_CLIENTS: {
    meaning: 'A round ended with fewer results than the job\'s min_clients, after every retry.',
    action: 'Check which sites are down or refusing (their audit logs say why), lower min_clients, or raise the round timeout.',
  },
  E_RUNTIME_PROTOCOL: {
    meaning: 'A peer sent a message that does not fit the runtime protocol (unknown type, wrong sender kind, or a reply nobody asked for).',
    action: 'Check that every participant runs the same FLARE-TS version; a persistent error means a faulty or hostile peer.',
  },
  E_RUNTIME_TIMEOUT: {
    meaning: 'A request to the server got no answer within its time limit.',
    action: 'Check that the server is running and reachable, then retry; raise the timeout for slow links.',
  },
  E_RUNTIME_DISCONNECTED: {
    meaning: 'The connection to the peer closed before the request was answered.',
    action: 'Check the peer process and the network, then retry; the audit logs show whether the request was processed.',
  },
  E_RUNTIME_CHECKPOINT_FORGED: {
    meaning: "A job's checkpoint or state on the server's disk carries no valid MAC of this server's key: someone else wrote it, or changed it.",
    action: 'The server resumes from the previous checkpoint that verifies (audited as checkpoint_refused); find out who wrote to the job store, and restore it from a backup.',
  },
  E_RUNTIME_INITIAL_MODEL: {
    meaning: 'The global model a site received for round 0 is not the initial model the job\'s admin signed: the server swapped it.',
    action: 'The site refuses the task (audited as initial_model_refused); do not trust that server with the job. Resubmit the job and find out who changed the model.',
  },
  E_RUNTIME_HOP_UNSIGNED: {
    meaning: 'A cyclic hop arrived without the signature of the site the server says trained its model (or with a malformed one), after round 0 or after this site already held a signed hop of the job.',
    action: 'The site refuses the task (audited as hop_refused naming the claimed trainer); the server or the previous site dropped the signature. Give every site its kit identity (`flare client` does) and find out who changed the hop.',
  },
  E_RUNTIME_HOP_BINDING: {
    meaning: 'A cyclic hop\'s signature is for another job, another site than the one the server names, a site outside the signed job, or a place in the job that is not before this task or is older than what this site already holds (a replay or rollback).',
    action: 'The site refuses the task (audited as hop_refused naming the claimed trainer); do not trust that server with the job, and compare the sites\' audit logs (hop_signed, hop_verified).',
  },
  E_RUNTIME_HOP_MODEL: {
    meaning: 'The model of a cyclic hop is not the one the site that trained it signed: its tensors were changed on the way (one weight is enough).',
    action: 'The site refuses the task (audited as hop_refused naming the claimed trainer); the server or something on its path altered the model. Do not trust that server with the job.',
  },
  E_RUNTIME_HOP_SIGNATURE: {
    meaning: 'A cyclic hop\'s signature does not verify: the certificate sent with it is not a client certificate of the named site issued by the project root, valid now and not revoked by the newest CRL the receiving site holds, or the signature is not that key\'s over the hop.',
    action: 'The site refuses the task (audited as hop_refused naming the claimed trainer); a revoked or foreign signer, or a forged signature. Check `flare cert` for the site, and that the receiving site has the newest CRL.',
  },
  E_RUNTIME_CHECKPOINT_ROLLBACK: {
    meaning: 'A job\'s checkpoint on the server\'s disk is authentic but older than the newest one the server\'s audit log records: someone restored an earlier copy, or removed the newest.',
    action: 'The server refuses to resume from it (audited as checkpoint_refused) and fails the job; restore the newest checkpoint from a backup, or resubmit the job.',
  },
  E_RUNTIME_JOB_LEDGER_ROLLBACK: {
    meaning: 'A site\'s job ledger (job-ledger.json) lacked jobs, or held older states of jobs, that the site\'s own audit log recorded: the file was deleted or an older copy restored.',
    action: 'The site restored the missing entries from its audit log (audited as job_ledger_repaired, naming the jobs) and refuses those jobs again; find out who changed the file.',
  },
  E_RUNTIME_CHECKPOINT: {
    meaning: 'A job\'s checkpoint on disk is unreadable or inconsistent, so the job cannot resume from it.',
    action: 'Restore the job folder from a backup; never edit checkpoint files by hand. The job can be re-submitted from the start.',
  },
  E_RUNTIME_ABORTED: {
    meaning: 'The job was aborted by an admin before it finished.',
    action: 'Nothing to fix; submit the job again to re-run it.',
  },
  E_RUNTIME_TASK_FAILED: {
    meaning: 'A site could not complete its task (its learner or a filter failed), so it sent no update this round.',
    action: 'Read the site\'s log and audit log for the cause named in the message; the round continues with the other sites.',
  },
  E_RUNTIME_WORKSPACE: {
    meaning: 'The runtime\'s workspace folder is missing, unwritable or holds a file that is not what it should be.',
    action: 'Check the folder given with --workspace (or the kit\'s parent folder) exists and is writable by this user.',
  },
  E_RUNTIME_HE_UNAVAILABLE: {
    meaning: 'Sites sent encrypted (HE) updates but this server has no HE context to aggregate them with, so they are refused rather than averaged as bytes.',
    action: 'Provision the project with the HE step (project.yml HEBuilder, or `flare provision --he`) and start the server from a kit holding startup/server_context.seal.',
  },
  E_RUNTIME_ENCRYPTION_MIXED: {
    meaning: 'One round received both encrypted and plaintext updates (or a plaintext update for an encrypted global model), which cannot be averaged together.',
    action: 'Make every site of the job use the same privacy scope: all with he-encrypt in their result filters, or none.',
  },
  E_RUNTIME_ATTESTATION_UNBOUND: {
    meaning: 'Attestation was required on a connection without an authenticated session to bind evidence to (no exported keying material), so no evidence from it can be trusted.',
    action: 'Use the @flare/auth login (the runtime\'s default sessionAuthenticator) on every connection of a federation that requires attestation.',
  },
  E_RUNTIME_SERVER_UNREACHABLE: {
    meaning: 'A site could not reach the server for longer than it was told to keep trying (`--give-up-after`), so it stopped.',
    action: 'Start the server (or fix the network or the address in the kit), then start the site again; without --give-up-after a site keeps trying forever.',
  },
  E_RUNTIME_JOB_TOO_LARGE: {
    meaning: 'A job\'s meta.json, custom/ files or initial model is larger than this participant accepts.',
    action: 'Make the named part smaller (move data out of custom/, shrink meta.json), or raise the limit (maxMetaBytes, maxJobFilesBytes, maxJobFiles) on the server and the sites.',
  },
  E_RUNTIME_OPTIONAL_PEER: {
    meaning: 'A kit, a policy or the caller asked for homomorphic encryption or attestation, and the package that provides it is not installed.',
    action: 'Install the package the message names next to @flare/runtime (e.g. `npm install @flare/filters-he` or `npm install @flare/cc-attest`).',
  },
  E_RUNTIME_RELAY_WEIGHT: {
    meaning: 'An update claimed to aggregate sites it may not (a relay naming sites not provisioned below it, a site claiming to aggregate others), or an aggregating relay claimed more local steps than its sites may count with, so it was refused or capped.',
    action: 'Check the relay_tree of the receiver\'s kit (project.yml `parent` and `mode: aggregate`) and the relay\'s sites; a capped relay is accepted with the cap (`max_steps` per site in local/aggregation.json).',
  },
  E_RUNTIME_RELAY_MODE: {
    meaning: 'An aggregating relay was asked to run what it cannot aggregate for its sites: a workflow other than scatter_and_gather, a server optimizer (FedOpt: it must step once, at the server), or encrypted updates it holds no key or scheme for.',
    action: 'Run the job directly with those sites (or through forwarding relays: `mode: forward`), or use scatter_and_gather through aggregating relays.',
  },
  E_RUNTIME_RELAY_LIMIT: {
    meaning: 'A participant behind a relay went over one of the relay\'s limits (participants at once, messages or bytes per second), so the relay closed its connection.',
    action: 'The site reconnects after a backoff; if it is legitimate traffic, raise the relay\'s limits (`flare relay --max-sites`, `--max-msgs-per-s`, `--max-mib-per-s`).',
  },
  E_RUNTIME_RELAY_REVOKED: {
    meaning: 'A forwarding relay this session came through has a revoked certificate (a newer CRL lists it), so the server or the relay above closed the session it carried; the site itself is not revoked.',
    action: 'The site keeps retrying; logins through the revoked relay are refused (E_CERT_REVOKED) until the relay runs with a new certificate (re-provision it) or the site is provisioned under another relay.',
  },
  E_RUNTIME_CONFIG: {
    meaning: 'A participant\'s own configuration file (site.json, attestation.json) is not valid JSON, misses a field or has one it does not know.',
    action: 'Fix the field (or the line) the message names in the file it names, then start the participant again.',
  },
  E_RUNTIME_KIT_TYPE: {
    meaning: 'The startup kit given is of another participant type than the command needs (e.g. a site kit given to `flare server`).',
    action: 'Pass the kit made for this participant with --kit: a server kit to `flare server`, a client kit to `flare client`, an admin kit to `flare admin`.',
  },
  E_RUNTIME_AGGREGATOR_POLICY: {
    meaning: 'The server\'s own aggregation policy (local/aggregation.json) refuses the aggregator the job names: it requires a robust aggregator or a norm bound, or does not let jobs opt out of the default.',
    action: 'Name an aggregator the server\'s policy allows in meta.json (or none, for the server\'s default), or ask the server admin to change local/aggregation.json.',
  },
  E_RUNTIME_SIMULATION: {
    meaning: 'The simulator cannot run the job as asked: the number of virtual sites disagrees with the job\'s deploy list, or the simulated job did not end in time.',
    action: 'Deploy the job to ["@ALL"] (or leave --sites out to use its deploy list); for a timeout, lower the rounds or round_timeout_s in meta.json, or look at the round the output stopped at.',
  },
} as const satisfies Catalog;
