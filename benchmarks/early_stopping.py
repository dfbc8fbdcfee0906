"""Early-stopping rules compared on recorded validation curves (issue 30 item 3).

Each seed trains one run for ``--epochs`` epochs without stopping, recording after every epoch the
validation NDCG@10 (full ranking, what the run monitors) and the test NDCG@10 / HR@10 (full
ranking). Training does not depend on the stopping rule, so every rule is then replayed exactly on
the recorded curve through the library's own :class:`~sasrec_tf.early_stopping.ValidatedEarlyStopping`
(validations at the run's cadence, ``--eval-every``): where it would stop, which epoch's weights it
would restore, and that epoch's test metrics. Printed: per rule the mean and spread (std, min)
over seeds of the restored epoch's test NDCG@10, and the epochs trained.

The log is generated (``sasrec_tf.data.synthetic``) unless ``--data PATH:FORMAT`` names one::

    python benchmarks/early_stopping.py --config pipelines/recommended.json --seeds 1 2 3 4 5 \\
        --users 600 --items 500 --epochs 60 --out runs/early_stopping
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()

# name -> TrainOptions early-stopping fields (patience in validations).
RULES = {
    "none (best of all epochs)": None,
    "patience 3": {"patience": 3},
    "patience 5": {"patience": 5},
    "patience 3, smoothing 2": {"patience": 3, "smoothing": 2},
    "patience 3, smoothing 3": {"patience": 3, "smoothing": 3},
    "patience 3, min_delta 0.002": {"patience": 3, "min_delta": 0.002},
    "patience 3, min_epochs 30": {"patience": 3, "min_epochs": 30},
    "patience 3, smoothing 2, min_epochs 30": {"patience": 3, "smoothing": 2, "min_epochs": 30},
}


def record_curve(data, config, eval_every_record: int = 1):
    """Train ``config`` on ``data`` for all its epochs; ``[(epoch, valid ndcg, test ndcg, test hr)]``."""
    from sasrec_tf import evaluation
    from sasrec_tf._compat import keras
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    split = leave_one_out(data)
    rows = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_ndcg@10" in (logs or {}):
                test = evaluation.evaluate_full(self.model, split.test_inputs, split.test_targets, ks=(10,))
                rows.append((epoch + 1, float(logs["val_ndcg@10"]), test["ndcg@10"], test["hr@10"]))

    train_and_evaluate(data, config, options=TrainOptions(eval_every=eval_every_record, eval_negatives=20),
                       callbacks=[Record()], verbose=0)
    return rows


def replay(rows, rule, eval_every: int, epochs: int):
    """``(epochs trained, restored epoch)`` of ``rule`` on the recorded curve."""
    from sasrec_tf.early_stopping import ValidatedEarlyStopping

    validated = [r for r in rows if r[0] == 1 or r[0] % eval_every == 0 or r[0] == epochs]
    if rule is None:
        best = max(validated, key=lambda r: (r[1], -r[0]))
        return epochs, best[0]

    class Model:
        stop_training = False
        epoch = 0

        def get_weights(self):
            return [self.epoch]

        def set_weights(self, weights):
            self.restored = weights[0]

    model = Model()
    callback = ValidatedEarlyStopping("val_ndcg@10", **rule)
    callback.set_model(model)
    callback.on_train_begin()
    stopped = epochs
    for epoch, valid, *_ in validated:
        model.epoch = epoch
        callback.on_epoch_end(epoch - 1, {"val_ndcg@10": valid})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end()
    return stopped, model.restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="pipelines/recommended.json", help="pipeline file (its model section)")
    parser.add_argument("--data", help="PATH:FORMAT of a log (default: a generated one per seed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--follow", type=float, default=0.7,
                        help="generated log: probability that the next item follows the current one (lower: noisier)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5, help="the validation cadence the rules see")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out", required=True, help="directory for curves.json (reused: curves are not retrained)")
    args = parser.parse_args()

    from sasrec_tf.data.sequences import build_sequences, load_dataset
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.experiment import load_pipeline
    from sasrec_tf.files import atomic_write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "curves.json"
    curves = json.loads(store.read_text()) if store.is_file() else {}
    pipeline = load_pipeline(args.config)
    pipeline.apply_overrides(args.set)
    for seed in args.seeds:
        if str(seed) in curves:
            continue
        if args.data:
            path, fmt = args.data.rsplit(":", 1)
            data = load_dataset(path, fmt)
        else:
            data = build_sequences(generate_interactions(num_users=args.users, num_items=args.items,
                                                               follow_probability=args.follow, seed=seed))
        config = pipeline.build("model").replace(epochs=args.epochs, seed=seed)
        curves[str(seed)] = record_curve(data, config)
        atomic_write_json(store, curves)
        print(f"seed {seed}: recorded {len(curves[str(seed)])} epochs", flush=True)

    print(f"\n{'rule':<42}{'test ndcg@10 mean':>18}{'std':>8}{'min':>8}{'epochs mean':>13}   restored epochs")
    for name, rule in RULES.items():
        tests, trained, restored = [], [], []
        for seed in args.seeds:
            rows = curves[str(seed)]
            stopped, epoch = replay(rows, rule, args.eval_every, args.epochs)
            tests.append(next(r[2] for r in rows if r[0] == epoch))
            trained.append(stopped)
            restored.append(epoch)
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"{name:<42}{statistics.mean(tests):>18.4f}{std:>8.4f}{min(tests):>8.4f}"
              f"{statistics.mean(trained):>13.1f}   {' '.join(map(str, restored))}")


if __name__ == "__main__":
    main()
