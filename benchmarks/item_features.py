"""Item features: the same recipe trained without and with them, test full ranking and cost per epoch.

Each (fusion, seed) is one ``train_and_evaluate`` run (the path ``sasrec-tf train`` takes) on the
log at ``--data`` with the attributes at ``--features``; ``none`` is the id-only model. Prints one
markdown row per run: test HR@10 / NDCG@10 (full ranking, history excluded), epochs, seconds per
epoch. Data never lives in the repository; pass its path::

    python benchmarks/item_features.py --data ../shared/data/amazon-iclrec/Beauty.txt --format s3rec \\
        --features ../shared/data/amazon-iclrec/Beauty_item2attributes.json \\
        --config pipelines/recommended.json --fusions none sum gate --seeds 42 43 --patience 3

``--cold-items 0.1`` runs the cold-start protocol (that fraction of the items held out of
training, :mod:`sasrec_tf.data.cold_start`) and adds, per run, HR@10 / NDCG@10 on cold and on
warm test targets, and the content baseline's on the same split. ``--cold-offsets 1 2 inf`` then
also prints, per run and offset, the validation and test cold / warm NDCG@10 with every cold item's
score lowered by that offset (``inf``: warm targets ranked among warm items only). It tells the warm
targets' loss that cold items take from their top-10 places (which the offset trades back) from a
loss of the query encoder (which no offset recovers).

Without ``--data`` it runs on a generated log whose transitions follow attributes
(:func:`sasrec_tf.data.synthetic.generate_attribute_interactions`), for a quick look at the cost.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path


from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="interaction log (default: a generated one)")
    parser.add_argument("--format", default="s3rec")
    parser.add_argument("--features", help="item features (S3-Rec JSON or a table); required with --data")
    parser.add_argument("--config", help="pipeline file whose model and train sections every run uses")
    parser.add_argument("--fusions", nargs="+", default=["none", "sum"], help="feature_fusion values; none = ids only")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--patience", type=int, help="early stopping (evaluations)")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--cold-items", type=float, default=0.0, help="hold this fraction of items out of training")
    parser.add_argument("--cold-seed", type=int, default=0)
    parser.add_argument("--cold-offsets", nargs="+", type=float, default=[],
                        help="with --cold-items: cold items' scores lowered by each (inf = not candidates)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.cold_offsets and not args.cold_items:
        parser.error("--cold-offsets needs --cold-items")

    from sasrec_tf.data.item_features import read_item_features
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_attribute_interactions
    from sasrec_tf.experiment import load_pipeline, train_and_evaluate
    from sasrec_tf.run_options import DataOptions

    pipeline = load_pipeline(args.config)
    pipeline.apply_overrides(args.set)
    with tempfile.TemporaryDirectory() as scratch:
        if args.data:
            if not args.features:
                parser.error("--features is required with --data")
            data = DataOptions(**{**pipeline.data, "format": args.format}).read(args.data)
            features, name = read_item_features(args.features), Path(args.data).stem
        else:
            log, table = generate_attribute_interactions(num_users=2000, num_items=400, seed=0)
            table.to_csv(Path(scratch) / "features.csv", index=False)
            data, name = build_sequences(log), "generated"
            features = read_item_features(Path(scratch) / "features.csv")
        cold = args.cold_items > 0
        print("| data | fusion | seed | test HR@10 | test NDCG@10 | epochs | s/epoch |"
              + (" cold HR@10 / NDCG@10 | warm HR@10 / NDCG@10 | content cold | content warm |"
                 " valid cold / warm NDCG@10 |" if cold else "")
              + "\n|---|---|---|---|---|---|---|" + ("---|---|---|---|---|" if cold else ""), flush=True)
        for seed in args.seeds:
            for fusion in args.fusions:
                model = {**pipeline.model, "seed": seed, "feature_fusion": fusion}
                if args.epochs is not None:
                    model["epochs"] = args.epochs
                train = {**pipeline.train, "eval_every": args.eval_every, "cold_items": args.cold_items,
                         "cold_seed": args.cold_seed}
                if args.patience is not None:
                    train["patience"] = args.patience
                pipeline.model, pipeline.train = model, train
                result = train_and_evaluate(data, pipeline.build("model"), options=pipeline.build("train"),
                                            item_features=None if fusion == "none" else features)
                metrics = result.metrics
                test, training = metrics["test"]["full"], metrics["training"]
                row = (f"| {name} | {fusion} | {seed} | {test['hr@10']:.4f} | {test['ndcg@10']:.4f} | "
                       f"{training['epochs']} | {training['seconds_per_epoch']:.2f} |")
                if cold:
                    content = metrics.get("baseline_content", {}).get("test")
                    groups = [metrics["test"][group] for group in ("cold", "warm")]
                    groups += [content[group] for group in ("cold", "warm")] if content else []
                    row += "".join(f" {g['hr@10']:.4f} / {g['ndcg@10']:.4f} ({g['targets']}) |" for g in groups)
                    row += "" if content else " - | - |"
                    # For choices (validation only): the same split of the validation ranking.
                    row += f" {metrics['valid']['cold']['ndcg@10']:.4f} / {metrics['valid']['warm']['ndcg@10']:.4f} |"
                print(row, flush=True)
                for line in _offset_metrics(result.model, data, train, args.cold_offsets):
                    print(line, flush=True)
                if fusion != "none":
                    print(f"  item_features: {json.dumps(result.metrics['item_features'])}", flush=True)


def _offset_metrics(model, data, train: dict, offsets):
    """Per offset, a line of the validation and test cold / warm NDCG@10 of ``model`` with its cold
    items' scores lowered by it (``sasrec_tf.evaluation.cold_offset_table``; ``inf``: its "not
    served" row), on the split ``train_and_evaluate`` made (the same leave-one-out split and held-out
    items, made once for all offsets). The run's own ``metrics.json`` has the validation table at the
    default offsets (``cold_score_offsets``)."""
    from sasrec_tf.data.cold_start import hold_out_items
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import cold_offset_table

    finite = [o for o in offsets if not math.isinf(o)]
    if not offsets or not getattr(model, "uses_item_features", False):
        return
    split, cold = hold_out_items(leave_one_out(data), train["cold_items"], train["cold_seed"])
    tables = {stage: cold_offset_table(model, split, cold.items, offsets=finite or [0.0], stage=stage)
              for stage in ("valid", "test")}
    for offset in offsets:
        out = []
        for stage, table in tables.items():
            row = table["not_served"] if math.isinf(offset) else table["offsets"][finite.index(offset)]
            out.append(f"{stage} cold {row['cold'].get('ndcg@10', 0.0):.4f} / warm {row['warm']['ndcg@10']:.4f} "
                       f"(all {row['all']['ndcg@10']:.4f})")
        yield f"  cold offset {offset:g}: " + "; ".join(out)


if __name__ == "__main__":
    main()
