import type { KeyObject } from 'node:crypto';
import type { Identity } from '@flare/core';

/**
 * The parts of a startup kit the login reads: @flare/pki's `Kit` has this shape, so pass a loaded kit as is.
 */
export interface AuthKit {
  readonly participant: Identity;
  readonly rootCaPem: string;
  readonly certPem: string;
  readonly privateKey: KeyObject;
  readonly crlPem?: string;
  /** custom_ca_cert: set when a TLS-terminating proxy sits in front of the server (channel binding is then off). */
  readonly customCaPem?: string;
  readonly server: { readonly name: string };
}
