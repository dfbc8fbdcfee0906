"""Quality parity of ``fused_attention``: the same trainings with and without it, per seed.

    python benchmarks/fused_attention.py                        # paper config, 2,000 users, 10 epochs, seeds 1 2
    python benchmarks/fused_attention.py --epochs 30 --seeds 1 2 3

Each seed generates a log with sequential structure (``generate_interactions``, ``--users``
users, ``--items`` items, that seed) and trains the paper's configuration on it twice, with
``fused_attention`` false and true, through the one training path (``train_and_evaluate``);
it prints validation and test full-ranking NDCG@10 and the training seconds. Both paths compute
the same function on the same weights, but dropout draws differ between them, so the two
trainings are two seeds' worth apart, not bit-equal. Speed: ``benchmarks/roofline.py
--alternate fused_attention``.
"""

from __future__ import annotations

import argparse
import sys

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="SASRecConfig override")
    args = parser.parse_args(argv)

    from sasrec_tf.data import build_sequences, generate_interactions
    from sasrec_tf.experiment import TrainOptions, load_pipeline, train_and_evaluate

    pipeline = load_pipeline(None)
    pipeline.apply_overrides(args.set)
    base = pipeline.build("model").replace(epochs=args.epochs)
    print(f"{'seed':>4}  {'fused_attention':<16}{'valid ndcg@10':>14}{'test ndcg@10':>14}{'train s':>9}")
    for seed in args.seeds:
        data = build_sequences(generate_interactions(num_users=args.users, num_items=args.items, seed=seed))
        for fused in (False, True):
            config = base.replace(seed=seed, fused_attention=fused)
            metrics = train_and_evaluate(data, config, options=TrainOptions(eval_every=args.epochs)).metrics
            print(f"{seed:>4}  {str(fused):<16}{metrics['valid']['full']['ndcg@10']:>14.4f}"
                  f"{metrics['test']['full']['ndcg@10']:>14.4f}{metrics['training']['wall_seconds']:>9.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
