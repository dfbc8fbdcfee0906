"""``sasrec-tf``: train, evaluate and demo SASRec from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.errors import DataError

logger = logging.getLogger("sasrec_tf")

FORMATS = ("csv", "tsv", "parquet", "sasrec", "s3rec", "movielens")
# SASRecConfig fields that get their own flag; any field can be set with --set NAME=VALUE.
CONFIG_FLAGS = ("max_len", "hidden_units", "num_blocks", "num_heads", "dropout_rate", "l2_emb", "layer_norm",
                "learning_rate", "batch_size", "epochs", "num_negatives", "training_windows", "seed")
PIPELINE_SECTIONS = ("model", "data", "train")
DATA_OPTIONS = ("format", "min_user_interactions", "min_item_interactions", "duplicates", "min_rating",
                "user_col", "item_col", "time_col", "rating_col", "sep")
TRAIN_OPTIONS = ("eval_every", "patience", "monitor", "max_eval_users")
# Modules that add their own subcommands through ``add_commands(subparsers)``.
COMMAND_MODULES = (
    "sasrec_tf.serving.commands",  # export, serve
    "sasrec_tf.ablation",  # ablation, attention-plot
    "sasrec_tf.data.tfrecord",  # shard
)
TRAIN_DEFAULTS = {"eval_every": 5, "patience": None, "monitor": "ndcg@10", "max_eval_users": None}


class UsageError(Exception):
    """A problem with the command line or a config file."""


# ------------------------------------------------------------------------------------ configuration
def load_pipeline(path: str | None) -> dict[str, dict[str, Any]]:
    """Read a pipeline file (JSON with ``model``, ``data``, ``train`` sections)."""
    if path is None:
        return {section: {} for section in PIPELINE_SECTIONS}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    unknown = sorted(set(raw) - set(PIPELINE_SECTIONS) - {"description"})
    if unknown:
        raise UsageError(f"{path}: unknown section(s) {unknown}; expected {list(PIPELINE_SECTIONS)}")
    pipeline = {section: dict(raw.get(section, {})) for section in PIPELINE_SECTIONS}
    for section, known in (("data", DATA_OPTIONS), ("train", TRAIN_OPTIONS)):
        bad = sorted(set(pipeline[section]) - set(known))
        if bad:
            raise UsageError(f"{path}: unknown {section} option(s) {bad}; known: {list(known)}")
    return pipeline


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve_config(args: argparse.Namespace, pipeline: dict[str, Any]) -> SASRecConfig:
    values = dict(pipeline["model"])
    for name in CONFIG_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    for assignment in getattr(args, "set", None) or []:
        if "=" not in assignment:
            raise UsageError(f"--set expects NAME=VALUE, got {assignment!r}")
        name, value = assignment.split("=", 1)
        values[name.strip()] = _parse_value(value)
    try:
        return SASRecConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------------------------ the work
def run_training(data, config: SASRecConfig, out_dir: Path, train_options: dict[str, Any], *,
                 baseline: bool = False, verbose: int | None = None, strategy=None,
                 shards=None) -> dict[str, Any]:
    """Split, train, save and evaluate; returns the metrics written to ``out_dir/metrics.json``.

    With a ``tf.distribute`` ``strategy``, every worker of a cluster runs this; only the chief
    writes the model directory and ``metrics.json``. With ``shards`` (a
    :class:`~sasrec_tf.data.tfrecord.ShardedSequences`), training streams from the TFRecord shards
    and ``data`` holds only the users that are evaluated.
    """
    from sasrec_tf import artifacts, distribute, training
    from sasrec_tf.baselines import MostPopular
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import evaluate, training_item_counts

    split = leave_one_out(data)
    print(f"data: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions; "
          f"{len(split.test_targets)} users evaluated ({split.num_short_users} with < 3 interactions train only)")
    print(f"config: {json.dumps(config.to_dict(), sort_keys=True)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = training.build_model(config, data.num_items, shards.num_users if shards else data.num_users,
                                 strategy=strategy)
    sharded_input = {}
    if shards is not None:
        sharded_input = {
            "dataset": shards.dataset_fn(config.max_len, config.batch_size, leave_one_out=True,
                                         num_negatives=config.num_negatives, windows=config.training_windows,
                                         exclude_history=config.exclude_history_negatives,
                                         bucket_by_length=config.bucket_by_length, seed=config.seed),
            "steps_per_epoch": shards.steps_per_epoch(config.max_len, config.batch_size, config.training_windows,
                                                      leave_one_out=True),
        }
        print(f"training streams {shards.num_users} users from {len(shards.files)} shards in {shards.directory}")
    started = time.perf_counter()
    if verbose is None:  # a progress bar on a terminal, one line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
    history = training.fit(model, split, out_dir=out_dir, verbose=verbose, strategy=strategy, **sharded_input,
                           **train_options)
    train_seconds = time.perf_counter() - started
    item_counts = shards.train_item_counts() if shards else training_item_counts(split.train, data.num_items)
    # Every worker saves (saving synchronises variables across workers); only the chief's copy stays.
    with distribute.writable_dir(out_dir, strategy) as target:
        artifacts.save_trained(target, model, data.vocab, shards.user_ids() if shards else data.user_ids,
                               item_counts=item_counts)

    metrics: dict[str, Any] = {}
    for stage in ("valid", "test"):
        metrics[stage] = evaluate(model, split, stage=stage, seed=config.seed)
    epochs_run = len(history.history.get("loss", []))
    metrics["training"] = {"epochs": epochs_run, "wall_seconds": round(train_seconds, 2),
                           "seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 3)}
    metrics["dataset"] = {"users": shards.num_users if shards else data.num_users, "items": data.num_items,
                          "interactions": shards.num_interactions if shards else int(data.lengths().sum()),
                          "evaluated_users": int(len(split.test_targets)),
                          "short_users": int(split.num_short_users)}
    if baseline:
        popular = MostPopular(split.train, data.num_items, config.max_len)
        metrics["baseline_most_popular"] = {"test": evaluate(popular, split, stage="test", seed=config.seed)}
    if distribute.is_chief(strategy):
        _write_json(out_dir / "metrics.json", metrics)
    return metrics


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def format_table(rows: Sequence[tuple[str, dict[str, dict[str, float]]]]) -> str:
    keys = ("hr@10", "ndcg@10", "mrr")
    header = f"{'':<28}" + "".join(f"{p + ' ' + k:>16}" for p in ("full", "sampled") for k in keys)
    lines = [header]
    for name, result in rows:
        lines.append(f"{name:<28}" + "".join(f"{result[p][k]:>16.4f}" for p in ("full", "sampled") for k in keys))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ commands
def cmd_demo(args: argparse.Namespace) -> int:
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions

    started = time.perf_counter()
    log = generate_interactions(num_users=args.users, num_items=args.items, seed=args.seed)
    print(f"generated a log with sequential structure: {len(log)} interactions "
          f"({args.users} users, {args.items} items)")
    data = build_sequences(log)
    config = SASRecConfig(max_len=50, hidden_units=50, num_blocks=2, num_heads=1, dropout_rate=0.2,
                          epochs=args.epochs, seed=args.seed)
    metrics = run_training(data, config, Path(args.out), {"eval_every": 5}, baseline=True,
                           verbose=2)
    print()
    print("test metrics (leave-one-out; 'sampled' = paper's 100 negatives, 'full' = all items):")
    print(format_table([("SASRec", metrics["test"]), ("most popular (baseline)",
                                                      metrics["baseline_most_popular"]["test"])]))
    print(f"\ntraining: {metrics['training']['epochs']} epochs in {metrics['training']['wall_seconds']:.1f} s; "
          f"total {time.perf_counter() - started:.1f} s; model and metrics.json in {args.out}/")
    from sasrec_tf.serving.commands import demo_export_and_recommend
    demo_export_and_recommend(Path(args.out), data)
    return 0


def _read_data(args: argparse.Namespace, data_options: dict[str, Any], vocab=None):
    from sasrec_tf.data.ingest import filter_interactions, read_interactions
    from sasrec_tf.data.sequences import build_sequences

    options = {**data_options}
    for name in DATA_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    fmt = options.pop("format", None)
    if fmt is None:
        raise UsageError("--format is required (or set data.format in the --config file)")
    filters = {name: options.pop(name) for name in ("min_user_interactions", "min_item_interactions",
                                                    "duplicates") if name in options}
    if fmt == "tsv":
        fmt, options["sep"] = "csv", "\t"
    log = read_interactions(args.data, fmt, **options)
    log = filter_interactions(log, **filters)
    if vocab is not None:
        known = log["item"].isin(vocab.ids)
        if not known.all():
            logger.warning("dropping %d interactions with items unknown to the model", int((~known).sum()))
            log = log[known]
    return build_sequences(log, vocab)


def cmd_train(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.config)
    config = resolve_config(args, pipeline)
    train_options = {**TRAIN_DEFAULTS, **pipeline["train"]}
    for name in TRAIN_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            train_options[name] = value
    strategy, config = _distribution(args, config)  # before TensorFlow runs anything (multi_worker)
    if getattr(args, "data_format", "log") == "tfrecord":
        from sasrec_tf.data.tfrecord import read_for_training

        shards, data = read_for_training(args.data, config, train_options)
    else:
        shards, data = None, _read_data(args, pipeline["data"])
    metrics = run_training(data, config, Path(args.out), train_options, strategy=strategy, shards=shards)
    from sasrec_tf.distribute import is_chief

    if is_chief(strategy):
        print(format_table([("valid", metrics["valid"]), ("test", metrics["test"])]))
        print(f"wrote {args.out}/metrics.json")
    return 0


def _distribution(args: argparse.Namespace, config: SASRecConfig):
    """The ``--strategy`` and the config with the global batch (from ``--per-replica-batch-size``)."""
    from sasrec_tf.distribute import global_batch_size, make_strategy

    try:
        strategy = make_strategy(getattr(args, "strategy", None) or "default")
    except (ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    per_replica = getattr(args, "per_replica_batch_size", None)
    if per_replica is not None:
        config = config.replace(batch_size=global_batch_size(strategy, per_replica=per_replica))
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        print(f"strategy {args.strategy}: {replicas} replicas; global batch {config.batch_size} = "
              f"{replicas} x {config.batch_size / replicas:g} per replica")
    return strategy, config


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import evaluate

    trained = load_trained(args.model)
    data = _read_data(args, {}, vocab=trained.vocab)
    if trained.model.uses_user_embedding and trained.user_ids is not None:
        if list(data.user_ids) != list(trained.user_ids):
            raise UsageError("this model has user embeddings: evaluate it on the users it was trained on")
    split = leave_one_out(data)
    metrics = {stage: evaluate(trained.model, split, stage=stage, seed=args.seed) for stage in ("valid", "test")}
    print(format_table([("valid", metrics["valid"]), ("test", metrics["test"])]))
    if args.out:
        _write_json(Path(args.out), metrics)
        print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------------------------ parser
def _add_data_flags(parser: argparse.ArgumentParser, required_format: bool = False) -> None:
    parser.add_argument("--data", required=True, help="interaction log: file path")
    parser.add_argument("--format", choices=FORMATS, required=required_format, default=None)
    parser.add_argument("--user-col", dest="user_col")
    parser.add_argument("--item-col", dest="item_col")
    parser.add_argument("--time-col", dest="time_col")
    parser.add_argument("--rating-col", dest="rating_col")
    parser.add_argument("--min-rating", dest="min_rating", type=float,
                        help="keep interactions rated at least this (implicit feedback)")
    parser.add_argument("--sep", help="field separator for csv")
    parser.add_argument("--min-user-interactions", dest="min_user_interactions", type=int)
    parser.add_argument("--min-item-interactions", dest="min_item_interactions", type=int)
    parser.add_argument("--duplicates", choices=("keep", "first", "last"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sasrec-tf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate a log with sequential structure, train, evaluate")
    demo.add_argument("--out", default="demo_output")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--users", type=int, default=3000)
    demo.add_argument("--items", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=cmd_demo)

    train = commands.add_parser("train", help="train on an interaction log; writes the model and metrics.json")
    _add_data_flags(train)
    train.add_argument("--out", required=True, help="output directory (rerun with the same one to resume)")
    train.add_argument("--config", help="pipeline file (JSON: model / data / train sections)")
    for name in CONFIG_FLAGS:
        field_type = {f.name: f.type for f in dataclasses.fields(SASRecConfig)}[name]
        kind = {"int": int, "float": float}.get(field_type, str)
        train.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    train.add_argument("--set", action="append", metavar="NAME=VALUE", help="any SASRecConfig field")
    train.add_argument("--eval-every", dest="eval_every", type=int, help="validate every N epochs")
    train.add_argument("--patience", type=int, help="early stopping after N evaluations without improvement")
    train.add_argument("--max-eval-users", dest="max_eval_users", type=int)
    train.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"), default="default",
                       help="tf.distribute strategy: one device, the GPUs of this machine, or the workers in TF_CONFIG")
    train.add_argument("--per-replica-batch-size", dest="per_replica_batch_size", type=int,
                       help="batch per replica; the global batch (--batch-size) becomes this x replicas")
    train.add_argument("--data-format", dest="data_format", choices=("log", "tfrecord"), default="log",
                       help="log: --data is an interaction log (--format); tfrecord: a `sasrec-tf shard` directory")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="re-evaluate a trained model directory")
    evaluate.add_argument("--model", required=True)
    _add_data_flags(evaluate, required_format=True)
    evaluate.add_argument("--out", help="write the metrics as JSON here")
    evaluate.add_argument("--seed", type=int, default=42)
    evaluate.set_defaults(func=cmd_evaluate)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError) as err:
        print(f"sasrec-tf: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sasrec-tf: interrupted (rerun the same command to resume training)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
