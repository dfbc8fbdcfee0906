"""Training in a plain Keras workflow: ``model.fit`` with ranking validation, checkpoints, resume."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf import distribute, optimizers, parameter_server
from sasrec_tf._compat import keras
from sasrec_tf.callbacks import RankingMetricsCallback
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.pipeline import steps_per_epoch as pipeline_steps
from sasrec_tf.data.pipeline import training_dataset
from sasrec_tf.data.sequences import LeaveOneOutSplit
from sasrec_tf.early_stopping import ValidatedEarlyStopping
from sasrec_tf.run_options import TrainOptions
from sasrec_tf.model import SASRec

logger = logging.getLogger(__name__)


def _verbosity(verbose: int | str, strategy) -> int:
    """``fit``'s ``verbose`` as Keras resolves it (``"auto"``: 1, or 2 under a coordinator)."""
    if verbose == "auto":
        return 2 if getattr(strategy, "_should_use_with_coordinator", False) else 1
    return int(verbose)


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite: training stopped before the epoch's backup."""


def _stop_on_divergence(out_dir: Path | None) -> keras.callbacks.Callback:
    """Turns the stop of Keras' ``TerminateOnNaN`` into :class:`TrainingDiverged`, raised at the
    end of the epoch before any other callback sees it: the backup of the last good epoch is not
    overwritten (nor deleted, as a finished ``fit`` deletes it) and no model is saved after it."""

    class StopOnDivergence(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(loss):
                kept = (f"; {out_dir / 'backup'} keeps the state after epoch {epoch}" if out_dir is not None and epoch
                        else "")
                raise TrainingDiverged(
                    f"the training loss became {float(loss)} in epoch {epoch + 1}: training stopped{kept} and no "
                    "model was written. Lower the learning rate (--learning-rate) and start over "
                    "(--overwrite or a new --out)")

    return StopOnDivergence()


class _ProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras' bar, told the number of steps per epoch when Keras cannot know it (a dataset of
    unknown cardinality: its first epoch would read ``1/Unknown``)."""

    def __init__(self, steps: int | None) -> None:
        super().__init__(count_mode="steps")
        self.steps = steps

    def set_params(self, params):
        if params.get("steps") is None and self.steps:
            params = {**params, "steps": self.steps}
        super().set_params(params)


def make_optimizer(config: SASRecConfig) -> keras.optimizers.Optimizer:
    """``config.optimizer`` (:data:`sasrec_tf.optimizers.OPTIMIZERS`; Adam by default) with
    ``config.learning_rate``, ``beta_1``, ``beta_2`` and ``epsilon`` (the reference
    implementation's ``beta_2 = 0.98`` by default).

    With ``config.weight_decay > 0`` it is AdamW (decoupled weight decay, Loshchilov & Hutter)
    applied to kernels and embeddings, not to biases or LayerNorm parameters.
    """
    return optimizers.make(config.optimizer, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                           beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon)


def build_model(config: SASRecConfig, num_items: int, num_users: int = 0, *, strategy=None,
                **features: int) -> SASRec:
    """A compiled SASRec, seeded from ``config.seed`` so a run can be repeated.

    With a ``tf.distribute`` ``strategy`` (:func:`sasrec_tf.distribute.make_strategy`) the weights
    and the optimizer are created in its scope, so ``fit`` trains under it. ``features``: the
    item-feature sizes ``num_attributes`` and ``max_item_attributes`` (see :class:`SASRec`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    partitioner = parameter_server.table_partitioner(strategy)
    num_users = num_users if config.use_user_embedding else 0
    if partitioner is not None:  # before any variable is placed on the cluster
        parameter_server.check_table_shapes(config, num_items, num_users, **features)
    keras.utils.set_random_seed(config.seed)
    # Under parameter servers the embedding tables (and so their optimizer slots) are sharded.
    tables = [(num_items + 1, config.hidden_units)] + ([(num_users + 1, config.hidden_units)] if num_users else [])
    with strategy.scope(), (partitioner.tables(tables) if partitioner else contextlib.nullcontext()):
        model = SASRec(config, num_items=num_items, num_users=num_users, **features)
        model.build_weights()
        model.compile(optimizer=make_optimizer(config))
    return model


class _KeptBackup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` that keeps its state when training ends, backed up once more
    with the final weights (after any best-weights restore, which runs before it)."""

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, delete_checkpoint=False)

    def on_train_end(self, logs=None):
        if hasattr(self, "_current_epoch"):  # some epoch ran in this fit
            self._backup(epoch=self._current_epoch)
        super().on_train_end(logs)


def _worker_pipelines(split: LeaveOneOutSplit, config: SASRecConfig, global_batch: int, strategy):
    """The in-memory pipeline for ``fit`` under parameter servers: a ``DatasetCreator`` each worker
    runs to build its own never-ending copy, seeded per worker
    (:func:`sasrec_tf.parameter_server.worker_seeds`)."""
    next_seed = parameter_server.worker_seeds(strategy, config.seed)

    def make(input_context):
        del input_context  # every worker gets the whole pipeline; steps go to whichever worker is free
        return training_dataset(
            split.train, split.num_items, config.max_len, global_batch, num_negatives=config.num_negatives,
            windows=config.training_windows, exclude_history=config.exclude_history_negatives,
            bucket_by_length=config.bucket_by_length, seed=next_seed(),
        ).repeat()

    return keras.utils.experimental.DatasetCreator(make)


def fit(
    model: SASRec,
    split: LeaveOneOutSplit,
    *,
    epochs: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    eval_every: int = TrainOptions.eval_every,  # the validation options' defaults are TrainOptions'
    patience: int | None = TrainOptions.patience,
    min_delta: float = TrainOptions.min_delta,
    smoothing: int = TrainOptions.smoothing,
    min_epochs: int = TrainOptions.min_epochs,
    monitor: str = TrainOptions.monitor,
    max_eval_users: int | None = TrainOptions.max_eval_users,
    repeated_targets: str = TrainOptions.repeated_targets,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    strategy=None,
    per_replica_batch_size: int | None = None,
    dataset: tf.data.Dataset | Callable | None = None,
    steps_per_epoch: int | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    keep_backup: bool = False,
) -> keras.callbacks.History:
    """Train ``model`` on ``split.train`` and validate on ``split.valid_*`` with full ranking.

    Every ``eval_every`` epochs (and on the first and the last) the validation HR@10, NDCG@10 and
    MRR go into the logs (``val_`` prefix), hence into TensorBoard and any monitor; the other
    epochs' logs hold no ``val_*`` key, so nothing is drawn where nothing was measured. In the
    returned ``History`` each ``val_*`` list has one value per epoch, ``NaN`` at the epochs that
    did not validate, and ``history.validated_epochs`` lists those that did
    (:class:`~sasrec_tf.evaluation.callback.RankingMetricsCallback` says why). With ``patience``
    (counted in evaluations), training stops when ``val_<monitor>`` stops improving, and the best
    validated weights are restored at the end of training however it ends (early, on the epoch
    limit, or stopped by another callback): :class:`~sasrec_tf.early_stopping.ValidatedEarlyStopping`,
    the one mechanism that restores them. At the defaults of ``min_delta``, ``smoothing`` and
    ``min_epochs`` it is Keras' ``EarlyStopping(restore_best_weights=True)`` rule shown only the
    epochs that validated; they make it robust to one noisy validation. The validation options'
    defaults are :class:`~sasrec_tf.experiment.TrainOptions`'.

    What is printed (``verbose``, Keras' meaning: ``"auto"`` / 1 a progress bar, 2 one line per
    epoch, 0 nothing): the epoch's bar or line, finished before the validation, then the
    validation's own line (on a terminal after a bar over the users). The bar knows the number of
    steps from the first epoch on (the in-memory pipeline declares its cardinality). Its ``loss``
    is Keras' running mean of the epoch's batch losses (reset every epoch); the value at the end
    of the epoch is the mean over all its batches, i.e. the last running value, and it is lower
    than the values shown earlier in the epoch because the loss falls while the model trains.

    With ``out_dir``, TensorBoard logs go to ``out_dir/logs`` and Keras'
    ``BackupAndRestore`` keeps the training state in ``out_dir/backup`` after every epoch: a run
    that is interrupted and started again with the same ``out_dir`` resumes after the last
    completed epoch. (Early-stopping patience restarts counting from the resumed epoch.)
    ``log_dir`` puts the TensorBoard logs elsewhere (a run's staging directory). With
    ``keep_backup`` the backup outlives training, holding the final weights (with patience the
    restored best ones: early stopping runs before the backup), so a process killed before it saved
    the model resumes without training again; the caller removes it.
    A loss that becomes NaN or infinite stops training (Keras' ``TerminateOnNaN``) and raises
    :class:`TrainingDiverged`; the backup then still holds the last good epoch.

    Distributed training: build the model with ``build_model(..., strategy=strategy)`` and pass
    the same ``strategy`` (or none: the model's own is used). ``config.batch_size`` is the
    **global** batch, split among ``strategy.num_replicas_in_sync`` replicas; or give
    ``per_replica_batch_size`` instead. Under ``MultiWorkerMirroredStrategy`` every worker runs
    this same call: the in-memory pipeline is sharded by data (each worker builds it and keeps its
    part of every global batch), only the chief writes TensorBoard logs and backups (Keras sends
    the other workers' copies to temporary folders; ``out_dir`` must be storage that all workers
    share, so they can resume from the chief's backup), and the validation callback runs on every
    worker with the same weights, so all take the same early-stopping decisions.

    Under ``ParameterServerStrategy`` (:mod:`sasrec_tf.parameter_server`) this runs on the chief
    only: each step goes to a free worker, which builds its own copy of the pipeline (seeded per
    worker) from a ``DatasetCreator``; an epoch has as many steps as without the strategy; the
    validation runs on the chief; and Keras' ``TerminateOnNaN`` (a per-batch callback, which the
    strategy does not allow) is left out: a NaN loss stops training at the end of its epoch.

    ``dataset`` replaces the in-memory pipeline built from ``split.train`` (``split`` then only
    provides validation): a ``tf.data.Dataset`` of the same batches, or a function of a
    ``tf.distribute.InputContext`` returning one worker's never-ending dataset of per-replica
    batches (e.g. :meth:`sasrec_tf.data.tfrecord.ShardedSequences.dataset_fn`, which reads only that
    worker's shard files); a function needs ``steps_per_epoch``.
    """
    config = model.config
    epochs = epochs or config.epochs
    out_dir = Path(out_dir) if out_dir is not None else None
    model_strategy = model.distribute_strategy
    if strategy is not None and strategy is not model_strategy:
        raise ValueError("the model was not built under this strategy: use build_model(..., strategy=strategy)")
    strategy = model_strategy
    global_batch = distribute.global_batch_size(
        strategy,
        global_batch=config.batch_size if per_replica_batch_size is None else None,
        per_replica=per_replica_batch_size,
    )
    if strategy.num_replicas_in_sync > 1:
        logger.info("global batch %d = %d replicas x %s per replica (%d worker(s))", global_batch,
                    strategy.num_replicas_in_sync, distribute.per_replica_batch_size(global_batch, strategy),
                    distribute.num_workers(strategy))
    known_steps = None
    coordinated = parameter_server.uses_coordinator(strategy)
    if coordinated and dataset is None:
        known_steps = steps_per_epoch = pipeline_steps(split.train, config.max_len, global_batch,
                                                       windows=config.training_windows)
        dataset = _worker_pipelines(split, config, global_batch, strategy)
    elif coordinated:
        if steps_per_epoch is None or not callable(dataset):
            raise ValueError("under parameter servers a dataset is a function of a tf.distribute.InputContext, "
                             "with steps_per_epoch")
        dataset = keras.utils.experimental.DatasetCreator(dataset)
    elif dataset is None:
        known_steps = pipeline_steps(split.train, config.max_len, global_batch, windows=config.training_windows)
        dataset = training_dataset(
            split.train,
            split.num_items,
            config.max_len,
            global_batch,
            num_negatives=config.num_negatives,
            windows=config.training_windows,
            exclude_history=config.exclude_history_negatives,
            bucket_by_length=config.bucket_by_length,
            seed=config.seed,
        )
        # Built from in-memory arrays, it has no files to split: every worker keeps its share of
        # each batch (saying so explicitly spares the failed attempt of the AUTO policy).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    elif callable(dataset) and not isinstance(dataset, tf.data.Dataset):
        if steps_per_epoch is None:
            raise ValueError("a dataset function needs steps_per_epoch (its dataset never ends)")
        dataset = strategy.distribute_datasets_from_function(dataset)
    # Under parameter servers Keras allows no per-batch callback: a NaN loss stops at the epoch's end.
    all_callbacks: list[keras.callbacks.Callback] = [
        *([] if coordinated else [keras.callbacks.TerminateOnNaN()]), _stop_on_divergence(out_dir)]
    if verbose:
        # Keras appends its bar after every callback given; first, it ends the epoch's line before
        # the validation prints (and bars) its own.
        all_callbacks.insert(0, _ProgbarLogger(steps_per_epoch or known_steps))
    fit_verbose = _verbosity(verbose, strategy)
    if len(split.valid_targets):
        all_callbacks.append(
            RankingMetricsCallback(
                split.valid_inputs,
                split.valid_targets,
                user_ids=np.asarray(split.valid_users) + 1 if model.uses_user_embedding else None,
                every_n_epochs=eval_every,
                ks=(10,),
                max_users=max_eval_users,
                repeated_targets=repeated_targets,
                seed=config.seed,
                verbose=fit_verbose,
            )
        )
        if patience is not None:  # before the backup, whose last save must hold the restored weights
            all_callbacks.append(ValidatedEarlyStopping(f"val_{monitor}", patience, min_delta=min_delta,
                                                        smoothing=smoothing, min_epochs=min_epochs,
                                                        verbose=1 if verbose else 0))
    else:
        logger.warning("no user has enough interactions for validation: training without it")
    if out_dir is not None:
        backup = _KeptBackup if keep_backup else keras.callbacks.BackupAndRestore
        all_callbacks.append(backup(str(out_dir / "backup")))
        all_callbacks.append(keras.callbacks.TensorBoard(str(log_dir or out_dir / "logs"), profile_batch=0))
    all_callbacks.extend(callbacks)
    try:
        return model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=all_callbacks,
                         verbose=verbose)
    finally:
        # tf_keras' BackupAndRestore deletes this attribute at the end of training, and the next
        # ``fit`` on the same model then fails reading it: restore the value it had before.
        if not hasattr(model, "_training_state"):
            model._training_state = None
