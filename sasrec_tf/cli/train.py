"""``sasrec-tf train``: train on an interaction log (or shards) and write the model and metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from sasrec_tf import experiment
from sasrec_tf.cli.common import UsageError, add_data_flags, add_train_flags, format_table, read_data, train_options
from sasrec_tf.config import SASRecConfig

# SASRecConfig fields that get their own flag; any field can be set with --set NAME=VALUE.
CONFIG_FLAGS = ("max_len", "hidden_units", "num_blocks", "num_heads", "dropout_rate", "l2_emb", "layer_norm",
                "learning_rate", "batch_size", "epochs", "num_negatives", "training_windows", "seed")


def register(subcommands) -> None:
    parser = subcommands.add_parser("train", help="train on an interaction log; writes the model and metrics.json")
    add_data_flags(parser)
    parser.add_argument("--out", required=True, help="output directory (rerun with the same one to resume)")
    parser.add_argument("--config", help="pipeline file (JSON: model / data / train sections)")
    add_config_flags(parser)
    add_train_flags(parser)
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"), default="default",
                        help="tf.distribute strategy: one device, the GPUs of this machine, or the workers in "
                             "TF_CONFIG")
    parser.add_argument("--per-replica-batch-size", dest="per_replica_batch_size", type=int,
                        help="batch per replica; the global batch (--batch-size) becomes this x replicas")
    parser.add_argument("--data-format", dest="data_format", choices=("log", "tfrecord"), default="log",
                        help="log: --data is an interaction log (--format); tfrecord: a `sasrec-tf shard` directory")
    parser.set_defaults(func=run)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    types = {f.name: f.type for f in dataclasses.fields(SASRecConfig)}
    for name in CONFIG_FLAGS:
        kind = {"int": int, "float": float}.get(types[name], str)
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)


def resolve_config(args: argparse.Namespace, model_section: dict) -> SASRecConfig:
    """The pipeline file's ``model`` section, then the config flags, then ``--set``."""
    values = dict(model_section)
    values.update({name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name, None) is not None})
    try:
        return SASRecConfig.from_dict(experiment.apply_overrides(values, args.set))
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    from sasrec_tf.distribute import is_chief

    pipeline = experiment.load_pipeline(args.config)
    config = resolve_config(args, pipeline.model)
    options = train_options(args, pipeline.train)
    strategy, config = _distribution(args, config)  # before TensorFlow runs anything (multi_worker)
    shards = None
    if args.data_format == "tfrecord":
        shards, data = experiment.read_shards(args.data, config, options)
        print(f"training streams {shards.num_users} users from {len(shards.files)} shards in {shards.directory}")
    else:
        data = read_data(args, pipeline.data)
    print(f"data: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions")
    print(f"config: {json.dumps(config.to_dict(), sort_keys=True)}")
    verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, one line per epoch in a log
    result = experiment.train_and_evaluate(data, config, out_dir=args.out, options=options, verbose=verbose,
                                           strategy=strategy, shards=shards)
    if is_chief(strategy):
        print(format_table([("valid", result.metrics["valid"]), ("test", result.metrics["test"])]))
        print(f"wrote {args.out}/metrics.json")
    return 0


def _distribution(args: argparse.Namespace, config: SASRecConfig):
    """The ``--strategy`` and the config with the global batch (from ``--per-replica-batch-size``)."""
    from sasrec_tf.distribute import global_batch_size, make_strategy

    try:
        strategy = make_strategy(args.strategy or "default")
    except (ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    if args.per_replica_batch_size is not None:
        config = config.replace(batch_size=global_batch_size(strategy, per_replica=args.per_replica_batch_size))
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        print(f"strategy {args.strategy}: {replicas} replicas; global batch {config.batch_size} = "
              f"{replicas} x {config.batch_size / replicas:g} per replica")
    return strategy, config
