"""``train_and_evaluate``: one training run as prepare → fit → evaluate → publish.

``sasrec-tf train``, ``sasrec-tf ablation``, the demo and ``benchmarks/quality.py`` all train
through :func:`train_and_evaluate`, so a number in a benchmark table is what the CLI gives.

* **prepare** (:func:`_prepare`): split leave-one-out (holding out ``cold_items`` of the
  catalogue for the cold-start protocol, :mod:`sasrec_tf.data.cold_start`), check the evaluation can run, ready the
  run directory (:mod:`~sasrec_tf.experiment.run_dir`: new, resumed, or overwritten), build the
  model, give it the training item counts, copy a warm-start parent in;
* **fit** (:func:`_fit`): :func:`sasrec_tf.training.fit` with the run's callbacks
  (:mod:`~sasrec_tf.experiment.run_callbacks`), and what the run's epochs and time were;
* **evaluate** (:func:`_evaluate`): valid and test, full ranking and the sampled protocol (and
  full ranking on cold and warm targets under the cold-start protocol), and the baselines, into
  the dictionary written as ``metrics.json``;
* **publish** (:func:`_publish`): ``metrics.json`` and ``card.json`` beside the saved model in the
  staging directory, which then replaces the run directory.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sasrec_tf import artifacts, card, distribute, evaluation, parameter_server, plots, training
from sasrec_tf.choices import PROTOCOLS, STAGES
from sasrec_tf.data.cold_start import hold_out_items
from sasrec_tf.evaluation.baselines import ContentBaseline, MostPopular
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.sequences import leave_one_out
from sasrec_tf.evaluation.callback import users_progress
from sasrec_tf.experiment import run_dir
from sasrec_tf.experiment.inputs import (align_features, check_evaluable, check_trainable, name_the_bad_shard,
                                         read_shards, sharded_input)
from sasrec_tf.experiment.run_callbacks import BestEpoch, RunProgress, TimeLimit
from sasrec_tf.files import atomic_write_json
from sasrec_tf.run_options import TrainOptions
from sasrec_tf.warmstart import warm_start as copy_parent

__all__ = ["Result", "check_evaluable", "read_shards", "train_and_evaluate"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Result:
    """What :func:`train_and_evaluate` produced: the trained model, the Keras History and the
    metrics (as written to ``metrics.json``)."""

    model: Any
    history: Any
    metrics: dict[str, Any]


@dataclasses.dataclass
class _Run:
    """What the stages of one run share (made by :func:`_prepare`)."""

    data: Any
    config: SASRecConfig
    shards: Any
    split: Any
    model: Any  # the SASRec, once built
    item_counts: np.ndarray | None  # training interactions per dense item id, once counted
    num_users: int
    out_dir: Path | None  # absolute
    chief: bool  # whether this worker writes the run directory
    fingerprint: dict[str, Any] | None = None  # the chief's, with out_dir
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)  # of the interrupted run resumed
    inherited: Any = None  # the warm start's WarmStart
    cold: Any = None  # the cold-start protocol's ColdStart (options.cold_items > 0)
    features: Any = None  # the item features aligned to the vocabulary (AlignedFeatures), if any
    features_summary: dict[str, Any] | None = None  # metrics.json's "item_features"
    staging: Path | None = None  # the chief's: the run's logs, then its finished files (run_dir.run_staging)


@dataclasses.dataclass
class _Fitted:
    """What :func:`_fit` gives the rest of the run."""

    history: Any
    training: dict[str, Any]  # metrics.json's "training"


def _prepare(data, config: SASRecConfig, options: TrainOptions, *, out_dir, overwrite: bool, strategy, shards,
             warm_start, item_features=None) -> _Run:
    """Everything before ``fit``; nothing is written before the checks pass."""
    parent = None
    if warm_start is not None:
        if shards is not None:
            raise ValueError("warm start reads an interaction log, not shards (--data-format log)")
        parent = artifacts.load_trained(warm_start)
    aligned = align_features(item_features, data, config, parent, shards=shards)
    check_trainable(data, config)
    split = leave_one_out(data)
    check_evaluable(data, split, options)
    cold = None
    if options.cold_items:
        if shards is not None:
            raise ValueError("the cold-start protocol (cold_items) holds items out of an interaction log, not of "
                             "shards (--data-format log)")
        split, cold = hold_out_items(split, options.cold_items, options.cold_seed)
        logger.info("cold start: %d of %d items held out of training (%d training interactions removed)",
                    len(cold.items), data.num_items, cold.removed_training_interactions)
    run = _Run(data=data, config=config, shards=shards, split=split, model=None, item_counts=None,
               num_users=shards.num_users if shards else data.num_users, out_dir=None,
               chief=distribute.is_chief(strategy), cold=cold)
    # Built before the run directory is touched: a model too large for memory writes nothing.
    sizes = ({} if aligned is None else
             {"num_attributes": aligned.num_attributes(), "max_item_attributes": aligned.max_attributes()})
    run.model = training.build_model(config, data.num_items, run.num_users, strategy=strategy, **sizes)
    if out_dir is not None:
        run.out_dir = Path(out_dir).absolute()
        refused = None
        if run.chief:  # the other workers follow the chief's backup
            run.fingerprint = run_dir.run_fingerprint(data, config, shards)
            if cold is not None:  # other training data: a resume must hold out the same items
                run.fingerprint["data"].update(cold_items=cold.fraction, cold_seed=cold.seed)
            if warm_start is not None:
                run.fingerprint["parent"] = str(Path(warm_start).absolute())
            if aligned is not None:
                run.fingerprint["item_features"] = str(Path(item_features.source).absolute())
            try:
                run.progress = run_dir.prepare_out_dir(run.out_dir, run.fingerprint, overwrite)
                run.staging = run_dir.run_staging(run.out_dir)
            except (ValueError, OSError) as err:
                refused = err
        # Every worker of a cluster learns the chief's answer before any collective op of training.
        if not distribute.agree(strategy, refused is None):
            if refused is not None:
                raise refused
            raise ValueError(f"the chief refused the output directory {run.out_dir} (its error says why): "
                             "this worker stops too")
    run.item_counts = (shards.train_item_counts() if shards
                       else evaluation.training_item_counts(split.train, data.num_items))
    if aligned is not None:
        run.features = aligned
        trained = np.asarray(run.item_counts) > 0
        run.model.set_item_features(aligned.padded(), trained, target_counts=run.item_counts)
        run.features_summary = {
            "source": item_features.source, "fusion": config.feature_fusion, "items_read": len(item_features),
            "attributes": aligned.num_attributes(), "items_with_features": data.num_items - aligned.items_without_features,
            "items_without_features": aligned.items_without_features,
            "features_without_interactions": item_features.missing_from(data.vocab),
            "items_not_trained_on": int(np.count_nonzero(~trained[1:]))}
    if parent is not None:
        run.inherited = copy_parent(run.model, parent, data.vocab, item_counts=run.item_counts,
                                    parent_path=str(warm_start),
                                    attribute_names=aligned.attribute_names if aligned is not None else None)
    if run.model.target_counts is not None:
        run.model.set_item_counts(run.item_counts)
    return run


def describe_features(summary: dict[str, Any]) -> str:
    """One line on a run's item features (``metrics.json``'s ``item_features``): what was read and
    what of it the vocabulary has, counted once, where the model gets them."""
    return (f"item features: {summary['source']}: {summary['items_read']} items, {summary['attributes']} "
            f"attributes, fusion "
            f"{summary['fusion']}; {summary['items_without_features']} items of the log have none, "
            f"{summary['features_without_interactions']} with features have no interactions (not in the "
            f"vocabulary; sasrec-tf add-items adds them), {summary['items_not_trained_on']} never trained on")


def _fit(run: _Run, options: TrainOptions, *, callbacks: Sequence[Any], verbose, strategy) -> _Fitted:
    """Train; with ``patience`` the run selects its model on validation: ``fit``'s early stopping
    restores the best validated weights however training ends. Without it, the final weights are
    the model."""
    best = BestEpoch(f"val_{options.monitor}")
    extra: list[Any] = [best]
    if run.out_dir is not None and run.chief:
        extra.append(RunProgress(run.out_dir, run.fingerprint, run.progress))
    limit = None
    if options.max_minutes is not None:
        limit = TimeLimit(options.max_minutes * 60)
        extra.append(limit)
    # The logs go to the staging (an old run in out_dir keeps its own); the backup outlives fit
    # until the saved model is recorded (run_dir.record_trained), so a kill in between costs nothing.
    staged = {"log_dir": run.staging / run_dir.LOGS_DIR, "keep_backup": _single_process(strategy)} \
        if run.staging is not None else {}
    started = time.perf_counter()
    try:
        history = training.fit(run.model, run.split, out_dir=run.out_dir, eval_every=options.eval_every,
                               patience=options.patience, min_delta=options.min_delta,
                               smoothing=options.smoothing, min_epochs=options.min_epochs,
                               monitor=options.monitor, max_eval_users=options.max_eval_users,
                               repeated_targets=options.repeated_targets, callbacks=[*extra, *callbacks],
                               verbose=verbose, strategy=strategy, **staged,
                               **sharded_input(run.shards, run.config, run.model.distribute_strategy))
    except Exception as err:
        name_the_bad_shard(run.shards, err)
        raise
    train_seconds = time.perf_counter() - started
    sharding = {}
    if parameter_server.uses_coordinator(run.model.distribute_strategy):
        # Where the tables lived; then the rest of the run (evaluation, save, export) is that of an
        # ordinary model, gathered shard by shard on the chief.
        sharding = {"parameter_servers": parameter_server.table_shards(run.model)}
        run.model = parameter_server.unsharded_copy(run.model)
    # The whole run's epochs: a resumed fit numbers its epochs from the interrupted run's.
    epochs_run = history.epoch[-1] + 1 if history.epoch else int(run.progress.get("epochs", 0))
    first_epoch = history.epoch[0] if history.epoch else epochs_run
    if first_epoch:
        train_seconds += float(run.progress.get("seconds", 0.0))
    stopped = ("time" if limit is not None and limit.stopped
               else "early" if epochs_run < run.config.epochs else "max_epochs")
    return _Fitted(history=history, training={
        "epochs": epochs_run, "resumed_at_epoch": first_epoch, "best_epoch": best.best_epoch, "stopped": stopped,
        "wall_seconds": round(train_seconds, 2), "seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 3),
        **sharding})


def _save(run: _Run, staging: Path | None, strategy) -> None:
    """Save the model directory (into ``staging`` on the chief)."""
    # Every worker saves (saving synchronises variables across workers); only the chief's copy stays.
    data, shards = run.data, run.shards
    with distribute.writable_dir(staging or run.out_dir, strategy) as target:
        artifacts.save_trained(target, run.model, data.vocab, shards.user_ids() if shards else data.user_ids,
                               item_counts=run.item_counts,
                               attribute_names=run.features.attribute_names if run.features is not None else None)


def _evaluate_stage(model, split, stage: str, seed: int, protocol: dict[str, Any], verbose, *,
                    name: str | None = None) -> dict[str, Any]:
    """:func:`sasrec_tf.evaluation.evaluate` of one stage, both protocols, showing its progress as
    ``fit`` does: with ``verbose == 1`` on a terminal a label and a Keras ``Progbar`` over the users
    per protocol, with any other ``verbose`` but 0 one line when the stage is done."""
    name = name or stage
    bars: dict[str, Any] = {}

    def bar(which: str):
        if which not in bars:  # the protocols run one after the other: start the next one's clock now
            print(f"evaluating {name}: {which} ranking", flush=True)
            bars[which] = users_progress(verbose)
        return bars[which]

    def progress(which: str, done: int, total: int) -> None:
        bar(which)(done, total)
        if done == total and which == PROTOCOLS[0]:
            bar(PROTOCOLS[1])

    started = time.perf_counter()
    if users_progress(verbose) is not None:
        bar(PROTOCOLS[0])
    result = evaluation.evaluate(model, split, stage=stage, seed=seed,
                                 progress=progress if users_progress(verbose) is not None else None, **protocol)
    if verbose:
        users = len(getattr(split, f"{stage}_targets"))
        print(f"evaluated {name} ({users} users, full and sampled ranking) in {time.perf_counter() - started:.1f}s",
              flush=True)
    return result


def _evaluate(run: _Run, fitted: _Fitted, options: TrainOptions, *, baseline: bool,
              verbose=0, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """The run's ``metrics.json``: the ``stages`` (valid and test; full ranking and the sampled
    protocol; cold and warm targets under the cold-start protocol), how they were evaluated, how
    training went, the warm-start parent, the data, and the baselines (on test: only when
    ``stages`` has it)."""
    split, data, shards, seed = run.split, run.data, run.shards, run.config.seed
    protocol = {"num_negatives": options.eval_negatives, "repeated_targets": options.repeated_targets}
    if run.cold is not None:
        protocol["cold_items"] = run.cold.items
    metrics: dict[str, Any] = {stage: _evaluate_stage(run.model, split, stage, seed, protocol, verbose)
                               for stage in stages}
    metrics["evaluation"] = {
        "repeated_targets": options.repeated_targets,
        **{f"{stage}_targets_in_history": int(evaluation.repeated_targets_mask(
            getattr(split, f"{stage}_inputs"), getattr(split, f"{stage}_targets")).sum()) for stage in stages},
        "sampled_negatives": options.eval_negatives,
    }
    metrics["training"] = fitted.training
    if run.inherited is not None:
        metrics["parent"] = run.inherited.to_dict()
    if run.features_summary is not None:
        metrics["item_features"] = run.features_summary
    metrics["dataset"] = {"users": run.num_users, "items": data.num_items,
                          "interactions": shards.num_interactions if shards else int(data.lengths().sum()),
                          "evaluated_users": int(len(split.test_targets)),
                          "short_users": int(split.num_short_users)}
    if run.cold is not None:
        metrics["cold_start"] = run.cold.to_dict()
        if run.model.uses_item_features and "valid" in stages:  # the exposure knob, chosen on validation
            metrics["cold_score_offsets"] = evaluation.cold_offset_table(
                run.model, split, run.cold.items, repeated_targets=options.repeated_targets)
    if (baseline or run.cold is not None) and "test" in stages:  # cold start: read against them
        popular = MostPopular(split.train, data.num_items, run.config.max_len)
        metrics["baseline_most_popular"] = {"test": _evaluate_stage(popular, split, "test", seed, protocol, verbose,
                                                                    name="most popular, test")}
        if run.features is not None:
            longest = max(1, max(map(len, split.test_inputs), default=1))  # the content of the whole history
            content = ContentBaseline(run.features, data.num_items, max_len=longest)
            metrics["baseline_content"] = {"test": _evaluate_stage(content, split, "test", seed, protocol, verbose,
                                                                   name="content, test")}
    return metrics


def _publish(run: _Run, staging: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics.json`` and ``card.json`` beside the saved model, replace the run directory
    by ``staging`` (:func:`~sasrec_tf.experiment.run_dir.publish`), then draw the run's curves
    (``curves.png``, :func:`sasrec_tf.plots.plot_run`) from the published logs. The picture comes
    last and may fail without costing the run (it is logged)."""
    atomic_write_json(staging / run_dir.METRICS_FILE, metrics)
    card.write_card(staging, run.config, data=run.data, shards=run.shards, fingerprint=run.fingerprint["data"],
                    metrics=metrics)  # its parent: metrics["parent"] (warm start)
    run_dir.publish(run.out_dir, staging)
    try:
        plots.plot_run(run.out_dir)
    except (OSError, ValueError) as err:  # no event file (e.g. TensorBoard off), an unreadable one
        logger.warning("no curves.png for %s: %s", run.out_dir, err)


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
    item_features: Any = None,
    stages: Sequence[str] = STAGES,
) -> Result:
    """Split ``data`` leave-one-out, train ``config`` on it, evaluate valid and test (full ranking
    and the paper's sampled protocol), and with ``out_dir`` write the model directory and
    ``metrics.json`` there.

    Before training it checks that the evaluation can run (:func:`check_evaluable`) and that
    ``out_dir`` is new, empty, or holds an interrupted run of the same data and configuration
    (:func:`~sasrec_tf.experiment.run_fingerprint`; ``epochs`` may change), which then resumes
    from ``out_dir/backup``; ``overwrite`` starts over whatever it holds. The model files and
    ``metrics.json`` are written into a staging directory that then replaces ``out_dir`` as one
    unit, so ``out_dir`` never mixes two runs; a finished run is only replaced once the new one is
    complete. A loss that becomes NaN stops training with ``TrainingDiverged`` and writes no model.

    Objectives that read item frequencies (popularity negatives, log-q correction) start from the
    training split's exact counts. With a ``tf.distribute`` ``strategy`` every worker of a cluster
    runs this and only the chief writes. With ``shards`` (:func:`read_shards`) training streams
    from TFRecord shards and ``data`` holds only the users that are evaluated. ``baseline`` adds
    the most-popular baseline's test metrics, and with ``item_features`` the content baseline's
    (:class:`~sasrec_tf.evaluation.ContentBaseline`).

    ``options.cold_items`` (a fraction of the catalogue, seeded by ``options.cold_seed``) runs the
    cold-start protocol (:func:`sasrec_tf.data.cold_start.hold_out_items`): those items are held
    out of training and of the evaluation histories, stay targets, and every stage reports full
    ranking on cold and warm targets (``metrics[stage]["cold"]`` / ``["warm"]``) beside the usual
    numbers; the baselines are then always reported, and ``metrics["cold_start"]`` records the
    hold-out. ``stages`` are those the final evaluation measures:
    ``("valid",)`` computes no test metric at all (``sasrec-tf tune``'s trials), and needs no
    ``out_dir`` (a published run has both).

    ``warm_start`` names a parent model directory (yesterday's run): training starts from its
    weights (:mod:`sasrec_tf.warmstart`) and ``metrics.json`` records it under ``parent``. ``data``
    must have been read with the parent's vocabulary grown by the new items
    (``DataOptions.read(path, vocab=parent_vocab, grow=True)``), so known items keep their ids.

    ``item_features`` (:func:`sasrec_tf.data.item_features.read_item_features`) go into the model
    with ``config.feature_fusion`` (not ``"none"``); items without training interactions are
    represented by their features alone; ``metrics.json`` counts them under ``item_features``.

    Returns:
      A :class:`Result`.

    Raises:
      ValueError: the evaluation cannot run, ``out_dir`` holds another run, or a warm start from shards.
      FileExistsError: ``out_dir`` holds a finished run (without ``overwrite``).
      sasrec_tf.training.TrainingDiverged: the loss became NaN or infinite.
    """
    options = options or TrainOptions()
    if not set(stages) <= set(STAGES) or not stages:
        raise ValueError(f"stages must be some of {STAGES}, got {tuple(stages)}")
    if out_dir is not None and tuple(stages) != STAGES:
        raise ValueError("a run written to out_dir evaluates every stage: drop stages or out_dir")
    run = _prepare(data, config, options, out_dir=out_dir, overwrite=overwrite, strategy=strategy, shards=shards,
                   warm_start=warm_start, item_features=item_features)
    if verbose and run.features_summary is not None:
        print(describe_features(run.features_summary), flush=True)
    staging = _finished_training(run, strategy)
    resumed_trained = staging is not None
    if resumed_trained:  # killed after training, in the final evaluation or publish: finish that
        run.model = artifacts.load_trained(staging).model
        fitted = _Fitted(history=None, training=run.progress["trained"]["training"])
        logger.warning("training had finished before the interruption: evaluating and publishing its saved model")
    else:
        fitted = _fit(run, options, callbacks=callbacks, verbose=verbose, strategy=strategy)
        staging = run.staging or (run_dir.new_staging(run.out_dir) if run.out_dir is not None and run.chief
                                  else None)
    try:
        if run.out_dir is not None and not resumed_trained:
            _save(run, staging, strategy)
            if staging is not None and _single_process(strategy):
                run_dir.record_trained(run.out_dir, run.fingerprint, staging, fitted.training)
        metrics = _evaluate(run, fitted, options, baseline=baseline, verbose=verbose, stages=stages)
        if staging is not None:
            _publish(run, staging, metrics)
    except Exception:  # a failure, not a kill: nothing of this run is kept for a rerun
        run_dir.discard(staging)
        raise
    return Result(model=run.model, history=fitted.history, metrics=metrics)


def _single_process(strategy) -> bool:
    """Whether this run is one process (no multi-worker cluster): only then may a rerun skip
    ``fit`` and publish the saved model (workers of a cluster all train again together)."""
    return (strategy is None or parameter_server.uses_coordinator(strategy)  # the chief alone runs the program
            or getattr(strategy.extended, "_num_workers", 1) in (None, 1))


def _finished_training(run: _Run, strategy) -> Path | None:
    """The staged model of a resumed run whose training had finished (see
    :func:`~sasrec_tf.experiment.run_dir.record_trained`), or None."""
    if run.out_dir is None or not run.chief or not _single_process(strategy):
        return None
    return run_dir.trained_staging(run.out_dir, run.progress)
