"""``sasrec-tf evaluate``: re-evaluate a trained model directory on a log (valid and test).

A model trained under the cold-start protocol (``train --cold-items``) is evaluated on the split it
was evaluated on: the hold-out its run recorded (``metrics.json``'s or ``card.json``'s
``cold_start``: fraction and seed) is applied again, and cold and warm targets are reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sasrec_tf.choices import STAGES
from sasrec_tf.cli.common import (UsageError, add_data_flags, add_option_flag, add_repeated_targets_flag, default_of,
                                  format_table, read_model_data, train_options, write_json)
from sasrec_tf.cli.feature_flags import check_cold_score_offset
from sasrec_tf.experiment import Pipeline, TrainOptions


def register(subcommands) -> None:
    parser = subcommands.add_parser("evaluate", help="re-evaluate a trained model directory")
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory written by `sasrec-tf train`")
    add_data_flags(parser, from_model=True)
    parser.add_argument("--out", help="write the metrics as JSON here")
    parser.add_argument("--seed", type=int, default=42, help="seed of the sampled protocol's negatives")
    add_option_flag(parser, TrainOptions, "eval_negatives",
                    help="negatives per item in the sampled protocol (default: the paper's "
                         f"{default_of(TrainOptions, 'eval_negatives')})")
    add_repeated_targets_flag(parser)
    parser.add_argument("--cold-score-offsets", dest="cold_score_offsets", type=float, nargs="+", metavar="O",
                        help="a model trained under the cold-start protocol with item features: also rank the "
                             "validation split with cold items' scores lowered by each O (cold, warm and all targets; "
                             "the choice for `export --cold-score-offset`; default: the train run's grid)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.cli.progress import evaluation_progress
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import evaluate
    from sasrec_tf.experiment import check_evaluable

    options = train_options(args, Pipeline())
    trained = load_trained(args.model)
    data = read_model_data(args, args.model, vocab=trained.vocab)
    if trained.model.uses_user_embedding and trained.user_ids is not None:
        if list(data.user_ids) != list(trained.user_ids):
            raise UsageError("this model has user embeddings: evaluate it on the users it was trained on")
    split = leave_one_out(data)
    check_evaluable(data, split, options)
    cold = None
    recorded, record = _recorded_cold_start(Path(args.model))
    if record is not None:
        from sasrec_tf.data.cold_start import hold_out_as_recorded

        split, cold = hold_out_as_recorded(split, record, source=str(recorded))
        print(f"cold start as the training run held out ({recorded}): {len(cold.items)} of {data.num_items} items "
              f"(fraction {cold.fraction}, seed {cold.seed}); cold and warm targets reported", flush=True)
    protocol = {"cold_items": cold.items} if cold is not None else {}
    if args.cold_score_offsets and (cold is None or not trained.model.uses_item_features):
        raise UsageError("--cold-score-offsets needs a model with item features trained under the cold-start "
                         "protocol (train --item-features ... --cold-items F)")
    check_cold_score_offset("--cold-score-offsets", *(args.cold_score_offsets or ()))
    metrics: dict[str, Any] = {
        stage: evaluate(trained.model, split, stage=stage, seed=args.seed, num_negatives=options.eval_negatives,
                        repeated_targets=options.repeated_targets, progress=evaluation_progress(stage), **protocol)
        for stage in STAGES}
    if cold is not None:
        metrics["cold_start"] = cold.to_dict()
    print(format_table([("valid", metrics["valid"]), ("test", metrics["test"])]))
    if cold is not None and trained.model.uses_item_features:
        from sasrec_tf.evaluation import DEFAULT_COLD_OFFSETS, cold_offset_table, format_cold_offset_table

        metrics["cold_score_offsets"] = cold_offset_table(trained.model, split, cold.items,
                                                          offsets=args.cold_score_offsets or DEFAULT_COLD_OFFSETS,
                                                          repeated_targets=options.repeated_targets)
        print(format_cold_offset_table(metrics["cold_score_offsets"]))

    if args.out:
        write_json(args.out, metrics)
        print(f"wrote {args.out}")
    return 0


def _recorded_cold_start(model_dir: Path) -> tuple[Path | None, Any]:
    """Where the training run recorded its cold-start hold-out and the record (``metrics.json``,
    else ``card.json``); ``(None, None)`` for a run without one."""
    from sasrec_tf.card import CARD_FILE
    from sasrec_tf.layout import METRICS_FILE

    for name in (METRICS_FILE, CARD_FILE):
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{path} is unreadable: it records whether the run held out cold items") from None
        if isinstance(record, dict) and "cold_start" in record:
            return path, record["cold_start"]
        if isinstance(record, dict):
            return None, None
    return None, None
