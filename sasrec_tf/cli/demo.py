"""``sasrec-tf demo``: generate a log with sequential structure, train, evaluate, export, serve, ask."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sasrec_tf.cli.common import format_table
from sasrec_tf.experiment import TrainOptions


def register(subcommands) -> None:
    parser = subcommands.add_parser("demo", help="generate a log with sequential structure, train, evaluate")
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out if it holds one")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.experiment import train_and_evaluate

    started = time.perf_counter()
    log = generate_interactions(num_users=args.users, num_items=args.items, seed=args.seed)
    data = build_sequences(log)
    # What the log holds (as metrics.json counts it): a generated log need not use every item.
    unused = args.items - data.num_items
    print(f"generated a log with sequential structure: {len(log):,} interactions of {data.num_users:,} users "
          f"on {data.num_items:,} items" + (f" ({unused:,} of the --items {args.items:,} never drawn)" if unused else ""))
    config = SASRecConfig(max_len=50, hidden_units=50, num_blocks=2, num_heads=1, dropout_rate=0.2,
                          epochs=args.epochs, seed=args.seed)
    metrics = train_and_evaluate(data, config, out_dir=args.out, options=TrainOptions(eval_every=5), baseline=True,
                                 overwrite=args.overwrite, verbose=2).metrics
    print()
    print("test metrics (leave-one-out; 'sampled' = paper's 100 negatives, 'full' = all items):")
    print(format_table([("SASRec", metrics["test"]), ("most popular (baseline)",
                                                      metrics["baseline_most_popular"]["test"])]))
    print(f"\ntraining: {metrics['training']['epochs']} epochs in {metrics['training']['wall_seconds']:.1f} s; "
          f"total {time.perf_counter() - started:.1f} s; model and metrics.json in {args.out}/")
    export_and_recommend(Path(args.out), data)
    return 0


def export_and_recommend(model_dir: Path, data, *, history_length: int = 10) -> None:
    """Export the model, serve it locally, and ask for one user's recommendations over gRPC."""
    from sasrec_tf.export import export_saved_model
    from sasrec_tf.serving.client import PredictionClient
    from sasrec_tf.serving.server import LocalModelServer

    export_base = model_dir / "export"
    path = export_saved_model(model_dir, export_base, "sasrec", k=10)
    print(f"\nexported the model for TensorFlow Serving: {path}")
    history = [str(item) for item in data.vocab.decode(data.sequences[0][-history_length:])]
    with LocalModelServer(export_base, port=0, poll_seconds=0) as server:
        with PredictionClient(server.address, "sasrec", timeout=30) as client:
            top = client.recommend([history])
    print(f"gRPC Predict via the local TF Serving-compatible server at {server.address} "
          f"(`sasrec-tf serve --model-base {export_base}`):")
    print(f"  history of user {data.user_ids[0]} (oldest first): {' '.join(history)}")
    print(f"  top-10 next items: {' '.join(top.item_ids[0])}")
