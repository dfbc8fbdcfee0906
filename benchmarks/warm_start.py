"""Warm start vs cold start on a real log: epochs (and seconds) to the same validation quality.

The log is split into two "days" by position in time: yesterday holds each user's first
``--yesterday-share`` of interactions (users and items that only appear later are absent), today
the whole log. A parent model is trained on yesterday for ``--parent-epochs`` epochs; then, on
today, a cold model (random weights, today's vocabulary) and a warm one (``sasrec_tf.warmstart``:
the parent's vocabulary grown by the new items, its weights copied) train side by side for
``--epochs`` epochs, validated every epoch by full ranking (NDCG@10 and HR@10, history excluded,
all validation users). The table shows the curve and the first epoch at which the warm model
reaches the cold model's best validation NDCG@10; test metrics of both final models at the end.

    python benchmarks/warm_start.py --data DATA/Beauty.txt --format s3rec

The paper's configuration (``SASRecConfig()``: BCE, one negative) unless ``--set`` changes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment(log_level="3")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--format", default="s3rec")
    p.add_argument("--yesterday-share", type=float, default=0.8,
                   help="share of each user's interactions (oldest first) in yesterday's log")
    p.add_argument("--parent-epochs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="change a SASRecConfig field")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from sasrec_tf import training
    from sasrec_tf._compat import keras
    from sasrec_tf.artifacts import TrainedModel
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data import build_sequences, leave_one_out, read_interactions
    from sasrec_tf.evaluation import evaluate, evaluate_full, training_item_counts
    from sasrec_tf.experiment import apply_overrides
    from sasrec_tf.testing.clock import EpochClock
    from sasrec_tf.warmstart import extend_vocabulary, warm_start

    log = read_interactions(args.data, args.format).reset_index(drop=True)
    position = log.groupby("user", sort=False).cumcount()
    length = log.groupby("user", sort=False)["item"].transform("size")
    yesterday = log[position < np.floor(length * args.yesterday_share)].reset_index(drop=True)
    base = apply_overrides({"seed": args.seed}, args.set)
    parent_data = build_sequences(yesterday)
    print(f"yesterday: {parent_data.num_users} users, {parent_data.num_items} items, {len(yesterday)} interactions; "
          f"today: {log['user'].nunique()} users, {log['item'].nunique()} items, {len(log)} interactions", flush=True)

    start = time.perf_counter()
    parent_model = training.build_model(SASRecConfig.from_dict({**base, "epochs": args.parent_epochs}),
                                        parent_data.num_items)
    training.fit(parent_model, leave_one_out(parent_data), eval_every=args.parent_epochs + 1, verbose=0)
    print(f"parent: {args.parent_epochs} epochs in {time.perf_counter() - start:.0f} s", flush=True)
    parent = TrainedModel(model=parent_model, vocab=parent_data.vocab)

    vocab = extend_vocabulary(parent.vocab, log)
    split = leave_one_out(build_sequences(log, vocab))
    config = SASRecConfig.from_dict({**base, "epochs": args.epochs})
    curves: dict[str, list[dict]] = {}
    finals = {}

    class Curve(keras.callbacks.Callback):
        """Validation by full ranking after every epoch; seconds count training only (from ``clock``,
        the callback just before this one)."""

        def __init__(self, name, clock):
            super().__init__()
            self.name, self.clock, self.seconds, self.rows = name, clock, 0.0, []

        def on_epoch_end(self, epoch, logs=None):
            self.seconds += self.clock.epoch_seconds[-1]
            valid = evaluate_full(self.model, split.valid_inputs, split.valid_targets)
            self.rows.append({"epoch": epoch + 1, "seconds": self.seconds, "ndcg@10": valid["ndcg@10"],
                              "hr@10": valid["hr@10"]})
            print(f"  {self.name} epoch {epoch + 1}: valid NDCG@10 {valid['ndcg@10']:.4f} HR@10 "
                  f"{valid['hr@10']:.4f} ({self.seconds:.0f} s training)", flush=True)

    for name in ("cold", "warm"):
        model = training.build_model(config, len(vocab))
        if name == "warm":
            summary = warm_start(model, parent, vocab, item_counts=training_item_counts(split.train, len(vocab)))
            print(f"warm start: {json.dumps(summary.to_dict())}", flush=True)
        clock = EpochClock()
        curve = Curve(name, clock)
        # eval_every beyond the last epoch: fit's own validation runs once, after epoch 1 (same for both).
        training.fit(model, split, eval_every=args.epochs + 1, verbose=0, callbacks=[clock, curve])
        curves[name] = curve.rows
        finals[name] = evaluate(model, split, stage="test", seed=args.seed)
        keras.backend.clear_session()

    best_cold = max(row["ndcg@10"] for row in curves["cold"])
    cold_epoch = next(row for row in curves["cold"] if row["ndcg@10"] == best_cold)
    reached = next((row for row in curves["warm"] if row["ndcg@10"] >= best_cold), None)
    print("\n| epoch | cold valid NDCG@10 | warm valid NDCG@10 | cold HR@10 | warm HR@10 |\n|---|---|---|---|---|")
    for cold, warm in zip(curves["cold"], curves["warm"]):
        print(f"| {cold['epoch']} | {cold['ndcg@10']:.4f} | {warm['ndcg@10']:.4f} | {cold['hr@10']:.4f} | "
              f"{warm['hr@10']:.4f} |")
    print(f"\ncold's best validation NDCG@10 {best_cold:.4f} at epoch {cold_epoch['epoch']} "
          f"({cold_epoch['seconds']:.0f} s); warm reaches it "
          + (f"at epoch {reached['epoch']} ({reached['seconds']:.0f} s)" if reached else "not within the epochs run"))
    for name in ("cold", "warm"):
        print(f"test after {args.epochs} epochs, {name}: full NDCG@10 {finals[name]['full']['ndcg@10']:.4f} "
              f"HR@10 {finals[name]['full']['hr@10']:.4f}; sampled NDCG@10 {finals[name]['sampled']['ndcg@10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
