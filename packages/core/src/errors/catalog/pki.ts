import type { Catalog } from '../info.js';

/** Error codes of provisioning, certificates, startup kits and revocation (@flare/pki). Add a code here with its meaning and action, then run `npm run errors:doc`. */
export const PKI_CODES = {
  E_PROJECT_READ: {
    meaning: 'The project file could not be read (missing, unreadable or too large).',
    action: 'Check the path given with -p and the file permissions; project files are limited to 1 MiB.',
  },
  E_PROJECT_YAML: {
    meaning: 'The project file is not valid YAML.',
    action: 'Fix the YAML syntax at the line named in the message (indentation, quotes, duplicate keys).',
  },
  E_PROJECT_INVALID: {
    meaning: 'The project file breaks one of FLARE\'s project.yml rules (the message names the file, participant, field and line).',
    action: 'Change the named field to a value of the form the message describes, then provision again.',
  },
  E_CERT_MALFORMED: {
    meaning: 'A certificate, certificate request or key could not be parsed, or lacks the fields FLARE-TS requires.',
    action: 'Use a certificate issued by `flare provision` or `flare cert approve` for this project; re-issue it if it was damaged.',
  },
  E_CERT_CN_TOO_LONG: {
    meaning: 'A participant name is longer than the 64 characters an X.509 common name may hold.',
    action: 'Choose a participant name of at most 64 characters.',
  },
  E_CERT_UNTRUSTED: {
    meaning: 'The certificate was not issued by this project\'s root CA (wrong CA, forged or altered).',
    action: 'Use a startup kit provisioned for this project; a certificate from another project or CA is refused on purpose.',
  },
  E_CERT_EXPIRED: {
    meaning: 'The certificate (or the root CA) is past its notAfter date.',
    action: 'Re-provision the participant to get a fresh certificate (check the machine clock first).',
  },
  E_CERT_NOT_YET_VALID: {
    meaning: 'The certificate\'s notBefore date is in the future.',
    action: 'Check the clocks of both machines; if they are right, wait until the certificate becomes valid or re-issue it.',
  },
  E_CERT_REVOKED: {
    meaning: 'The certificate is listed in the project\'s certificate revocation list.',
    action: 'The participant was revoked by the project admin: ask them for a new startup kit if access should be restored.',
  },
  E_CERT_NAME_MISMATCH: {
    meaning: 'The certificate\'s common name is not the participant name that was expected.',
    action: 'Connect with the startup kit of the participant you claim to be, or fix the expected name in the configuration.',
  },
  E_CERT_WRONG_TYPE: {
    meaning: 'The certificate belongs to another kind of participant (e.g. a client certificate presented as a server).',
    action: 'Use the kit of the right participant type; each certificate records its type in the subject OU.',
  },
  E_CRL_INVALID: {
    meaning: 'The certificate revocation list is malformed, not signed by this project\'s root CA, or from another CA.',
    action: 'Use the crl.pem written by `flare cert revoke` or delivered in a re-provisioned kit of this project.',
  },
  E_CRL_ROLLBACK: {
    meaning: 'A CRL older than one this participant already accepted (a lower CRL number, or another CRL under the same number) was offered: using it would re-admit participants revoked since.',
    action: 'Find out who supplied the older crl.pem (a rolled-back kit file, a stale or hostile peer); use the newest CRL from `flare cert revoke` or a freshly provisioned kit.',
  },
  E_CRL_STATE: {
    meaning: 'The file where a participant remembers the newest CRL it accepted is damaged, too large, or not signed by this project\'s root.',
    action: 'Find out who changed the named file; delete it only if the project really got a new root (the participant then starts again from its kit\'s CRL and learns newer ones at login).',
  },
  E_CSR_INVALID: {
    meaning: 'The certificate signing request is malformed, its signature does not verify, or its subject breaks the naming rules.',
    action: 'Create the request again with `flare cert request` and send the .csr file unchanged.',
  },
  E_CSR_NAME_TAKEN: {
    meaning: 'A valid certificate for this participant name already exists with a different type or organization.',
    action: 'Choose another name, or revoke the existing certificate with `flare cert revoke` first.',
  },
  E_KIT_TAMPERED: {
    meaning: 'A startup kit file does not match its signature: it changed after the kit was signed.',
    action: 'Do not start with this kit: get a fresh kit from the project admin and find out who changed the named file.',
  },
  E_KIT_FILE_MISSING: {
    meaning: 'A file listed in the kit\'s signature.json is missing.',
    action: 'Restore the named file from the original kit, or get a fresh kit from the project admin.',
  },
  E_KIT_UNSIGNED: {
    meaning: 'A file or folder in the startup kit is not covered by any signature (added after signing, or a folder lacks signature.json).',
    action: 'Remove the named file (local overrides belong outside the signed kit files), or get a fresh kit.',
  },
  E_KIT_SYMLINK: {
    meaning: 'The startup kit contains a symbolic link or a special file, which a signed kit never does.',
    action: 'Replace the link with the real file from the original kit, or get a fresh kit.',
  },
  E_KIT_SIGNATURE_FILE: {
    meaning: 'A signature.json in the kit is not a valid signature map (bad JSON, bad names or non-base64 values).',
    action: 'Get a fresh kit from the project admin: signature.json is written only by provisioning.',
  },
  E_KIT_MIXED: {
    meaning: 'A file of the startup kit is signed by the project but was made for another kit (another participant, or an older kit of this one), or the kit\'s certificate is not the participant its manifest names.',
    action: 'Do not start with this kit: someone assembled it from pieces of other kits (e.g. an older crl.pem or another site\'s policy). Get a fresh kit from the project admin.',
  },
  E_KIT_INVALID: {
    meaning: 'The kit is signed but inconsistent: a configuration file is missing or malformed, or the key does not match the certificate.',
    action: 'Re-provision the participant; a kit assembled by hand must follow the layout `flare provision` writes.',
  },
  E_CA_STATE_MISSING: {
    meaning: 'The project\'s CA state folder is missing although kits were provisioned before (or --add needs an existing CA).',
    action: 'Restore <workspace>/<project>/state from backup; only if the root is really lost, run again with --new-root (every existing kit becomes invalid).',
  },
  E_CA_STATE_UNREADABLE: {
    meaning: 'The project\'s CA state exists but cannot be read or does not match this project.',
    action: 'Restore the state folder from backup and check the project name; use --new-root only if the root is really lost.',
  },
  E_CA_PASSPHRASE: {
    meaning: 'The CA root key is encrypted and FLARE_CA_PASSPHRASE is not set or is wrong.',
    action: 'Set FLARE_CA_PASSPHRASE to the passphrase used when the project root was created.',
  },
  E_REVOKE_UNKNOWN: {
    meaning: 'No certificate was issued to the named participant in this project.',
    action: 'Check the participant name (names are case-sensitive) and the workspace given with -w.',
  },
  E_PROVISION_CONFLICT: {
    meaning: 'Participants to add collide with existing ones (same name, or a second server).',
    action: 'Give each added participant a new unique name; a project has exactly one server.',
  },
  E_PROVISION_REVOKED: {
    meaning: 'A participant whose certificates were all revoked is still in project.yml: provisioning would silently give it a new certificate.',
    action: 'Remove the participant from project.yml to keep it out, or provision again with --reissue-revoked if it should really be re-admitted.',
  },
  E_PROVISION_BUILDER: {
    meaning: 'A kit builder contributed by another package failed while provisioning.',
    action: 'Read the cause in the message, fix that builder\'s arguments in project.yml, and provision again; no kit was written.',
  },
} as const satisfies Catalog;
