"""One way to run an experiment: typed options, pipeline files, overrides, and train-and-evaluate.

``sasrec-tf train``, ``sasrec-tf ablation``, the demo and ``benchmarks/quality.py`` all train
through :func:`train_and_evaluate`, so a number in a benchmark table is what the CLI gives.

A pipeline file (``pipelines/*.json``) has three sections, each a typed dataclass that rejects
unknown keys:

* ``model`` -- :class:`~sasrec_tf.SASRecConfig` fields;
* ``data`` -- :class:`DataOptions`: how to read and filter the log;
* ``train`` -- :class:`TrainOptions`: validation cadence, early stopping, limits, evaluation.

The file, command-line flags and ``--set NAME=VALUE`` all set options through one typed parser
(:class:`Pipeline`, :func:`sasrec_tf.config.parse_option`): JSON values must have the field's
type, flag and ``--set`` text is parsed by it, and an error names the value's source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sasrec_tf.config import REPEATED_TARGETS, OptionError, SASRecConfig, check_option_types, parse_option

logger = logging.getLogger(__name__)

PIPELINE_SECTIONS = ("model", "data", "train")
METRICS_FILE = "metrics.json"
BACKUP_DIR = "backup"  # Keras' BackupAndRestore state, and RUN_FILE, while a run is unfinished
LOGS_DIR = "logs"  # TensorBoard
RUN_FILE = "run.json"  # in BACKUP_DIR: the run's fingerprint and progress, for a resume


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

    def __post_init__(self) -> None:
        check_option_types(self)
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise OptionError("min_rating", f"DataOptions.min_rating must be a finite number, got {self.min_rating!r}")
        for name in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise OptionError(name, f"DataOptions.{name} must be >= 0, got {getattr(self, name)!r}")

    def read(self, path: str, vocab=None, *, grow: bool = False):
        """Read, filter and sequence the log at ``path``; with ``vocab`` (a trained model's),
        interactions with items it does not know are dropped with a warning, or with ``grow``
        (a warm start) added after the known ones (:func:`sasrec_tf.warmstart.extend_vocabulary`)."""
        from sasrec_tf.data.ingest import filter_interactions, read_interactions
        from sasrec_tf.data.sequences import build_sequences

        if self.format is None:
            raise ValueError("a data format is required (--format, or data.format in the --config file)")
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "format"}
        filters = {k: given.pop(k) for k in self._FILTERS if k in given}
        log = filter_interactions(read_interactions(path, self.format, **given), **filters)
        if vocab is not None and grow:
            from sasrec_tf.warmstart import extend_vocabulary

            vocab = extend_vocabulary(vocab, log)
        elif vocab is not None:
            known = log["item"].isin(vocab.ids)
            if not known.all():
                logger.warning("dropping %d interactions with items unknown to the model", int((~known).sum()))
                log = log[known]
        return build_sequences(log, vocab)


# The validation metrics RankingMetricsCallback writes into the logs (without the "val_" prefix).
MONITORS = ("hr@10", "ndcg@10", "mrr")


@dataclasses.dataclass
class TrainOptions:
    """How :func:`train_and_evaluate` runs ``fit`` (see :func:`sasrec_tf.training.fit`) and evaluates.

    ``eval_every`` validates (full ranking) every N epochs; ``patience`` stops after that many
    validations without improvement of ``val_<monitor>`` and restores the best weights;
    ``max_eval_users`` validates on a seeded sample; ``max_minutes`` stops training after that
    much wall time. With ``patience`` the best validated weights are the result however training
    ends (early, on the epoch limit or on the time limit); without it, the final weights.
    ``eval_negatives`` is the number of items each target is ranked against in the final sampled
    protocol (the paper's 100); each evaluated user needs that many items they never interacted with.
    ``repeated_targets`` is what full ranking (validation and the final metrics) makes of a target
    already in the user's history: ``"miss"`` (what the served model, which excludes history, can
    return), ``"drop"`` (those users left out, as RecTools) or ``"rank"`` (kept as a candidate);
    see :func:`sasrec_tf.evaluation.evaluate_full`.
    """

    eval_every: int = 5
    patience: int | None = None
    monitor: str = "ndcg@10"
    max_eval_users: int | None = None
    max_minutes: float | None = None
    eval_negatives: int = 100
    repeated_targets: str = "miss"

    def __post_init__(self) -> None:
        check_option_types(self)
        for name in ("eval_every", "patience", "max_eval_users", "eval_negatives"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"TrainOptions.{name} must be a positive integer, got {value!r}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise OptionError("max_minutes",
                              f"TrainOptions.max_minutes must be a finite number > 0, got {self.max_minutes!r}")
        if self.repeated_targets not in REPEATED_TARGETS:
            raise OptionError("repeated_targets", f"TrainOptions.repeated_targets must be one of {REPEATED_TARGETS}, "
                                                  f"got {self.repeated_targets!r}")
        if self.monitor not in MONITORS:
            raise OptionError("monitor", f"TrainOptions.monitor must be one of {MONITORS}, got {self.monitor!r}")


SECTIONS: dict[str, type] = {"model": SASRecConfig, "data": DataOptions, "train": TrainOptions}


@dataclasses.dataclass
class Pipeline:
    """The options of a run by section (``model``, ``data``, ``train``; see :data:`SECTIONS`), as
    typed values, and where each came from.

    A pipeline file, flags and ``--set`` all go through :meth:`set`, the one parser of option
    values (:func:`sasrec_tf.config.parse_option`); :meth:`build` then makes the section's
    dataclass, and a value it rejects is reported with its source (``--eval-every 0: ...``,
    ``pipe.json: train.eval_every: ...``).
    """

    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    sources: dict[str, str] = dataclasses.field(default_factory=dict)  # "section.name" -> where it was set

    def set(self, section: str, name: str, value: Any, source: str, *, text: bool = False) -> None:
        """Set one option; ``text`` for a value still to be parsed (a flag, ``--set``), else a
        JSON or Python value that must already have the option's type."""
        try:
            getattr(self, section)[name] = parse_option(SECTIONS[section], name, value, text=text)
        except OptionError as err:
            raise err.at(source) from None
        self.sources[f"{section}.{name}"] = source

    def apply_overrides(self, assignments: Iterable[str]) -> None:
        """``--set NAME=VALUE`` for SASRecConfig fields."""
        for assignment in assignments:
            if "=" not in assignment:
                raise OptionError("", f"--set expects NAME=VALUE, got {assignment!r}")
            name, value = assignment.split("=", 1)
            self.set("model", name.strip(), value, f"--set {assignment}", text=True)

    def build(self, section: str):
        """The section's dataclass (``SASRecConfig``, ``DataOptions`` or ``TrainOptions``)."""
        try:
            return SECTIONS[section](**getattr(self, section))
        except OptionError as err:
            source = self.sources.get(f"{section}.{err.option}")
            raise (err.at(source) if source else err) from None


def load_pipeline(path: str | Path | None) -> Pipeline:
    """Read a pipeline file (JSON with ``model``, ``data`` and ``train`` sections); ``None`` gives
    the defaults. Errors are ``ValueError``/``FileNotFoundError`` naming the file (and the key)."""
    if path is None:
        return Pipeline()
    if Path(path).is_dir():
        raise ValueError(f"config file {path} is a directory; expected a pipeline file (JSON)")
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; expected a pipeline file (JSON)") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with sections {list(PIPELINE_SECTIONS)}")
    unknown = sorted(set(raw) - set(PIPELINE_SECTIONS) - {"description"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected {list(PIPELINE_SECTIONS)}")
    pipeline = Pipeline(description=str(raw.get("description", "")))
    for section in PIPELINE_SECTIONS:
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise ValueError(f"{path}: section {section!r} must be a JSON object, got {values!r}")
        for name, value in values.items():
            pipeline.set(section, name, value, f"{path}: {section}.{name}")
        pipeline.build(section)  # a file must be valid on its own, whatever flags later override
    return pipeline


def apply_overrides(values: Mapping[str, Any], assignments: Iterable[str] = ()) -> dict[str, Any]:
    """``values`` (SASRecConfig fields) updated by ``NAME=VALUE`` assignments (``--set``), each
    value parsed by its field's type."""
    pipeline = Pipeline(model=dict(values))
    pipeline.apply_overrides(assignments)
    return pipeline.model


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


def check_evaluable(data, split, options: TrainOptions) -> None:
    """Raise ``ValueError`` before training if the evaluation after it cannot run: no user with
    the 3 interactions leave-one-out needs, or a user with fewer unseen items than the sampled
    protocol's ``eval_negatives`` (a small catalogue). The message names the fix."""
    lengths = data.lengths()
    if not len(split.test_users):
        longest = int(lengths.max()) if len(lengths) else 0
        raise ValueError(
            f"no user has the 3 interactions leave-one-out evaluation needs (one each to train on, validate "
            f"and test); the longest history here has {longest}: the log needs more interactions per user")
    users = np.asarray(split.test_users)
    stride = data.num_items + 1
    rows = np.repeat(np.arange(len(users)), lengths[users])
    items = np.concatenate([data.sequences[u] for u in users])
    seen = np.bincount(np.unique(rows * stride + items) // stride, minlength=len(users))
    unseen = data.num_items - seen  # what the sampled protocol draws the test's negatives from
    worst = int(np.argmin(unseen))
    if unseen[worst] < options.eval_negatives:
        fix = (f"pass --eval-negatives {unseen[worst]} (or fewer)" if unseen[worst] else
               "the sampled protocol cannot rank for a user who has seen every item; remove such users")
        raise ValueError(
            f"the sampled protocol ranks each test item against {options.eval_negatives} items the user never "
            f"interacted with, but user {data.user_ids[users[worst]]!r} interacted with {seen[worst]} of the "
            f"{data.num_items} items, which leaves {unseen[worst]}: {fix}")


def run_fingerprint(data, config: SASRecConfig, shards=None) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: the configuration (but ``epochs``,
    which a rerun may change) and the data (sizes, and a digest of ids and sequences; for shards,
    of their manifest)."""
    digest = hashlib.sha256()
    if shards is not None:
        digest.update(json.dumps(shards.manifest, sort_keys=True, default=str).encode())
        sizes = {"users": shards.num_users, "interactions": int(shards.num_interactions)}
    else:
        for ids in (data.user_ids, data.vocab.ids):
            digest.update("\x1f".join(map(str, ids)).encode() + b"\x1e")
        digest.update(data.lengths().tobytes())
        for sequence in data.sequences:
            digest.update(np.asarray(sequence, dtype=np.int64).tobytes())
        sizes = {"users": data.num_users, "interactions": int(data.lengths().sum())}
    model = config.to_dict()
    del model["epochs"]
    return {"config": model, "data": {**sizes, "items": data.num_items, "sha256": digest.hexdigest()}}


def _prepare_out_dir(out_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Make ``out_dir`` ready for a run; returns the progress of the interrupted run it resumes
    (``{}`` for a new run).

    The rules: a directory holding an interrupted run (``backup/run.json``) is resumed if the
    fingerprints match and refused otherwise; any other non-empty directory (a finished run, or
    anything else) is refused. ``overwrite`` starts over in any case; the old finished run, if
    any, stays until the new one replaces it (:func:`_publish`).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a directory (new, or one to resume or overwrite)")
    for leftover in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # a publish that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    run_file = out_dir / BACKUP_DIR / RUN_FILE
    start_over = "start over with --overwrite, or choose a new --out"
    if overwrite:
        for name in (BACKUP_DIR, LOGS_DIR):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    elif run_file.exists():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValueError(f"{run_file} is unreadable, so the interrupted run cannot be resumed: "
                             f"{start_over}") from None
        if saved.get("fingerprint") != fingerprint:
            raise ValueError(f"{out_dir} holds an interrupted run with other settings "
                             f"({_differences(saved.get('fingerprint') or {}, fingerprint)}): rerun it with its "
                             f"settings to resume it, or {start_over}")
        logger.info("resuming the interrupted run in %s", out_dir)
        return saved.get("progress", {})
    elif out_dir.exists() and any(out_dir.iterdir()):
        what = ("a finished run (metrics.json)" if (out_dir / METRICS_FILE).exists()
                else "files, but no interrupted run to resume")
        raise FileExistsError(f"--out {out_dir} already holds {what}: pass --overwrite to replace it, "
                              "or choose a new --out")
    _write_json(run_file, {"fingerprint": fingerprint, "progress": {}})
    return {}


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between two fingerprints, for the message that refuses a resume."""
    changes = []
    if saved.get("data") != current["data"]:
        def sizes(data):
            return ", ".join(f"{(data or {}).get(k)} {k}" for k in ("users", "items", "interactions"))
        changes.append(f"data: {sizes(saved.get('data'))} before, {sizes(current['data'])} now"
                       if sizes(saved.get("data")) != sizes(current["data"]) else "data: same sizes, other content")
    before, now = saved.get("config") or {}, current["config"]
    changes += [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]
    return "; ".join(changes) or "unknown"


def _progress_callback(keras, run_file: Path, fingerprint: dict[str, Any], progress: dict[str, Any]):
    class RunProgress(keras.callbacks.Callback):
        """Records in ``run_file`` the epochs done and the training time so far, after each
        epoch's backup, so that a resumed run's metrics.json counts the whole run."""

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()
            self.first_epoch: int | None = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            earlier = float(progress.get("seconds", 0.0)) if self.first_epoch else 0.0  # resumed, not restarted
            seconds = earlier + time.perf_counter() - self.started
            _write_json(run_file, {"fingerprint": fingerprint, "progress": {"epochs": epoch + 1, "seconds": seconds}})

    return RunProgress()


def _publish(out_dir: Path, staging: Path) -> None:
    """Replace ``out_dir`` by ``staging`` (a sibling directory) as one unit: a reader sees the old
    run or the new one, never a mix (between the two renames, briefly, no directory)."""
    if out_dir.exists():
        old = _sibling(out_dir, "old")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out_dir)


def _sibling(out_dir: Path, role: str) -> Path:
    """A new hidden directory name next to ``out_dir`` (removed by the next run if left behind)."""
    return out_dir.parent / f".{out_dir.name}.tmp-{role}-{secrets.token_hex(4)}"


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def train_and_evaluate(
    data,
    config: SASRecConfig,
    *,
    out_dir: str | Path | None = None,
    options: TrainOptions | None = None,
    overwrite: bool = False,
    baseline: bool = False,
    verbose: int | str = 0,
    strategy=None,
    shards=None,
    callbacks: Sequence[Any] = (),
    warm_start: str | Path | None = None,
) -> Result:
    """Split ``data`` leave-one-out, train ``config`` on it, evaluate valid and test (full ranking
    and the paper's sampled protocol), and with ``out_dir`` write the model directory and
    ``metrics.json`` there.

    Before training it checks that the evaluation can run (:func:`check_evaluable`) and that
    ``out_dir`` is new, empty, or holds an interrupted run of the same data and configuration
    (:func:`run_fingerprint`; ``epochs`` may change), which then resumes from ``out_dir/backup``;
    ``overwrite`` starts over whatever it holds. The model files and ``metrics.json`` are written
    into a staging directory that then replaces ``out_dir`` as one unit, so ``out_dir`` never
    mixes two runs; a finished run is only replaced once the new one is complete. A loss that
    becomes NaN stops training with ``TrainingDiverged`` and writes no model.

    Objectives that read item frequencies (popularity negatives, log-q correction) start from the
    training split's exact counts. With a ``tf.distribute`` ``strategy`` every worker of a cluster
    runs this and only the chief writes. With ``shards`` (:func:`read_shards`) training streams
    from TFRecord shards and ``data`` holds only the users that are evaluated. ``baseline`` adds
    the most-popular baseline's test metrics.

    ``warm_start`` names a parent model directory (yesterday's run): training starts from its
    weights (:mod:`sasrec_tf.warmstart`) and ``metrics.json`` records it under ``parent``. ``data``
    must have been read with the parent's vocabulary grown by the new items
    (``DataOptions.read(path, vocab=parent_vocab, grow=True)``), so known items keep their ids.
    """
    from sasrec_tf import artifacts, card, distribute, training
    from sasrec_tf._compat import keras
    from sasrec_tf.baselines import MostPopular
    from sasrec_tf.data.sequences import leave_one_out
    from sasrec_tf.evaluation import evaluate, repeated_targets_mask, training_item_counts

    options = options or TrainOptions()
    parent = None
    if warm_start is not None:
        if shards is not None:
            raise ValueError("warm start reads an interaction log, not shards (--data-format log)")
        parent = artifacts.load_trained(warm_start)
    split = leave_one_out(data)
    check_evaluable(data, split, options)
    num_users = shards.num_users if shards else data.num_users
    chief = distribute.is_chief(strategy)
    extra = []
    progress: dict[str, Any] = {}
    if out_dir is not None:
        out_dir = Path(out_dir).absolute()
        if chief:  # the other workers follow the chief's backup
            fingerprint = run_fingerprint(data, config, shards)
            if warm_start is not None:
                fingerprint["parent"] = str(Path(warm_start).absolute())
            progress = _prepare_out_dir(out_dir, fingerprint, overwrite)
            extra.append(_progress_callback(keras, out_dir / BACKUP_DIR / RUN_FILE, fingerprint, progress))
    model = training.build_model(config, data.num_items, num_users, strategy=strategy)
    item_counts = shards.train_item_counts() if shards else training_item_counts(split.train, data.num_items)
    if parent is not None:
        from sasrec_tf.warmstart import warm_start as copy_parent

        inherited = copy_parent(model, parent, data.vocab, item_counts=item_counts, parent_path=str(warm_start))
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
    extra.insert(0, best)
    limit = None
    if options.max_minutes is not None:
        limit = _time_limit_callback(keras, options.max_minutes * 60)
        extra.append(limit)
    started = time.perf_counter()
    history = training.fit(model, split, out_dir=out_dir, eval_every=options.eval_every, patience=options.patience,
                           monitor=options.monitor, max_eval_users=options.max_eval_users,
                           repeated_targets=options.repeated_targets,
                           callbacks=[*extra, *callbacks], verbose=verbose, strategy=strategy, **sharded_input)
    train_seconds = time.perf_counter() - started
    # The whole run's epochs: a resumed fit numbers its epochs from the interrupted run's.
    epochs_run = history.epoch[-1] + 1 if history.epoch else int(progress.get("epochs", 0))
    first_epoch = history.epoch[0] if history.epoch else epochs_run
    if first_epoch:
        train_seconds += float(progress.get("seconds", 0.0))
    staging = None
    if out_dir is not None and chief:
        staging = _sibling(out_dir, "new")
        staging.mkdir()
    try:
        if out_dir is not None:
            # Every worker saves (saving synchronises variables across workers); only the chief's copy stays.
            with distribute.writable_dir(staging or out_dir, strategy) as target:
                artifacts.save_trained(target, model, data.vocab, shards.user_ids() if shards else data.user_ids,
                                       item_counts=item_counts)

        metrics: dict[str, Any] = {stage: evaluate(model, split, stage=stage, seed=config.seed,
                                                   num_negatives=options.eval_negatives,
                                                   repeated_targets=options.repeated_targets)
                                   for stage in ("valid", "test")}
        metrics["evaluation"] = {
            "repeated_targets": options.repeated_targets,
            **{f"{stage}_targets_in_history": int(repeated_targets_mask(getattr(split, f"{stage}_inputs"),
                                                                         getattr(split, f"{stage}_targets")).sum())
               for stage in ("valid", "test")},
            "sampled_negatives": options.eval_negatives,
        }
        stopped = ("time" if limit is not None and limit.stopped
                   else "early" if epochs_run < config.epochs else "max_epochs")
        metrics["training"] = {"epochs": epochs_run, "resumed_at_epoch": first_epoch, "best_epoch": best.best_epoch,
                               "stopped": stopped, "wall_seconds": round(train_seconds, 2),
                               "seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 3)}
        if parent is not None:
            metrics["parent"] = inherited.to_dict()
        metrics["dataset"] = {"users": num_users, "items": data.num_items,
                              "interactions": shards.num_interactions if shards else int(data.lengths().sum()),
                              "evaluated_users": int(len(split.test_targets)),
                              "short_users": int(split.num_short_users)}
        if baseline:
            popular = MostPopular(split.train, data.num_items, config.max_len)
            metrics["baseline_most_popular"] = {"test": evaluate(popular, split, stage="test", seed=config.seed,
                                                                 num_negatives=options.eval_negatives,
                                                                 repeated_targets=options.repeated_targets)}
        if staging is not None:
            _write_json(staging / METRICS_FILE, metrics)
            card.write_card(staging, config, data=data, shards=shards, fingerprint=fingerprint["data"],
                            metrics=metrics)  # its parent: metrics["parent"] (warm start)
            if (out_dir / LOGS_DIR).exists():
                os.rename(out_dir / LOGS_DIR, staging / LOGS_DIR)
            _publish(out_dir, staging)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return Result(model=model, history=history, metrics=metrics)
