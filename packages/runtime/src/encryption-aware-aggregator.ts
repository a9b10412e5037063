import { FlareRuntimeError, type AcceptContext, type Aggregator, type FLModel } from '@flare/core';
import { HeAggregator, isEncryptedModel, type HeContext } from '@flare/filters-he';

/**
 * The server's aggregator for one job when it may receive encrypted updates: a round of plaintext updates goes
 * to the plaintext aggregator (FedAvg by default), a round of CKKS-encrypted updates (sites with `he-encrypt`
 * in their result filters) to an {@link HeAggregator} on the server's HE context, which holds no secret key.
 * A round never mixes the two (E_RUNTIME_ENCRYPTION_MIXED), and encrypted updates reaching a server without
 * an HE context are refused (E_RUNTIME_HE_UNAVAILABLE) rather than averaged as bytes.
 */
export class EncryptionAwareAggregator implements Aggregator {
  readonly #plain: Aggregator;
  readonly #he: HeAggregator | undefined;
  readonly #ownsHe: boolean;
  #mode: 'plain' | 'he' | undefined;

  constructor(plain: Aggregator, he: HeContext | undefined) {
    this.#plain = plain;
    // An integrator may pass an HeAggregator as the job's aggregator: use it for encrypted rounds as is.
    this.#ownsHe = !(plain instanceof HeAggregator) && he !== undefined;
    this.#he = plain instanceof HeAggregator ? plain : he === undefined ? undefined : new HeAggregator({ context: he });
  }

  /** The HE context encrypted rounds are aggregated with (for `heAddDiff` on the global model). */
  get heContext(): HeContext | undefined {
    return this.#he?.context;
  }

  accept(update: FLModel, ctx: AcceptContext): void {
    const encrypted = isEncryptedModel(update);
    if (encrypted && this.#he === undefined) {
      throw new FlareRuntimeError('E_RUNTIME_HE_UNAVAILABLE', `${ctx.from} sent an encrypted update and this server has no HE context to aggregate it`);
    }
    const mode = encrypted ? 'he' : 'plain';
    if (this.#mode !== undefined && this.#mode !== mode) {
      throw new FlareRuntimeError('E_RUNTIME_ENCRYPTION_MIXED', `${ctx.from} sent a ${encrypted ? 'encrypted' : 'plaintext'} update into a round of ${this.#mode === 'he' ? 'encrypted' : 'plaintext'} updates`);
    }
    (encrypted ? this.#he! : this.#plain).accept(update, ctx);
    this.#mode = mode;
  }

  result(): FLModel {
    return this.#mode === 'he' ? this.#he!.result() : this.#plain.result();
  }

  reset(): void {
    this.#mode = undefined;
    this.#plain.reset();
    if (this.#ownsHe) this.#he?.reset();
  }

  /** Frees the HE accumulators this aggregator made (SEAL's WebAssembly heap); the context stays the caller's. */
  dispose(): void {
    if (this.#ownsHe) this.#he?.dispose();
  }
}
