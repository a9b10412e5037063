import type { Catalog } from '../info.js';

/** Error codes of site policies: authorization, privacy, resources, components, authenticators (@flare/policy). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const POLICY_CODES = {
  E_POLICY_FILE: {
    meaning: 'A site policy file could not be read (missing, unreadable, too large or not UTF-8).',
    action: 'Check the path and permissions of the file under the site\'s local/ folder; policy files are small JSON documents.',
  },
  E_POLICY_AUTHZ_PARSE: {
    meaning: 'authorization.json is not a valid FLARE authorization policy; the message names the role, the right and the expression.',
    action: 'Fix the named entry (conditions are any, none, o:site, o:submitter, n:submitter, o:<org>, n:<name>, optionally prefixed by not) and preview it with `flare policy check`.',
  },
  E_POLICY_DENIED: {
    meaning: 'This site\'s authorization policy does not grant the user the requested right.',
    action: 'Ask the site\'s org admin to grant the right in local/authorization.json, or act as a user who holds it.',
  },
  E_POLICY_PRIVACY_PARSE: {
    meaning: 'privacy.json is not a valid privacy policy (scopes, default_scope and filter lists).',
    action: 'Fix the place the message names; every scope needs a unique name and default_scope must name one of them.',
  },
  E_POLICY_SCOPE: {
    meaning: 'The job names a privacy scope this site does not define, or names none while the site has no default scope.',
    action: 'Submit the job with a scope the site lists in its privacy.json (see `show_scopes`), or ask the site to add the scope.',
  },
  E_POLICY_SECAGG_REQUIRED: {
    meaning: 'The job\'s privacy scope at this site requires secure aggregation (the server must only see masked updates), and the job uses another workflow.',
    action: 'Submit the job with `"workflow": "secure_aggregation"`, or ask the site for a scope without `secure_aggregation: "required"`.',
  },
  E_POLICY_LOCAL_MODEL: {
    meaning: 'The job\'s privacy scope at this site keeps the site\'s own local model at the site (`share_local_model: false`), so it was not sent for others to evaluate.',
    action: 'Nothing to fix for the job: the cross-site matrix records the refusal. Ask the site to share its local model in that scope if it should be evaluated.',
  },
  E_POLICY_FILTER_UNKNOWN: {
    meaning: 'A privacy policy or job refers to a filter name that is not registered at this site.',
    action: 'Check the spelling against the registered filter names the message lists, or install the package that provides the filter.',
  },
  E_POLICY_FILTER_ARGS: {
    meaning: 'A filter\'s arguments do not match that filter\'s schema.',
    action: 'Fix the arguments at the path the message names (names, types and ranges are checked when the policy or job loads).',
  },
  E_POLICY_RESOURCES_PARSE: {
    meaning: 'resources.json is not a valid resource policy.',
    action: 'Fix the named field: limits are non-negative numbers (concurrent jobs and GPUs are integers).',
  },
  E_POLICY_RESOURCES_EXCEEDED: {
    meaning: 'The job asks for more than this site can ever give (more than its total memory, GPUs, GPU memory or wall time).',
    action: 'Lower the job\'s resource request for this site, or raise the site\'s limits in resources.json.',
  },
  E_POLICY_RESOURCES_BUSY: {
    meaning: 'The site\'s resources are committed to running jobs; admitting this job would over-commit them.',
    action: 'Wait for a running job to finish (the message names what is held) and submit again.',
  },
  E_POLICY_WALL_TIME: {
    meaning: 'The job ran longer than the wall time this site allows (or that it asked for) and was told to stop.',
    action: 'Ask for a longer wall_time_s within the site\'s max_wall_time_s, or make the job shorter.',
  },
  E_POLICY_JOB_RESERVED: {
    meaning: 'Resources are already reserved for this job id at this site.',
    action: 'Release the existing reservation before reserving again; job ids must be unique per site.',
  },
  E_POLICY_COMPONENTS_PARSE: {
    meaning: 'The component allow-list file is not valid.',
    action: 'Fix the named field: `allow` is a list of registered component names and `byoc` is true or false.',
  },
  E_POLICY_COMPONENT: {
    meaning: 'The job uses components that are not on this site\'s allow-list.',
    action: 'Ask the site admin to add the named components to the allow-list, or change the job to use allowed ones.',
  },
  E_POLICY_BYOC_DISABLED: {
    meaning: 'The job brings its own code and this site does not accept job-supplied code.',
    action: 'Use registered components only, or ask the site admin to enable byoc in the component allow-list.',
  },
  E_POLICY_BYOC_RIGHT: {
    meaning: 'The job brings its own code and its submitter lacks the byoc right at this site.',
    action: 'Ask the site\'s org admin to grant byoc to the submitter\'s role in authorization.json, or submit without custom code.',
  },
  E_POLICY_BYOC_SIGNATURE: {
    meaning: 'The job\'s code is not signed, or not signed by the submitter\'s admin certificate from this project, or was changed after signing.',
    action: 'Re-sign the job\'s code with the submitter\'s own startup-kit key and resubmit; never deploy code whose signature fails.',
  },
  E_POLICY_JOB_UNSIGNED: {
    meaning: 'A job or an abort arrived without the submitting admin\'s signature, or with a malformed one.',
    action: 'Submit (or abort) the job with a FLARE-TS admin client, which signs it with the admin\'s kit key; a server that strips or rewrites signatures is not to be trusted.',
  },
  E_POLICY_JOB_BINDING: {
    meaning: 'A job or abort signature was made for another project or another job id than the one it arrived as.',
    action: 'The server must deploy (or abort) a job under the id its submitter signed; treat a mismatch as a server that replays or rewrites jobs.',
  },
  E_POLICY_JOB_TAMPERED: {
    meaning: 'A job\'s files (meta.json, the model, custom/ code) or an abort differ from what the admin signed: changed, added, removed or renamed after signing.',
    action: 'Do not run the job; resubmit it from the admin\'s own copy. The message names the first file that differs.',
  },
  E_POLICY_JOB_SIGNER: {
    meaning: 'A job or abort is signed with a certificate this project does not trust (not from its root, expired, revoked), that is not an admin certificate, or that names no role.',
    action: 'Only admins provisioned in this project can submit or abort jobs: sign with the admin\'s own startup kit; check the CRL if the admin was revoked.',
  },
  E_POLICY_JOB_REPLAYED: {
    meaning: 'A signed job arrived again after this site had run it to its end (or refused it): a server replays a job its admin signed once.',
    action: 'Do not run it again; an admin who wants the job run again submits it anew (a new job id, signed again). Find out why the server replayed it.',
  },
  E_POLICY_JOB_EXPIRED: {
    meaning: 'A signed job reached this site for the first time longer after its admin signed it than the site accepts (or signed in the future beyond the clock skew allowed).',
    action: 'Submit the job again (it is signed anew), or raise the site\'s maximum job age; check the clocks of the admin\'s machine and the site.',
  },
  E_POLICY_AUTHN_CONFIG: {
    meaning: 'A site authenticator is misconfigured (issuer, audience, JWKS location or claim mapping).',
    action: 'Fix the authenticator settings the message names; JWKS URLs must use https.',
  },
  E_POLICY_AUTHN_JWKS: {
    meaning: 'The identity provider\'s signing keys (JWKS) could not be fetched or read.',
    action: 'Check that the JWKS URL or file is reachable and valid and that its TLS certificate is trusted; retry when the provider is back.',
  },
  E_POLICY_AUTHN_TOKEN: {
    meaning: 'The login token was refused: bad signature, wrong issuer or audience, expired, not yet valid or malformed.',
    action: 'Log in to the site\'s identity provider again and use a fresh token for this site\'s audience.',
  },
  E_POLICY_AUTHN_CLAIMS: {
    meaning: 'The login token lacks a claim the site requires or carries no role the site maps.',
    action: 'Ask the identity provider\'s admin to add the required claims or a mapped role to your account.',
  },
  E_POLICY_AUTHN_MISMATCH: {
    meaning: 'The login token belongs to a different user than the authenticated project certificate.',
    action: 'Log in to the identity provider as the same user whose startup kit you use.',
  },
} as const satisfies Catalog;
