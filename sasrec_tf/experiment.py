"""One way to run an experiment: typed options, pipeline files, overrides, and train-and-evaluate.

``sasrec-tf train``, ``sasrec-tf ablation``, the demo and ``benchmarks/quality.py`` all train
through :func:`train_and_evaluate`, so a number in a benchmark table is what the CLI gives.

A pipeline file (``pipelines/*.json``) has three sections, each with one typed reader that
rejects unknown keys:

* ``model`` -- :class:`~sasrec_tf.SASRecConfig` fields;
* ``data`` -- :class:`DataOptions`: how to read and filter the log;
* ``train`` -- :class:`TrainOptions`: validation cadence, early stopping, limits.

Command-line flags and ``--set NAME=VALUE`` override the file through :func:`apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sasrec_tf.config import SASRecConfig

logger = logging.getLogger(__name__)

PIPELINE_SECTIONS = ("model", "data", "train")


def _from_mapping(cls, values: Mapping[str, Any], what: str):
    """``cls(**values)``, rejecting unknown keys with a message that lists the known ones."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {known}")
    return cls(**values)


@dataclasses.dataclass
class DataOptions:
    """How to read an interaction log (:func:`sasrec_tf.data.ingest.read_interactions`) and filter
    it (:func:`~sasrec_tf.data.ingest.filter_interactions`). ``None`` means the reader's default."""

    format: str | None = None
    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None
    rating_col: str | None = None
    min_rating: float | None = None
    sep: str | None = None
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None
    duplicates: str | None = None

    _FILTERS = ("min_user_interactions", "min_item_interactions", "duplicates")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DataOptions":
        return _from_mapping(cls, values, "data")

    def read(self, path: str, vocab=None):
        """Read, filter and sequence the log at ``path``; with ``vocab`` (a trained model's),
        interactions with items it does not know are dropped with a warning."""
        from sasrec_tf.data.ingest import filter_interactions, read_interactions
        from sasrec_tf.data.sequences import build_sequences

        if self.format is None:
            raise ValueError("a data format is required (--format, or data.format in the --config file)")
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "format"}
        filters = {k: given.pop(k) for k in self._FILTERS if k in given}
        log = filter_interactions(read_interactions(path, self.format, **given), **filters)
        if vocab is not None:
            known = log["item"].isin(vocab.ids)
            if not known.all():
                logger.warning("dropping %d interactions with items unknown to the model", int((~known).sum()))
                log = log[known]
        return build_sequences(log, vocab)


@dataclasses.dataclass
class TrainOptions:
    """How :func:`train_and_evaluate` runs ``fit`` (see :func:`sasrec_tf.training.fit`).

    ``eval_every`` validates (full ranking) every N epochs; ``patience`` stops after that many
    validations without improvement of ``val_<monitor>`` and restores the best weights;
    ``max_eval_users`` validates on a seeded sample; ``max_minutes`` stops training after that
    much wall time. With ``patience`` the best validated weights are the result however training
    ends (early, on the epoch limit or on the time limit); without it, the final weights.
    """

    eval_every: int = 5
    patience: int | None = None
    monitor: str = "ndcg@10"
    max_eval_users: int | None = None
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("eval_every", "patience", "max_eval_users"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"train option {name} must be a positive integer, got {value!r}")
        if self.max_minutes is not None and not (isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0):
            raise ValueError(f"train option max_minutes must be a positive number, got {self.max_minutes!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainOptions":
        return _from_mapping(cls, values, "train")


@dataclasses.dataclass
class Pipeline:
    """A pipeline file: the ``model`` section stays a dict until overrides are applied."""

    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    train: TrainOptions = dataclasses.field(default_factory=TrainOptions)
    description: str = ""


def load_pipeline(path: str | Path | None) -> Pipeline:
    """Read a pipeline file (JSON with ``model``, ``data`` and ``train`` sections); ``None`` gives
    the defaults. Errors are ``ValueError``/``FileNotFoundError`` naming the file."""
    if path is None:
        return Pipeline()
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with sections {list(PIPELINE_SECTIONS)}")
    unknown = sorted(set(raw) - set(PIPELINE_SECTIONS) - {"description"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected {list(PIPELINE_SECTIONS)}")
    try:
        return Pipeline(model=dict(raw.get("model", {})), data=DataOptions.from_dict(raw.get("data", {})),
                        train=TrainOptions.from_dict(raw.get("train", {})), description=raw.get("description", ""))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON (numbers, true/false, null, lists) or else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(values: Mapping[str, Any], assignments: Iterable[str] = ()) -> dict[str, Any]:
    """``values`` updated by ``NAME=VALUE`` assignments (``--set``), values parsed as JSON."""
    result = dict(values)
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set expects NAME=VALUE, got {assignment!r}")
        name, value = assignment.split("=", 1)
        result[name.strip()] = parse_value(value)
    return result


def read_shards(directory: str, config: SASRecConfig, options: TrainOptions):
    """``(shards, data)`` for training from a ``sasrec-tf shard`` directory: training streams
    from the shards, and ``data`` holds the users to evaluate in memory (all of them, or a seeded
    sample of ``options.max_eval_users``, on which the reported metrics then are)."""
    from sasrec_tf.data.tfrecord import ShardedSequences

    shards = ShardedSequences(directory)
    users = None
    if options.max_eval_users is not None and options.max_eval_users < shards.num_users:
        if config.use_user_embedding:
            raise ValueError("use_user_embedding with sharded input needs every user evaluated: "
                             "drop max_eval_users (--max-eval-users)")
        users = np.random.default_rng(config.seed).choice(shards.num_users, size=options.max_eval_users,
                                                          replace=False)
        logger.info("evaluating a sample of %d of %d users", options.max_eval_users, shards.num_users)
    else:
        logger.warning("reading every user's sequence for evaluation; set max_eval_users to bound the memory")
    return shards, shards.read_sequences(users)


@dataclasses.dataclass
class Result:
    """What :func:`train_and_evaluate` produced: the trained model, the Keras History and the
    metrics (as written to ``metrics.json``)."""

    model: Any
    history: Any
    metrics: dict[str, Any]


def _time_limit_callback(keras, max_seconds: float):
    class TimeLimit(keras.callbacks.Callback):
        """Stops training after ``max_seconds`` of wall time (checked at the end of each epoch)."""

        def on_train_begin(self, logs=None):
            self.started, self.stopped = time.perf_counter(), False

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - self.started > max_seconds:
                self.stopped = self.model.stop_training = True

    return TimeLimit()


def _best_weights_callback(keras, monitor: str, restore: bool):
    class BestWeights(keras.callbacks.Callback):
        """Tracks the epoch of the best validation; with ``restore``, keeps its weights and
        restores them at the end (also when training ends on the epoch or time limit)."""

        def on_train_begin(self, logs=None):
            self.best, self.best_epoch, self.weights = -float("inf"), 0, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is not None and value > self.best:
                self.best, self.best_epoch = float(value), epoch + 1
                self.weights = self.model.get_weights() if restore else None

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestWeights()


def train_and_evaluate(
    data,
    config: SASRecConfig,
    *,
    out_dir: str | Path | None = None,
    options: TrainOptions | None = None,
    baseline: bool = False,
    verbose: int | str = 0,
    strategy=None,
    shards=None,
    callbacks: Sequence[Any] = (),
) -> Result:
    """Split ``data`` leave-one-out, train ``config`` on it, evaluate valid and test (full ranking
    and the paper's sampled protocol), and with ``out_dir`` save the model directory and
    ``metrics.json`` there (``out_dir/backup`` lets an interrupted run resume).

    Objectives that read item frequencies (popularity negatives, log-q correction) start from the
    training split's exact counts. With a ``tf.distribute`` ``strategy`` every worker of a cluster
    runs this and only the chief writes. With ``shards`` (:func:`read_shards`) training streams
    from TFRecord shards and ``data`` holds only the users that are evaluated. ``baseline`` adds
    the most-popular baseline's test metrics.
    """
    from sasrec_tf import artifacts, distribute, training
    from sasrec_tf._compat import keras
    from sasrec_tf.baselines import MostPopular
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import evaluate, training_item_counts

    options = options or TrainOptions()
    split = leave_one_out(data)
    num_users = shards.num_users if shards else data.num_users
    model = training.build_model(config, data.num_items, num_users, strategy=strategy)
    item_counts = shards.train_item_counts() if shards else training_item_counts(split.train, data.num_items)
    if model.target_counts is not None:
        model.set_item_counts(item_counts)
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
    # With patience the run selects its model on validation: the best validated weights are kept
    # however training ends. Without it, the final weights are the model.
    best = _best_weights_callback(keras, f"val_{options.monitor}", restore=options.patience is not None)
    extra = [best]
    limit = None
    if options.max_minutes is not None:
        limit = _time_limit_callback(keras, options.max_minutes * 60)
        extra.append(limit)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    history = training.fit(model, split, out_dir=out_dir, eval_every=options.eval_every, patience=options.patience,
                           monitor=options.monitor, max_eval_users=options.max_eval_users,
                           callbacks=[*extra, *callbacks], verbose=verbose, strategy=strategy, **sharded_input)
    train_seconds = time.perf_counter() - started
    if out_dir is not None:
        # Every worker saves (saving synchronises variables across workers); only the chief's copy stays.
        with distribute.writable_dir(out_dir, strategy) as target:
            artifacts.save_trained(target, model, data.vocab, shards.user_ids() if shards else data.user_ids,
                                   item_counts=item_counts)

    metrics: dict[str, Any] = {stage: evaluate(model, split, stage=stage, seed=config.seed)
                               for stage in ("valid", "test")}
    epochs_run = len(history.history.get("loss", []))
    stopped = ("time" if limit is not None and limit.stopped
               else "early" if epochs_run < config.epochs else "max_epochs")
    metrics["training"] = {"epochs": epochs_run, "best_epoch": best.best_epoch, "stopped": stopped,
                           "wall_seconds": round(train_seconds, 2),
                           "seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 3)}
    metrics["dataset"] = {"users": num_users, "items": data.num_items,
                          "interactions": shards.num_interactions if shards else int(data.lengths().sum()),
                          "evaluated_users": int(len(split.test_targets)),
                          "short_users": int(split.num_short_users)}
    if baseline:
        popular = MostPopular(split.train, data.num_items, config.max_len)
        metrics["baseline_most_popular"] = {"test": evaluate(popular, split, stage="test", seed=config.seed)}
    if out_dir is not None and distribute.is_chief(strategy):
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Result(model=model, history=history, metrics=metrics)
