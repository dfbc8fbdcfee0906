"""Training in a plain Keras workflow: ``model.fit`` with ranking validation, checkpoints, resume."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.callbacks import RankingMetricsCallback
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.pipeline import training_dataset
from sasrec_tf.data.sequences import LeaveOneOutSplit
from sasrec_tf.model import SASRec

logger = logging.getLogger(__name__)


def make_optimizer(config: SASRecConfig) -> keras.optimizers.Optimizer:
    """Adam with the reference implementation's ``beta_2 = 0.98``."""
    return keras.optimizers.Adam(learning_rate=config.learning_rate, beta_2=0.98)


def build_model(config: SASRecConfig, num_items: int, num_users: int = 0) -> SASRec:
    """A compiled SASRec, seeded from ``config.seed`` so a run can be repeated."""
    keras.utils.set_random_seed(config.seed)
    model = SASRec(config, num_items=num_items, num_users=num_users if config.use_user_embedding else 0)
    model.build_for()
    model.compile(optimizer=make_optimizer(config))
    return model


def fit(
    model: SASRec,
    split: LeaveOneOutSplit,
    *,
    epochs: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    eval_every: int = 1,
    patience: int | None = None,
    monitor: str = "ndcg@10",
    max_eval_users: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> keras.callbacks.History:
    """Train ``model`` on ``split.train`` and validate on ``split.valid_*`` with full ranking.

    Every ``eval_every`` epochs the validation HR@10, NDCG@10 and MRR go into the logs (``val_``
    prefix), hence into the History, TensorBoard and any monitor. With ``patience`` (counted in
    evaluations), training stops when ``val_<monitor>`` stops improving and the best weights are
    restored. With ``out_dir``, TensorBoard logs go to ``out_dir/logs`` and Keras'
    ``BackupAndRestore`` keeps the training state in ``out_dir/backup`` after every epoch: a run
    that is interrupted and started again with the same ``out_dir`` resumes after the last
    completed epoch. (Early-stopping patience restarts counting from the resumed epoch.)
    """
    config = model.config
    epochs = epochs or config.epochs
    dataset = training_dataset(
        split.train,
        split.num_items,
        config.max_len,
        config.batch_size,
        num_negatives=config.num_negatives,
        windows=config.training_windows,
        exclude_history=config.exclude_history_negatives,
        bucket_by_length=config.bucket_by_length,
        seed=config.seed,
    )
    all_callbacks: list[keras.callbacks.Callback] = []
    if len(split.valid_targets):
        all_callbacks.append(
            RankingMetricsCallback(
                split.valid_inputs,
                split.valid_targets,
                user_ids=np.asarray(split.valid_users) + 1 if model.uses_user_embedding else None,
                every_n_epochs=eval_every,
                ks=(10,),
                max_users=max_eval_users,
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
        out_dir = Path(out_dir)
        all_callbacks.append(keras.callbacks.BackupAndRestore(str(out_dir / "backup")))
        all_callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "logs"), profile_batch=0))
    all_callbacks.extend(callbacks)
    return model.fit(dataset, epochs=epochs, callbacks=all_callbacks, verbose=verbose)
