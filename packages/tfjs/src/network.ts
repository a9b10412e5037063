import * as tfl from '@tensorflow/tfjs-layers';

/** One dense layer of {@link denseNetwork}. */
export interface DenseLayer {
  /** Layer name: the tensor names are `<name>/kernel` and `<name>/bias`. */
  readonly name: string;
  readonly units: number;
  readonly activation: 'relu' | 'sigmoid' | 'softmax' | 'tanh' | 'linear';
}

/**
 * A multilayer perceptron (or, with one layer, a linear/logistic model) with explicit layer names and
 * seeded Glorot-uniform initial weights, so every process that builds it gets the same variable names and,
 * for the same seed, the same initial model.
 *
 * @example
 * ```ts
 * const net = denseNetwork(1024, [{ name: 'hidden', units: 16, activation: 'relu' }, { name: 'out', units: 1, activation: 'sigmoid' }]);
 * ```
 */
export function denseNetwork(inputs: number, layers: readonly DenseLayer[], seed = 7): tfl.LayersModel {
  if (!Number.isInteger(inputs) || inputs < 1) throw new RangeError(`"inputs" expected a positive integer, got ${inputs}`);
  if (layers.length === 0) throw new RangeError('"layers" expected at least one layer');
  const m = tfl.sequential();
  layers.forEach((l, i) => {
    if (!Number.isInteger(l.units) || l.units < 1) throw new RangeError(`"units" of layer ${l.name} expected a positive integer, got ${l.units}`);
    m.add(
      tfl.layers.dense({
        name: l.name,
        units: l.units,
        activation: l.activation,
        kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + i }),
        ...(i === 0 ? { inputShape: [inputs] } : {}),
      }),
    );
  });
  return m;
}
