"""``sasrec-tf train``: train on an interaction log (or shards) and write the model and metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sasrec_tf import experiment
from sasrec_tf.cli.common import (UsageError, add_data_flags, add_option_flag, add_train_flags, default_of,
                                  format_config, format_table, read_data, record_data_options, set_flags,
                                  train_options)
from sasrec_tf.cli.feature_flags import add_item_features_flags, read_item_features_flags
from sasrec_tf.choices import LAYER_NORM_PLACEMENTS
from sasrec_tf.config import SASRecConfig
from sasrec_tf.run_options import TrainOptions
from sasrec_tf.distribute import STRATEGIES, global_batch_size, is_chief, make_strategy
from sasrec_tf.layout import ATTRIBUTES_FILE, CONFIG_FILE

# SASRecConfig fields that get their own flag, with their help; any field can be set with --set NAME=VALUE.
CONFIG_FLAGS = {
    "max_len": "the most recent items a sequence keeps (n)",
    "hidden_units": "embedding and hidden size (d)",
    "num_blocks": "self-attention blocks",
    "num_heads": "attention heads (divides --hidden-units)",
    "dropout_rate": "dropout in every block",
    "l2_emb": "L2 regularisation of the embeddings",
    "layer_norm": f"LayerNorm placement: {', '.join(LAYER_NORM_PLACEMENTS)}",
    "learning_rate": "Adam's learning rate",
    "batch_size": "training windows per batch (the global batch under a distribution strategy)",
    "epochs": "epochs to train",
    "num_negatives": "negatives per target for the sampled objectives",
    "training_windows": "windows of each sequence trained on: last (its last max_len items) or all (every one)",
    "seed": "seed of initialisation, negatives and evaluation samples",
}


# The baselines a run may report (metrics.json keys), with their names in the result table.
BASELINES = (("most popular", "baseline_most_popular"), ("content", "baseline_content"))


def register(subcommands) -> None:
    parser = subcommands.add_parser("train", help="train on an interaction log; writes the model and metrics.json")
    add_data_flags(parser)
    parser.add_argument("--out", required=True,
                        help="output directory: new or empty, or an interrupted run to resume (rerun the same command)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in --out even if it holds a finished or interrupted run (the finished "
                             "run is replaced when the new one is complete)")
    parser.add_argument("--config", help="pipeline file (JSON: model / data / train sections)")
    parser.add_argument("--warm-start", dest="warm_start", metavar="DIR",
                        help="start from this trained model directory (e.g. yesterday's run): known items keep "
                             "their ids and learned rows, new items are added, the encoder is copied")
    add_item_features_flags(parser, help="item attributes (S3-Rec's item2attributes JSON, or a csv/tsv/parquet "
                            "table): each item's vector fuses its id embedding with its attributes "
                            "(--set feature_fusion=sum|concat|gate; sum when not set), and items never trained "
                            "on are represented by their attributes (sasrec-tf add-items serves new ones)")
    add_config_flags(parser)
    add_train_flags(parser)
    add_early_stopping_flags(parser)
    parser.add_argument("--strategy", choices=STRATEGIES, default=default_of(make_strategy, "name"),
                        help="tf.distribute strategy: one device, the GPUs of this machine, the workers in "
                             "TF_CONFIG, or the chief, workers and ps tasks in TF_CONFIG (the tables sharded over "
                             "the ps tasks; the same command starts every task)")
    parser.add_argument("--ps-shards", dest="ps_shards", type=int, metavar="INT",
                        help="parameter_server: cut each embedding table into this many shards (default: one "
                             "per ps task)")
    parser.add_argument("--min-shard-bytes", dest="min_shard_bytes", type=int, metavar="BYTES",
                        help="parameter_server: instead, as many shards (at most one per ps task) as keep each "
                             "this large")
    parser.add_argument("--heartbeat-timeout", dest="heartbeat_timeout", type=float, metavar="SECONDS",
                        help="multi_worker: how long the cluster waits for a task's heartbeat before it aborts "
                             "(TensorFlow's default: 10 s; longer on crowded or preemptible machines)")
    parser.add_argument("--per-replica-batch-size", dest="per_replica_batch_size", type=int, metavar="INT",
                        help="batch per replica; the global batch (--batch-size) becomes this x replicas")
    parser.add_argument("--data-format", dest="data_format", choices=("log", "tfrecord"), default="log",
                        help="log: --data is an interaction log (--format); tfrecord: a `sasrec-tf shard` directory")
    parser.set_defaults(func=run)


def add_early_stopping_flags(parser: argparse.ArgumentParser) -> None:
    """What makes early stopping (``--patience``) robust to one noisy validation."""
    add_option_flag(parser, TrainOptions, "smoothing",
                    help="with --patience: judge improvement on the mean of the last N validations")
    add_option_flag(parser, TrainOptions, "min_delta",
                    help="with --patience: the least gain of the validation metric that counts as an improvement")
    add_option_flag(parser, TrainOptions, "min_epochs", help="with --patience: never stop before this epoch")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    for name, help in CONFIG_FLAGS.items():
        add_option_flag(parser, SASRecConfig, name, help=help)


def resolve_config(args: argparse.Namespace, pipeline: experiment.Pipeline) -> SASRecConfig:
    """The pipeline file's ``model`` section, then the config flags, then ``--set``."""
    set_flags(pipeline, "model", args, CONFIG_FLAGS)
    pipeline.apply_overrides(args.set)
    return pipeline.build("model")


def run(args: argparse.Namespace) -> int:
    if args.strategy == "parameter_server":
        _serve_unless_chief()  # a worker or ps task serves the chief until it is stopped
    elif args.ps_shards is not None or args.min_shard_bytes is not None:
        raise UsageError("--ps-shards and --min-shard-bytes need --strategy parameter_server")
    if args.heartbeat_timeout is not None and args.strategy != "multi_worker":
        raise UsageError("--heartbeat-timeout needs --strategy multi_worker")
    pipeline = experiment.load_pipeline(args.config)
    config = resolve_config(args, pipeline)
    options = train_options(args, pipeline)
    features = read_item_features_flags(args, pipeline)
    if features is not None and config.feature_fusion == "none":
        config = config.replace(feature_fusion="sum")
        print("item features: feature_fusion sum (--set feature_fusion=concat or gate for another fusion)")
    strategy, config = _distribution(args, config)  # before TensorFlow runs anything (multi_worker)
    shards = None
    if args.data_format == "tfrecord":
        shards, data = experiment.read_shards(args.data, config, options)
        print(f"training streams {shards.num_users} users from {len(shards.files)} shards in {shards.directory}")
    elif args.warm_start:
        parent_vocab = _parent_vocabulary(args.warm_start)
        data = read_data(args, pipeline, vocab=parent_vocab, grow=True)
        print(f"warm start from {args.warm_start}: {len(parent_vocab)} known items, "
              f"{data.num_items - len(parent_vocab)} new")
        if features is not None and not (Path(args.warm_start) / ATTRIBUTES_FILE).is_file():
            print("warm start: the parent has no item features: its id rows are copied, the attribute embedding "
                  "and the fusion weights start fresh")
    else:
        data = read_data(args, pipeline)
    print(f"data: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions")
    print(format_config(config, str(Path(args.out) / CONFIG_FILE)))
    verbose = 1 if sys.stdout.isatty() else 2  # a progress bar on a terminal, one line per epoch in a log
    try:
        result = experiment.train_and_evaluate(data, config, out_dir=args.out, options=options,
                                               overwrite=args.overwrite, verbose=verbose, strategy=strategy,
                                               shards=shards, warm_start=args.warm_start,
                                               item_features=features)
    except Exception as err:
        if args.strategy == "parameter_server" and type(err).__name__ in ("UnavailableError", "AbortedError"):
            raise UsageError(f"a ps task (or every worker) of the cluster was lost ({type(err).__name__}): start "
                             f"the lost tasks and the chief again with the same command; the chief resumes from "
                             f"{args.out}/backup after the last finished epoch") from None
        raise
    if is_chief(strategy):
        if shards is None:  # evaluate, recommend and attention-plot read a log as this one was read
            record_data_options(args.out, args, pipeline)
        rows = [("valid", result.metrics["valid"]), ("test", result.metrics["test"])]
        rows += [(f"{name} baseline (test)", result.metrics[key]["test"]) for name, key in BASELINES
                 if key in result.metrics]
        print(format_table(rows))
        if "cold_score_offsets" in result.metrics:
            from sasrec_tf.evaluation.cold_offsets import format_cold_offset_table

            print(format_cold_offset_table(result.metrics["cold_score_offsets"]))
            print("(sasrec-tf export --cold-score-offset O serves cold items O lower: chosen on validation)")
        print(f"wrote {args.out}/metrics.json")
    return 0


def _parent_vocabulary(path: str):
    from sasrec_tf.artifacts import VOCAB_FILE
    from sasrec_tf.data.vocab import ItemVocabulary

    if not (Path(path) / VOCAB_FILE).is_file():
        raise UsageError(f"--warm-start {path}: not a trained model directory (no {VOCAB_FILE})")
    return ItemVocabulary.load(Path(path) / VOCAB_FILE)


def _serve_unless_chief() -> None:
    """Under ``--strategy parameter_server``: serve (and never return) on a ``worker`` or ``ps`` task."""
    from sasrec_tf import parameter_server
    from sasrec_tf.distribute import read_tf_config

    try:
        config = read_tf_config()
        parameter_server.check_cluster(config)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if parameter_server.role(config) != "chief":
        parameter_server.serve(config)


def _distribution(args: argparse.Namespace, config: SASRecConfig):
    """The ``--strategy`` and the config with the global batch (from ``--per-replica-batch-size``)."""
    strategy_options = ({"ps_shards": args.ps_shards, "min_shard_bytes": args.min_shard_bytes}
                        if args.strategy == "parameter_server" else {})
    if args.heartbeat_timeout is not None:
        strategy_options["heartbeat_timeout_s"] = args.heartbeat_timeout
    try:
        strategy = make_strategy(args.strategy, **strategy_options)
    except (ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    if args.per_replica_batch_size is not None:
        config = config.replace(batch_size=global_batch_size(strategy, per_replica=args.per_replica_batch_size))
    replicas = strategy.num_replicas_in_sync
    if args.strategy == "parameter_server":
        from sasrec_tf.distribute import read_tf_config

        spec = read_tf_config()["cluster"]
        partitioner = strategy.extended._variable_partitioner
        shards = (f"{partitioner.num_shards} shards" if partitioner.num_shards else
                  f"shards of at least {partitioner.min_shard_bytes} bytes" if partitioner.min_shard_bytes else
                  "one shard per ps task")
        print(f"strategy parameter_server: {len(spec['worker'])} worker(s), {len(spec['ps'])} ps task(s); embedding "
              f"tables in {shards}; batch {config.batch_size} per step")
    elif replicas > 1:
        print(f"strategy {args.strategy}: {replicas} replicas; global batch {config.batch_size} = "
              f"{replicas} x {config.batch_size / replicas:g} per replica")
    return strategy, config
