"""``tune``: an Optuna study over a search space, every trial trained by the one training path.

Each trial is :func:`sasrec_tf.experiment.train_and_evaluate` of the base pipeline with the
trial's values, evaluated on the **validation** split only (``stages=("valid",)``: no test metric
is computed during the search); its objective is the final full-ranking validation value of the
run's ``monitor`` (``train.monitor``, ``--monitor``). Every validation inside ``fit`` is reported to
Optuna's pruner (:class:`PruneOnValidation`), and a trial the pruner stops ends its training there.

The study lives in Optuna's RDB storage: by default a SQLite file in ``out_dir`` (``study.db``),
so a killed search resumes when the same command runs again; a database URL (``storage``) lets
several machines work on one study, each trial's heartbeat telling the others when one died.
An interrupted trial (killed, or stopped by Ctrl-C) is run again once with the same values.
``trials`` counts the finished trials (complete or pruned) of the whole study.

At the end the best trial's configuration is written as a pipeline file (``best.json``), trained
once more in full (``best_trial_<N>/``, a normal run directory, resumable) and its test metrics
reported: the only test metrics of the whole search.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna

from sasrec_tf._compat import keras
from sasrec_tf.config import OptionError
from sasrec_tf.experiment import PipelineFile, train_and_evaluate
from sasrec_tf.files import atomic_write_json
from sasrec_tf.training import TrainingDiverged
from sasrec_tf.tune import report as reports
from sasrec_tf.tune.space import TUNABLE_SECTIONS, SearchSpace

__all__ = ["PruneOnValidation", "TuneResult", "best_run_dir", "open_study", "tune"]

logger = logging.getLogger(__name__)

STUDY_FILE = "study.db"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PRUNERS = ("median", "none")
_HEARTBEAT_SECONDS, _GRACE_SECONDS = 60, 180


@dataclasses.dataclass
class TuneResult:
    """What :func:`tune` found: the study, its best trial, the best pipeline (``best.json``) and
    the best configuration's run metrics (valid and test; ``None`` without the final run)."""

    study: Any
    best_trial: Any
    pipeline: PipelineFile
    metrics: dict[str, Any] | None
    best_dir: Path | None


class PruneOnValidation(keras.callbacks.Callback):
    """Reports every validation of ``val_<metric>`` to an Optuna ``trial`` (step: the 1-based
    epoch) and raises ``optuna.TrialPruned`` there when the pruner says so, which ends ``fit``
    and the trial."""

    def __init__(self, trial, metric: str) -> None:
        super().__init__()
        self.trial, self.key = trial, f"val_{metric}"

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.key)
        if value is None:
            return
        self.trial.report(float(value), step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({self.key} {float(value):.4f})")


def best_run_dir(out_dir: Path, trial_number: int) -> Path:
    """Where the best trial's configuration is trained in full."""
    return Path(out_dir) / f"best_trial_{trial_number}"


def _retry_interrupted(study, trial) -> None:
    """Run an interrupted trial again with the same values, once (not a trial whose
    configuration was refused: that would fail the same way)."""
    if "error" in trial.user_attrs or "retry_of" in trial.user_attrs:  # refused or diverged; a retry failed
        return
    if any(t.user_attrs.get("retry_of") == trial.number for t in study.get_trials(deepcopy=False)):
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def open_study(out_dir: Path, *, storage: str | None, study_name: str, pruner: str, prune_after: int, seed: int,
               prune_warmup: int = 0):
    """The study (created or loaded), with the interrupted trials of an earlier run queued again.

    With the default storage (``out_dir/study.db``, one process per ``out_dir``) a trial still
    marked running was killed: it is failed and queued again now. With a ``storage`` URL each
    trial keeps a heartbeat, and one whose process died is failed and queued by the next trial
    any machine starts.
    """
    own = storage is None
    url = f"sqlite:///{(Path(out_dir) / STUDY_FILE).absolute()}" if own else storage
    rdb = _open_storage(url, **({} if own else {
        "heartbeat_interval": _HEARTBEAT_SECONDS, "grace_period": _GRACE_SECONDS,
        "failed_trial_callback": _retry_interrupted}))
    chosen = (optuna.pruners.MedianPruner(n_startup_trials=prune_after, n_warmup_steps=prune_warmup)
              if pruner == "median"
              else optuna.pruners.NopPruner())
    study = optuna.create_study(storage=rdb, study_name=study_name, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=chosen)
    for trial in study.get_trials(deepcopy=False):
        if own and trial.state == optuna.trial.TrialState.RUNNING:
            rdb.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        _retry_interrupted(study, trial)
    return study


def _open_storage(url: str, attempts: int = 8, **kwargs) -> Any:
    """Optuna's RDB storage at ``url``. Machines that start on a new database at the same moment
    race to create its schema, and the losers fail (seen with two processes on one SQLite file:
    8 of 24 starts, ``UNIQUE constraint failed: alembic_version`` or ``table studies already
    exists``); each retries after a short random pause and then finds the schema made."""
    import random

    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


def _trial_pipeline(pipeline: PipelineFile, values: dict[str, dict[str, Any]], source: str) -> PipelineFile:
    """``pipeline`` with a trial's values set (the typed parser, each naming ``source``)."""
    trial = dataclasses.replace(pipeline, **{s: dict(getattr(pipeline, s)) for s in TUNABLE_SECTIONS},
                                sources=dict(pipeline.sources))
    for section, fields in values.items():
        for name, value in fields.items():
            trial.set(section, name, value, f"{source}: {section}.{name}")
    return trial


def _objective(data, pipeline: PipelineFile, space: SearchSpace, callbacks: Sequence[Any]) -> Callable:
    def objective(trial) -> float:
        try:
            trial_pipe = _trial_pipeline(pipeline, space.suggest(trial), f"trial {trial.number}")
            config, options = trial_pipe.build("model"), trial_pipe.build("train")
        except OptionError as err:  # a combination the configuration refuses (e.g. heads not dividing d)
            trial.set_user_attr("error", str(err))
            raise
        started = time.perf_counter()
        try:
            result = train_and_evaluate(data, config, options=options, stages=("valid",),
                                        callbacks=[PruneOnValidation(trial, options.monitor), *callbacks], verbose=0)
        except TrainingDiverged as err:  # e.g. too high a learning rate: a result of the search, not its end
            trial.set_user_attr("error", str(err).split(":")[0])
            raise
        training = result.metrics["training"]
        trial.set_user_attr("epochs", training["epochs"])
        trial.set_user_attr("best_epoch", training["best_epoch"])
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        return float(result.metrics["valid"]["full"][options.monitor])

    return objective


def tune(data, pipeline: PipelineFile, space: SearchSpace, *, out_dir: str | Path, trials: int,
         storage: str | None = None, study_name: str = "sasrec", pruner: str = "median", prune_after: int = 5,
         prune_warmup: int | None = None, seed: int = 0, final_run: bool = True, command: str | None = None, callbacks: Sequence[Any] = (),
         report: Callable[[str], None] = print) -> TuneResult:
    """Search ``space`` on top of ``pipeline`` for ``data`` until the study holds ``trials``
    finished trials; write ``trials.csv``, ``best.json`` and ``tune.png`` in ``out_dir``; train
    the best configuration in full unless ``final_run`` is false.

    Args:
      data: the log's :class:`~sasrec_tf.data.sequences.SequenceData`.
      pipeline: the base run (its ``model``, ``data`` and ``train`` sections); ``train.monitor``
        is the objective (validation, full ranking).
      space: the searched fields (:func:`~sasrec_tf.tune.space.load_space`), checked against
        ``pipeline`` first.
      out_dir: the study's directory (created).
      trials: finished trials (complete or pruned) the study should hold.
      storage: an Optuna RDB URL for a study shared by several machines (default: ``study.db``).
      pruner: ``"median"`` (Optuna's ``MedianPruner`` after ``prune_after`` trials) or ``"none"``.
      prune_warmup: epochs during which no trial is pruned (default: two validation intervals,
        ``2 * train.eval_every``: the first validations say little about the last).
      seed: the sampler's seed (TPE).
      command: the command line, recorded in ``best.json``'s description.
      callbacks: extra Keras callbacks for every trial's ``fit`` (tests).
      report: where the one line per trial goes.

    Raises:
      ValueError: a space the configuration refuses, ``trials`` < 1, or no trial completed.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {PRUNERS}, got {pruner!r}")
    if any(p.section == "train" and p.name == "monitor" for p in space.params):
        raise ValueError(f"{space.source}: train.monitor is the objective and cannot be searched (--monitor)")
    space.check(pipeline)
    pipeline.build("model"), pipeline.build("train")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if prune_warmup is None:
        prune_warmup = 2 * pipeline.build("train").eval_every
    study = open_study(out_dir, storage=storage, study_name=study_name, pruner=pruner, prune_after=prune_after,
                       seed=seed, prune_warmup=prune_warmup)
    metric = pipeline.build("train").monitor
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if done:
        report(f"resuming study {study_name!r}: {done} of {trials} trials finished")

    def progress(study, trial) -> None:
        report(reports.trial_line(study, trial, trials, metric))
        reports.write_trials(study, out_dir)

    if done < trials:
        study.optimize(_objective(data, pipeline, space, callbacks), n_trials=trials - done,
                       catch=(OptionError, TrainingDiverged),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), progress],
                       gc_after_trial=True)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise ValueError(f"no trial of study {study_name!r} completed (all pruned or refused): see "
                         f"{out_dir / reports.TRIALS_FILE}")
    best = study.best_trial
    best_pipeline = _trial_pipeline(pipeline, space.sections_of(best.params), f"trial {best.number}")
    reports.write_trials(study, out_dir)
    atomic_write_json(out_dir / reports.BEST_FILE, reports.best_pipeline_json(best_pipeline, best, metric, command))
    reports.plot_study(study, out_dir / reports.PLOT_FILE, metric)
    report(f"best: trial {best.number}, validation {metric} {best.value:.4f}: "
           + " ".join(f"{k}={v}" for k, v in best.params.items()) + f"; wrote {out_dir / reports.BEST_FILE}")
    metrics = best_dir = None
    if final_run:
        best_dir = best_run_dir(out_dir, best.number)
        metrics = _final_run(data, best_pipeline, best_dir)
        report(f"best configuration trained in full ({best_dir}): test full ranking "
               f"hr@10 {metrics['test']['full']['hr@10']:.4f} ndcg@10 {metrics['test']['full']['ndcg@10']:.4f}, "
               f"validation {metric} {metrics['valid']['full'][metric]:.4f}")
    return TuneResult(study=study, best_trial=best, pipeline=best_pipeline, metrics=metrics, best_dir=best_dir)


def _final_run(data, pipeline: PipelineFile, best_dir: Path) -> dict[str, Any]:
    """Train the best configuration into ``best_dir`` (resuming an interrupted run there); a
    finished one is read, not trained again."""
    import json

    from sasrec_tf.experiment import METRICS_FILE

    try:
        return train_and_evaluate(data, pipeline.build("model"), out_dir=best_dir, options=pipeline.build("train"),
                                  verbose=0).metrics
    except FileExistsError:
        return json.loads((best_dir / METRICS_FILE).read_text(encoding="utf-8"))
