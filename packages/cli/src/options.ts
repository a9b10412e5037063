import { InvalidArgumentError } from 'commander';

/** A server address as `--server` gives it: either part may be left out where the flag allows it. */
export interface HostPort {
  readonly host?: string;
  readonly port?: number;
}

/**
 * A commander option parser for a `host:port` flag (`--server`): refuses a malformed address or a port outside
 * 1-65535 with InvalidArgumentError, which the program prints as one E_CLI_USAGE line naming the flag (exit 2),
 * before anything connects. Returns the address unchanged, so callers keep passing the string they always did.
 */
export function hostPortOption(flag: string): (value: string) => string {
  return (value) => {
    const { host, port } = parseHostPort(flag, value);
    if (host === undefined || port === undefined) throw new InvalidArgumentError(`${flag} expected host:port, got '${value}'`);
    return value;
  };
}

/**
 * Like {@link hostPortOption} for a flag where the host or the port may be left out (`host`, `:port`,
 * `host:port`), as `flare package --server` takes it; returns the parts given.
 */
export function partialHostPortOption(flag: string): (value: string) => HostPort {
  return (value) => parseHostPort(flag, value);
}

function parseHostPort(flag: string, value: string): HostPort {
  const i = value.lastIndexOf(':');
  const host = i < 0 ? value : value.slice(0, i);
  const portText = i < 0 ? undefined : value.slice(i + 1);
  // `[::1]:8002` keeps its brackets in the host, as the kits write it; a bare IPv6 address needs them.
  if (host.includes(':') && !/^\[[0-9a-fA-F:.]+\]$/.test(host)) throw new InvalidArgumentError(`${flag} expected host:port (an IPv6 host in brackets), got '${value}'`);
  if (/\s/.test(host)) throw new InvalidArgumentError(`${flag} expected host:port, got '${value}'`);
  if (portText === undefined) return host === '' ? {} : { host };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new InvalidArgumentError(`${flag} port must be a whole number from 1 to 65535, got '${portText}' in '${value}'`);
  }
  return { ...(host === '' ? {} : { host }), port: Number(portText) };
}
