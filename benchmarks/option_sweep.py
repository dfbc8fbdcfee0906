"""Quality of one configuration field's values side by side, on generated logs, per seed.

    python benchmarks/option_sweep.py fused_attention false true --seeds 1 2   # paper config, 10 epochs
    python benchmarks/option_sweep.py time_variant_mixing 0 0.5 1.0 --config pipelines/recommended.json
    python benchmarks/option_sweep.py wavelet_mixing 0 0.5 1.0 --config pipelines/recommended.json \\
        --users 1000 --items 500 --set wavelet_heads=8

Each seed generates a log with sequential structure (``generate_interactions``, ``--users``
users, ``--items`` items, that seed) and trains ``--config`` (default: the paper's configuration)
once per value of FIELD, ``--epochs`` epochs, through the one training path
(``train_and_evaluate``); it prints validation and test full-ranking NDCG@10 and the training
seconds. Values go through ``--set``'s typed parser (a bad field or value is one line before any
training); ``--set NAME=VALUE`` overrides other fields for every run. The generated log is a
sanity check of an option's wiring, not a quality claim (real-log parity: ``parity.py``; the
recipe on the shared data: ``sasrec-tf train``). Speed of a boolean switch: ``roofline.py
--alternate FIELD``.
"""

from __future__ import annotations

import argparse
import sys

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("field", help="the SASRecConfig field to sweep")
    parser.add_argument("values", nargs="+", help="its values, as --set takes them")
    parser.add_argument("--config", default=None, help="pipeline file (default: the paper's configuration)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="SASRecConfig override")
    args = parser.parse_args(argv)

    from sasrec_tf.data import build_sequences, generate_interactions
    from sasrec_tf.experiment import TrainOptions, load_pipeline, train_and_evaluate
    from sasrec_tf.options import OptionError

    configs = []
    for value in args.values:  # every value checked before the first training
        try:
            pipeline = load_pipeline(args.config)
            pipeline.apply_overrides([*args.set, f"{args.field}={value}"])
            configs.append((value, pipeline.build("model").replace(epochs=args.epochs)))
        except OptionError as err:
            parser.error(str(err))
    width = max(len(args.field), *(len(v) for v in args.values)) + 2
    print(f"{'seed':>4}  {args.field:<{width}}{'valid ndcg@10':>14}{'test ndcg@10':>14}{'train s':>9}")
    for seed in args.seeds:
        data = build_sequences(generate_interactions(num_users=args.users, num_items=args.items, seed=seed))
        for value, config in configs:
            metrics = train_and_evaluate(data, config.replace(seed=seed),
                                         options=TrainOptions(eval_every=args.epochs)).metrics
            print(f"{seed:>4}  {value:<{width}}{metrics['valid']['full']['ndcg@10']:>14.4f}"
                  f"{metrics['test']['full']['ndcg@10']:>14.4f}{metrics['training']['wall_seconds']:>9.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
