"""Training in a plain Keras workflow: ``model.fit`` with ranking validation, checkpoints, resume."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf import distribute, optimizers
from sasrec_tf._compat import keras
from sasrec_tf.callbacks import RankingMetricsCallback
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.pipeline import training_dataset
from sasrec_tf.data.sequences import LeaveOneOutSplit
from sasrec_tf.run_options import TrainOptions
from sasrec_tf.model import SASRec

logger = logging.getLogger(__name__)


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


def make_optimizer(config: SASRecConfig) -> keras.optimizers.Optimizer:
    """``config.optimizer`` (:data:`sasrec_tf.optimizers.OPTIMIZERS`; Adam by default) with
    ``config.learning_rate``, ``beta_1``, ``beta_2`` and ``epsilon`` (the reference
    implementation's ``beta_2 = 0.98`` by default).

    With ``config.weight_decay > 0`` it is AdamW (decoupled weight decay, Loshchilov & Hutter)
    applied to kernels and embeddings, not to biases or LayerNorm parameters.
    """
    return optimizers.make(config.optimizer, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                           beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon)


def build_model(config: SASRecConfig, num_items: int, num_users: int = 0, *, strategy=None) -> SASRec:
    """A compiled SASRec, seeded from ``config.seed`` so a run can be repeated.

    With a ``tf.distribute`` ``strategy`` (:func:`sasrec_tf.distribute.make_strategy`) the weights
    and the optimizer are created in its scope, so ``fit`` trains under it.
    """
    keras.utils.set_random_seed(config.seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = SASRec(config, num_items=num_items, num_users=num_users if config.use_user_embedding else 0)
        model.build_weights()
        model.compile(optimizer=make_optimizer(config))
    return model


def fit(
    model: SASRec,
    split: LeaveOneOutSplit,
    *,
    epochs: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    eval_every: int = TrainOptions.eval_every,  # the validation options' defaults are TrainOptions'
    patience: int | None = TrainOptions.patience,
    monitor: str = TrainOptions.monitor,
    max_eval_users: int | None = TrainOptions.max_eval_users,
    repeated_targets: str = TrainOptions.repeated_targets,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    strategy=None,
    per_replica_batch_size: int | None = None,
    dataset: tf.data.Dataset | Callable | None = None,
    steps_per_epoch: int | None = None,
) -> keras.callbacks.History:
    """Train ``model`` on ``split.train`` and validate on ``split.valid_*`` with full ranking.

    Every ``eval_every`` epochs the validation HR@10, NDCG@10 and MRR go into the logs (``val_``
    prefix), hence into the History, TensorBoard and any monitor. With ``patience`` (counted in
    evaluations), training stops when ``val_<monitor>`` stops improving, and the best validated
    weights are restored at the end of training however it ends (early, on the epoch limit, or
    stopped by another callback): Keras' ``EarlyStopping(restore_best_weights=True)``, the one
    mechanism that restores them. The validation options' defaults are
    :class:`~sasrec_tf.experiment.TrainOptions`'.

    With ``out_dir``, TensorBoard logs go to ``out_dir/logs`` and Keras'
    ``BackupAndRestore`` keeps the training state in ``out_dir/backup`` after every epoch: a run
    that is interrupted and started again with the same ``out_dir`` resumes after the last
    completed epoch. (Early-stopping patience restarts counting from the resumed epoch.)
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
    if dataset is None:
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
    all_callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN(), _stop_on_divergence(out_dir)]
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
                verbose=1 if verbose else 0,
            )
        )
        if patience is not None:
            all_callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=f"val_{monitor}", mode="max", patience=patience * eval_every,
                    restore_best_weights=True, verbose=1 if verbose else 0,
                )
            )
    else:
        logger.warning("no user has enough interactions for validation: training without it")
    if out_dir is not None:
        all_callbacks.append(keras.callbacks.BackupAndRestore(str(out_dir / "backup")))
        all_callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "logs"), profile_batch=0))
    all_callbacks.extend(callbacks)
    try:
        return model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=all_callbacks,
                         verbose=verbose)
    finally:
        # tf_keras' BackupAndRestore deletes this attribute at the end of training, and the next
        # ``fit`` on the same model then fails reading it: restore the value it had before.
        if not hasattr(model, "_training_state"):
            model._training_state = None
