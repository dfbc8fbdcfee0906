"""How much of a training step is Keras' per-step loop: steady epochs at several ``steps_per_execution``.

``model.fit`` calls its ``tf.function`` once per batch by default; with ``steps_per_execution=k``
it runs ``k`` batches per call, so the Python side of the loop (callbacks, progress, iterator
hand-off) runs ``k`` times less often. What each step computes does not change: the same batches
in the same order. The pipeline's batch count per epoch is fixed (``ceil(windows / batch_size)``,
with or without length bucketing) but unknown to Keras, so this script repeats the dataset and
gives ``steps_per_epoch``. Alternating values, fresh model each, paper configuration; prints the
median steady epoch (epochs 2..N) per run.

    python benchmarks/steps_per_execution.py --data DATA/Beauty.txt --values 1 8 1 8
"""

from __future__ import annotations

import argparse
import statistics

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment(log_level="3")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--format", default="s3rec")
    p.add_argument("--values", type=int, nargs="+", default=[1, 8, 1, 8], help="steps_per_execution, run in order")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args(argv)

    from sasrec_tf import SASRecConfig
    from sasrec_tf._compat import keras
    from sasrec_tf.data import leave_one_out, load_dataset, training_dataset
    from sasrec_tf.testing.clock import EpochClock
    from sasrec_tf.training import build_model

    data = load_dataset(args.data, args.format)
    split = leave_one_out(data)
    config = SASRecConfig(seed=1)
    dataset = training_dataset(split.train, data.num_items, config.max_len, config.batch_size,
                               num_negatives=config.num_negatives, seed=config.seed,
                               bucket_by_length=config.bucket_by_length)
    steps = sum(1 for _ in dataset)
    for value in args.values:
        keras.backend.clear_session()
        model = build_model(config, data.num_items)
        model.compile(optimizer=model.optimizer, steps_per_execution=value)
        clock = EpochClock()
        durations = clock.epoch_seconds
        model.fit(dataset.repeat(), epochs=args.epochs, steps_per_epoch=steps, verbose=0, callbacks=[clock])
        print(f"steps_per_execution={value}: steady epoch {statistics.median(durations[1:]):.2f} s "
              f"(epochs: {', '.join(f'{d:.2f}' for d in durations)})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
