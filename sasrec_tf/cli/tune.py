"""``sasrec-tf tune``: search a configuration on validation (Optuna), write the best as a pipeline file."""

from __future__ import annotations

import argparse
import shlex
import sys

from sasrec_tf import experiment
from sasrec_tf.cli.common import UsageError, add_data_flags, add_train_flags, read_data, train_options
from sasrec_tf.cli.train import CONFIG_FLAGS, add_config_flags, add_early_stopping_flags, resolve_config


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "tune", help="search configurations on validation (Optuna); writes trials.csv, best.json, tune.png",
        description="Each trial trains the --config pipeline (with the flags) with values drawn from --space, "
                    "judged by its validation --monitor (full ranking; no test metric is computed during the "
                    "search); poor trials are pruned from their validation curves. The study resumes when "
                    "the same command runs again. At the end best.json (a pipeline file for `sasrec-tf train "
                    "--config`) is trained in full once and its test metrics reported.")
    add_data_flags(parser)
    parser.add_argument("--space", required=True, metavar="SPACE.json",
                        help='search space: {"model": {FIELD: {"choices": [...]} or {"low": .., "high": .., '
                             '"log": BOOL, "step": ..}}, "train": {...}} (see docs/training.md)')
    parser.add_argument("--trials", type=int, required=True, help="finished trials (complete or pruned) the study holds")
    parser.add_argument("--out", required=True, help="the study's directory: study.db, trials.csv, best.json, tune.png")
    parser.add_argument("--config", help="base pipeline file (JSON: model / data / train sections)")
    add_config_flags(parser)
    add_train_flags(parser)
    add_early_stopping_flags(parser)
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna RDB storage URL shared by several machines (default: sqlite in --out)")
    parser.add_argument("--study-name", dest="study_name", default="sasrec", help="the study's name in the storage")
    parser.add_argument("--pruner", choices=("median", "none"), default="median",
                        help="median: stop a trial whose validation falls below the median of earlier trials at "
                             "the same epoch")
    parser.add_argument("--prune-after", dest="prune_after", type=int, default=5, metavar="TRIALS",
                        help="trials that finish before the pruner starts judging")
    parser.add_argument("--prune-warmup", dest="prune_warmup", type=int, metavar="EPOCHS",
                        help="no trial is pruned before this epoch (default: 2 x --eval-every)")
    parser.add_argument("--sampler-seed", dest="sampler_seed", type=int, default=0, help="the seed of the sampler (TPE)")
    parser.add_argument("--no-final-run", dest="final_run", action="store_false",
                        help="do not train the best configuration in full (no test metric at all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.tune.space import load_space

    if args.trials < 1:
        raise UsageError(f"--trials must be >= 1, got {args.trials}")
    if args.prune_warmup is not None and args.prune_warmup < 0:
        raise UsageError(f"--prune-warmup must be >= 0, got {args.prune_warmup}")
    if args.prune_after < 0:
        raise UsageError(f"--prune-after must be >= 0, got {args.prune_after}")
    pipeline = experiment.load_pipeline(args.config)
    resolve_config(args, pipeline)  # the config flags and --set, checked
    train_options(args, pipeline)
    space = load_space(args.space)
    from sasrec_tf.tune import tune  # Optuna and TensorFlow: only once the arguments are good

    data = read_data(args, pipeline)
    print(f"data: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions")
    print(f"searching {len(space.params)} field(s): {', '.join(p.name for p in space.params)}; objective: "
          f"validation {pipeline.build('train').monitor} (full ranking)", flush=True)
    command = "sasrec-tf " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["tune"] else None
    tune(data, pipeline, space, out_dir=args.out, trials=args.trials, storage=args.storage,
         study_name=args.study_name, pruner=args.pruner, prune_after=args.prune_after,
         prune_warmup=args.prune_warmup, seed=args.sampler_seed,
         final_run=args.final_run, command=command,
         report=lambda line: print(line, flush=True))
    print(f"wrote {args.out}/trials.csv, {args.out}/best.json, {args.out}/tune.png")
    return 0


__all__ = ["CONFIG_FLAGS", "register", "run"]
