"""Quality of ``wavelet_mixing`` (WEARec's layer, made causal) beside the recipe, per seed.

    python benchmarks/wavelet_mixing.py                          # recipe vs recipe + gamma 0.5, seed 1, 10 epochs
    python benchmarks/wavelet_mixing.py --mixing 0.5 1.0 --seeds 1 2 --epochs 30 --set wavelet_heads=8

Each seed generates a log with sequential structure (``generate_interactions``, ``--users``
users, ``--items`` items, that seed) and trains ``pipelines/recommended.json`` on it (``--epochs``
epochs) with ``wavelet_mixing`` 0 (the recipe) and each value of ``--mixing``, through the one
training path (``train_and_evaluate``); it prints validation and test full-ranking NDCG@10 and
the training seconds. ``--set NAME=VALUE`` overrides other fields (``wavelet_heads``,
``wavelet_frequency_weight``, ``wavelet_levels``, or ``frequency_mixing=0`` for WEARec's layer
without BSARec's filter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()

RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "recommended.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--mixing", type=float, nargs="+", default=[0.5], help="wavelet_mixing values beside 0")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="SASRecConfig override")
    args = parser.parse_args(argv)

    from sasrec_tf.data import build_sequences, generate_interactions
    from sasrec_tf.experiment import TrainOptions, load_pipeline, train_and_evaluate

    pipeline = load_pipeline(RECIPE)
    pipeline.apply_overrides(args.set)
    base = pipeline.build("model").replace(epochs=args.epochs)
    print(f"{'seed':>4}  {'wavelet_mixing':<16}{'valid ndcg@10':>14}{'test ndcg@10':>14}{'train s':>9}")
    for seed in args.seeds:
        data = build_sequences(generate_interactions(num_users=args.users, num_items=args.items, seed=seed))
        for mixing in [0.0, *args.mixing]:
            config = base.replace(seed=seed, wavelet_mixing=mixing)
            metrics = train_and_evaluate(data, config, options=TrainOptions(eval_every=args.epochs)).metrics
            print(f"{seed:>4}  {mixing:<16}{metrics['valid']['full']['ndcg@10']:>14.4f}"
                  f"{metrics['test']['full']['ndcg@10']:>14.4f}{metrics['training']['wall_seconds']:>9.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
