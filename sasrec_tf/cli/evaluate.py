"""``sasrec-tf evaluate``: re-evaluate a trained model directory on a log (valid and test)."""

from __future__ import annotations

import argparse

from sasrec_tf.choices import STAGES
from sasrec_tf.cli.common import (UsageError, add_data_flags, add_option_flag, add_repeated_targets_flag, default_of,
                                  format_table, read_model_data, train_options, write_json)
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
    metrics = {stage: evaluate(trained.model, split, stage=stage, seed=args.seed, num_negatives=options.eval_negatives,
                               repeated_targets=options.repeated_targets, progress=evaluation_progress(stage))
               for stage in STAGES}
    print(format_table([("valid", metrics["valid"]), ("test", metrics["test"])]))
    if args.out:
        write_json(args.out, metrics)
        print(f"wrote {args.out}")
    return 0
