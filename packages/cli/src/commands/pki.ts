// flare provision | kit verify | cert revoke|request|approve | package: the @flare/pki commands.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { attestationPolicyKitBuilder, attestationPolicyOverride } from '@flare/cc-attest';
import { writeFileAtomic, type KitBuilder } from '@flare/core';
import type * as FiltersHe from '@flare/filters-he';
import {
  approveCsr,
  createCsr,
  KEY_TYPES,
  loadParticipants,
  loadProject,
  packageKit,
  provision,
  resolveProjectDir,
  revoke,
  verifyKit,
  type KeyType,
  type ParticipantType,
  type Project,
} from '@flare/pki';
import { loadOptionalPeer } from '@flare/runtime';
import { runCommand, stdio, type Io } from '../run.js';
import { partialHostPortOption, type HostPort } from '../options.js';

/** The root key passphrase comes only from the environment, never from argv (it would show in `ps`). */
const passphrase = (): string | undefined => {
  const p = process.env['FLARE_CA_PASSPHRASE'];
  return p === undefined || p === '' ? undefined : p;
};

function positiveInt(what: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a positive whole number, got '${value}'`);
    return n;
  };
}

/**
 * The kit builders other packages contribute to `flare provision`: cc-attest's attestation-policy builder
 * (FLARE's CCBuilder: writes `local/attestation_policy.json.default` only for participants given a policy, so it
 * is always registered), and filters-he's HE key step (FLARE's HEBuilder: one CKKS key set, the secret key only
 * in client kits), registered when project.yml names HEBuilder or `--he` asks for it, since it makes keys for
 * every project it runs on. @flare/filters-he is an optional peer, loaded only then.
 *
 * @throws FlareRuntimeError E_RUNTIME_OPTIONAL_PEER when HE is asked for and @flare/filters-he is not installed.
 */
async function provisionBuilders(project: Pick<Project, 'he'>, options: { readonly he?: boolean } = {}): Promise<KitBuilder[]> {
  if (options.he !== true && project.he === undefined) return [attestationPolicyKitBuilder()];
  const why = options.he === true ? 'flare provision --he' : "project.yml's HEBuilder";
  const { heKitBuilder } = await loadOptionalPeer<typeof FiltersHe>('@flare/filters-he', why);
  return [attestationPolicyKitBuilder(), heKitBuilder()];
}

/**
 * The participant keys the registered builders read (cc-attest's `attestation_policy`): @flare/pki refuses
 * any other key it does not know, so a typo in project.yml is an error with its line.
 */
const BUILDER_PARTICIPANT_KEYS: readonly string[] = attestationPolicyKitBuilder().participantKeys ?? [];

/** This CLI's entry script, which provisioned kits' start.sh runs when `flare` is not on PATH. */
const CLI_PATH = fileURLToPath(new URL('../bin.js', import.meta.url));

/** Writes a file that must not exist yet (a key must never be overwritten silently). */
async function writeNew(path: string, data: string, mode: number): Promise<void> {
  await writeFile(path, data, { mode, flag: 'wx' });
}

/** Registers the provisioning and kit commands on `program`; `io` is where they print (tests pass their own). */
export function register(program: Command, io: Io = stdio): void {
  const run = async (body: () => Promise<void>): Promise<void> => {
    await runCommand(body, io);
  };
  program
    .command('provision')
    .description('provision a FLARE project.yml into signed startup kits (<workspace>/<project>/prod_NN/<participant>)')
    .requiredOption('-p, --project <file>', 'the project.yml (api_version 3 or 4)')
    .requiredOption('-w, --workspace <dir>', 'the workspace folder')
    .option('--add <file>', 'add the participants of this file to an already provisioned project')
    .addOption(new Option('--key-type <type>', 'key type of a new root and new participant keys').choices([...KEY_TYPES]))
    .option('--new-root', 'create a new root CA even though the project has kits or a CA state (invalidates every existing kit)')
    .option('--valid-days <n>', 'validity of newly issued certificates in days (default 360)', positiveInt('--valid-days'))
    .option('--he', "add the HE key step (CKKS; FLARE's HEBuilder) even when project.yml does not name HEBuilder")
    .option('--reissue-revoked', 'give new certificates to revoked participants that are still in project.yml (refused without it)')
    .action((opts: { project: string; workspace: string; add?: string; keyType?: KeyType; newRoot?: boolean; validDays?: number; he?: boolean; reissueRevoked?: boolean }) =>
      run(async () => {
        const keys = { participantKeys: BUILDER_PARTICIPANT_KEYS };
        const project = await loadProject(opts.project, keys);
        const add = opts.add === undefined ? undefined : await loadParticipants(opts.add, project, keys);
        const pass = passphrase();
        const builders = await provisionBuilders(project, { he: opts.he === true });
        const result = await provision(project, {
          workspace: opts.workspace,
          builders,
          ...(opts.keyType === undefined ? {} : { keyType: opts.keyType }),
          ...(add === undefined ? {} : { add }),
          ...(pass === undefined ? {} : { passphrase: pass }),
          ...(opts.newRoot ? { newRoot: true } : {}),
          ...(opts.validDays === undefined ? {} : { validDays: opts.validDays }),
          ...(opts.reissueRevoked ? { reissueRevoked: true } : {}),
          cliPath: CLI_PATH,
        });
        for (const notice of result.notices) io.err(`notice: ${notice}`);
        io.out(`${result.rootCreated ? 'created a new root CA' : 'reused the root CA'} (${result.keyType}); CA state in ${result.stateDir}`);
        for (const kit of result.kits) io.out(`  ${kit.type.padEnd(6)} ${kit.name}: ${kit.reused ? 'certificate reused' : 'new certificate'}`);
        if (builders.some((b) => b.name === 'he')) io.out('HE keys: client kits hold startup/client_context.seal (secret key), the server kit only startup/server_context.seal (no secret key)');
        io.out(`startup kits written to ${result.prodDir}`);
      }),
    );

  program
    .command('kit')
    .description('startup kit tools')
    .command('verify')
    .description('check every file of a startup kit against its signatures; exit 0 when whole, 1 when not')
    .argument('<dir>', 'the kit folder (<workspace>/<project>/prod_NN/<participant>)')
    .option('--root-ca <file>', "trust this root CA instead of the kit's own startup/rootCA.pem")
    .option('--local-overrides', 'accept the site\'s own unsigned local/authorization.json, privacy.json, resources.json, components.json, log_config.json (as the runtime does)')
    .action((dir: string, opts: { rootCa?: string; localOverrides?: boolean }) =>
      run(async () => {
        const rootCaPem = opts.rootCa === undefined ? undefined : await readFile(opts.rootCa, 'utf8');
        // A site's own attestation policy is accepted when cc-attest finds it at least as strict as the signed one.
        const v = await verifyKit(dir, { ...(rootCaPem === undefined ? {} : { rootCaPem }), localOverrides: opts.localOverrides === true, strictOverrides: [attestationPolicyOverride] });
        io.out(`OK ${v.dir}: kit of ${v.type} '${v.participant}' in project '${v.project}' (kit ${v.kitSerial}): ${v.files} files in ${v.folders} folders, every one signed by the ${v.signer === 'root' ? 'project root CA' : 'participant (its certificate chains to the root)'}`);
        for (const f of v.localOverrides) io.out(`  site override (unsigned, accepted): ${f}`);
      }),
    );

  const cert = program.command('cert').description('certificates: revoke, and distributed provisioning (request, approve)');
  cert
    .command('revoke')
    .description("revoke a participant's certificates and write a CRL signed by the root")
    .argument('<name>', 'the participant name')
    .requiredOption('-w, --workspace <dir>', 'the workspace (or the project folder inside it)')
    .option('--project <name>', 'the project, when the workspace holds several')
    .option('--reason <code>', 'RFC 5280 reason code (1 = keyCompromise)', (v) => Number(v))
    .option('--server-workspace <dir>', "also write the CRL to <dir>/crl.pem, which a running 'flare server --workspace <dir>' watches: it cuts the revoked participant's live session and sends the CRL to every connected site, without a restart")
    .action((name: string, opts: { workspace: string; project?: string; reason?: number; serverWorkspace?: string }) =>
      run(async () => {
        const projectDir = await resolveProjectDir(opts.workspace, opts.project);
        const pass = passphrase();
        const r = await revoke({ projectDir, name, ...(pass === undefined ? {} : { passphrase: pass }), ...(opts.reason === undefined ? {} : { reason: opts.reason }) });
        io.out(r.serials.length === 0 ? `'${name}' had no unrevoked certificate; CRL reissued` : `revoked ${r.serials.length} certificate(s) of '${name}' (serial ${r.serials.join(', ')})`);
        io.out(`CRL written to ${r.crlPath}`);
        if (opts.serverWorkspace === undefined) {
          io.out(`to apply it now, copy it to the server's workspace as crl.pem (or pass --server-workspace); else it reaches participants with the next 'flare provision'`);
          return;
        }
        // Atomic (write, fsync, rename): the server polls the file and must never read half a CRL.
        const target = join(resolve(opts.serverWorkspace), 'crl.pem');
        await writeFileAtomic(target, r.crlPem, { mode: 0o644 });
        io.out(`CRL written to ${target}: the server watching it cuts the revoked sessions within seconds`);
      }),
    );
  cert
    .command('request')
    .description('at a site: create a private key and a certificate signing request (the key never leaves the site)')
    .requiredOption('--name <name>', 'participant name')
    .requiredOption('--org <org>', 'organization')
    .addOption(new Option('--type <type>', 'participant type').choices(['client', 'server', 'admin', 'relay']).makeOptionMandatory())
    .option('--role <role>', 'admin role (project_admin, org_admin, lead, member)')
    .option('--host <host...>', 'host names / IPs for the certificate (servers, listening clients)')
    .addOption(new Option('--key-type <type>', 'key type').choices([...KEY_TYPES]))
    .requiredOption('-o, --out <dir>', 'where to write <name>.key (0600) and <name>.csr')
    .action((opts: { name: string; org: string; type: ParticipantType; role?: string; host?: string[]; keyType?: KeyType; out: string }) =>
      run(async () => {
        const r = await createCsr({
          name: opts.name,
          org: opts.org,
          type: opts.type,
          ...(opts.role === undefined ? {} : { role: opts.role }),
          ...(opts.host === undefined ? {} : { hosts: opts.host }),
          ...(opts.keyType === undefined ? {} : { keyType: opts.keyType }),
        });
        await mkdir(opts.out, { recursive: true });
        const keyPath = join(resolve(opts.out), `${opts.name}.key`);
        const csrPath = join(resolve(opts.out), `${opts.name}.csr`);
        await writeNew(keyPath, r.privateKeyPem, 0o600);
        await writeNew(csrPath, r.csrPem, 0o644);
        io.out(`private key written to ${keyPath} (keep it here); send ${csrPath} to the project admin`);
      }),
    );
  cert
    .command('approve')
    .description('at the CA: issue a certificate for a request')
    .argument('<csr>', 'the .csr file')
    .requiredOption('--ca <dir>', 'the project folder with the CA state (<workspace>/<project>)')
    .requiredOption('-o, --out <dir>', 'where to write <name>.crt and rootCA.pem')
    .option('--valid-days <n>', 'validity in days (default 360)', positiveInt('--valid-days'))
    .option('--reissue-revoked', 'approve a request for a name whose certificates were revoked (refused without it)')
    .action((csr: string, opts: { ca: string; out: string; validDays?: number; reissueRevoked?: boolean }) =>
      run(async () => {
        const pass = passphrase();
        const a = await approveCsr({
          projectDir: opts.ca,
          csrPem: await readFile(csr, 'utf8'),
          ...(pass === undefined ? {} : { passphrase: pass }),
          ...(opts.validDays === undefined ? {} : { validDays: opts.validDays }),
          ...(opts.reissueRevoked ? { reissueRevoked: true } : {}),
        });
        await mkdir(opts.out, { recursive: true });
        const certPath = join(resolve(opts.out), `${a.identity.name}.crt`);
        await writeFile(certPath, a.certPem, { mode: 0o644 });
        await writeFile(join(resolve(opts.out), 'rootCA.pem'), a.rootCaPem, { mode: 0o644 });
        io.out(`issued ${a.identity.type} certificate for '${a.identity.name}' (org ${a.identity.org}${a.identity.role ? `, role ${a.identity.role}` : ''}), SHA-256 ${a.fingerprint}`);
        io.out(`certificate written to ${certPath}; send it and rootCA.pem back to the site`);
      }),
    );

  program
    .command('package')
    .description('at a site: assemble and sign a startup kit from its own key, its approved certificate and the project root')
    .requiredOption('--cert <file>', 'the approved certificate')
    .requiredOption('--key <file>', "the site's private key")
    .requiredOption('--ca-cert <file>', "the project's rootCA.pem")
    .requiredOption('-o, --out <dir>', 'the kit folder to create')
    .option('--server <host:port>', 'the server to connect to (clients, relays, admins); for a server kit, :port to listen on', partialHostPortOption('--server'))
    .option('--server-name <name>', "the server's participant name (default: its host)")
    .option('--admin-port <port>', 'the admin port (default: the server port)', positiveInt('--admin-port'))
    .option('--project <name>', "project name (default: the root CA's name)")
    .addOption(new Option('--connection-security <mode>', 'clear, tls or mtls').choices(['clear', 'tls', 'mtls']).default('mtls'))
    .option('--crl <file>', 'the project CRL to include')
    .action((opts: { cert: string; key: string; caCert: string; out: string; server?: HostPort; serverName?: string; adminPort?: number; project?: string; connectionSecurity: 'clear' | 'tls' | 'mtls'; crl?: string }) =>
      run(async () => {
        const { host, port } = opts.server ?? {};
        const r = await packageKit({
          certPem: await readFile(opts.cert, 'utf8'),
          privateKey: await readFile(opts.key, 'utf8'),
          rootCaPem: await readFile(opts.caCert, 'utf8'),
          outDir: opts.out,
          server: {
            ...(host === undefined ? {} : { host }),
            ...(port === undefined ? {} : { port }),
            ...(opts.adminPort === undefined ? {} : { adminPort: opts.adminPort }),
            ...(opts.serverName === undefined ? {} : { name: opts.serverName }),
          },
          connectionSecurity: opts.connectionSecurity,
          ...(opts.project === undefined ? {} : { project: opts.project }),
          ...(opts.crl === undefined ? {} : { crlPem: await readFile(opts.crl, 'utf8') }),
        });
        io.out(`signed ${r.participant.type} kit for '${r.participant.name}' written to ${r.dir}`);
      }),
    );
}
