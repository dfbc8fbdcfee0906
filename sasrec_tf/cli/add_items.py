"""``sasrec-tf add-items``: new items with features into a new export version, without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from sasrec_tf.cli.common import UsageError, default_of
from sasrec_tf.cli.feature_flags import (add_cold_score_offset_flag, add_item_features_flags,
                                          check_cold_score_offset, read_item_features_flags)
from sasrec_tf.export import export_saved_model
from sasrec_tf.serving.options import DEFAULTS


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "add-items", help="serve new items the day they arrive: add items with features to a model trained "
                          "with --item-features and export a new version, without retraining",
        description="Append the items of --items that the model does not know to its vocabulary; their vectors "
                    "come from their attributes (the model's attribute embeddings; attributes it never saw are "
                    "dropped), every learned weight stays. Writes EXPORT_BASE/NAME/<next version>/ atomically, as "
                    "`sasrec-tf export` does, and with --out the grown model directory.")
    parser.add_argument("--model", required=True, help="model directory written by `sasrec-tf train --item-features`")
    add_item_features_flags(parser, "--items", required=True,
                            help="the new items' features, in the format of the training run's --item-features")
    parser.add_argument("--export-base", dest="export_base", required=True,
                        help="directory that TF Serving (or `sasrec-tf serve`) watches")
    parser.add_argument("--name", default=DEFAULTS.model_name,
                        help=f"model name clients use (default: {DEFAULTS.model_name})")
    k = default_of(export_saved_model, "k")
    parser.add_argument("--k", type=int, default=k, help=f"items returned per request (default: {k})")
    add_cold_score_offset_flag(parser)
    parser.add_argument("--out", metavar="DIR",
                        help="also write the grown model directory here (a later add-items or export starts from it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.artifacts import load_trained, save_trained
    from sasrec_tf.cli.progress import Steps
    from sasrec_tf.warmstart import add_cold_items

    if Path(args.export_base).exists() and not Path(args.export_base).is_dir():
        raise UsageError(f"--export-base {args.export_base} is a file; expected the directory TF Serving watches")
    if args.out is not None and Path(args.out).resolve() == Path(args.model).resolve():
        raise UsageError("--out must differ from --model: the trained model directory stays as it is")
    check_cold_score_offset("--cold-score-offset", args.cold_score_offset)
    features = read_item_features_flags(args)
    grown, added = add_cold_items(load_trained(args.model), features)
    print(f"added {added.added} items from {features.source} ({added.already_known} already known, kept; "
          f"{added.unknown_attributes} attributes the model never saw dropped; "
          f"{added.without_known_attributes} new items left without a known attribute)")
    if args.out is not None:
        save_trained(args.out, grown.model, grown.vocab, item_counts=grown.item_counts,
                     attribute_names=grown.attribute_names)
        print(f"wrote the grown model to {args.out}")
    steps = ["load", "trace and save", "warmup", "publish"]
    progress = Steps(f"exporting to {Path(args.export_base) / args.name}", len(steps), names=steps)
    path = export_saved_model(grown, args.export_base, args.name, k=args.k, progress=progress,
                              card_from=args.model, notes={"cold_items": added.to_dict()},
                              cold_score_offset=args.cold_score_offset)
    print(f"exported {args.name} version {path.name} to {path} ({len(grown.vocab)} items)")
    return 0
