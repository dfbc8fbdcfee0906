"""The optimizer's update alone: CPU milliseconds per step for each ``SASRecConfig.optimizer``.

Applies one step's gradients to variables of the paper configuration's shapes (an item table
of ``--items`` x 50 whose gradient is a ``tf.IndexedSlices`` of ``--rows`` rows drawn from a
Zipf law, as gathers of input items, positives and negatives give it; the blocks' kernels,
biases and LayerNorm weights dense), ``--steps`` times per optimizer, single-threaded, the
optimizers alternating for ``--rounds`` rounds.

    python benchmarks/optimizer_step.py                       # Beauty's table: 12,102 rows
    python benchmarks/optimizer_step.py --items 500000 --rows 6000
"""

from __future__ import annotations

import argparse
import time

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12102, help="rows of the item table (Beauty: 12,101 + padding)")
    parser.add_argument("--rows", type=int, default=3500, help="gradient rows per step (with repeats)")
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--optimizers", nargs="+", default=["keras_adam", "adam", "lazy_adam"])
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from sasrec_tf import optimizers

    d = args.dim
    shapes = [(args.items, d), (50, d)] + [(d, 1, d)] * 8 + [(d, d)] * 4 + [(d,)] * 14

    def measure(name: str) -> tuple[float, float]:
        rng = np.random.default_rng(0)
        variables = [tf.Variable(rng.normal(size=shape).astype(np.float32)) for shape in shapes]
        optimizer = optimizers.make(name, learning_rate=1e-3)
        dense = [tf.constant(rng.normal(size=shape).astype(np.float32)) for shape in shapes[1:]]
        rows = tf.constant(rng.zipf(1.3, size=args.rows).clip(1, args.items - 1).astype(np.int32))
        values = tf.constant(rng.normal(size=(args.rows, d)).astype(np.float32))

        @tf.function
        def step():
            table = tf.IndexedSlices(values, rows, dense_shape=tf.constant([args.items, d]))
            optimizer.apply_gradients(zip([table] + dense, variables))

        step()  # trace
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        return 1000 * (time.perf_counter() - wall) / args.steps, 1000 * (time.process_time() - cpu) / args.steps

    print(f"item table {args.items} x {d}, {args.rows} gradient rows per step, {args.steps} steps, one thread")
    for round_index in range(args.rounds):
        cells = []
        for name in args.optimizers:
            wall, cpu = measure(name)
            cells.append(f"{name} {cpu:.2f} CPU-ms ({wall:.2f} ms)")
        print(f"round {round_index + 1}: " + " · ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
