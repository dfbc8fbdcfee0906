"""The Keras callbacks a training run adds to :func:`sasrec_tf.training.fit`: the wall-time limit,
early stopping, the record of the best validated epoch, and the run's progress for a resume.

With ``patience``, :func:`sasrec_tf.training.fit`'s
:class:`~sasrec_tf.early_stopping.ValidatedEarlyStopping` keeps the best validated weights and
restores them at the end of training however it ends (early, on the epoch limit, or on
:class:`TimeLimit`); :class:`BestEpoch` says which epoch that was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


from sasrec_tf._compat import keras
from sasrec_tf.experiment.run_dir import record_progress

__all__ = ["BestEpoch", "RunProgress", "TimeLimit"]


class TimeLimit(keras.callbacks.Callback):
    """Stops training after ``max_seconds`` of wall time (checked at the end of each epoch).

    Args:
      max_seconds: the wall-time budget of ``fit``.

    Attributes:
      stopped: whether this callback stopped training.
    """

    def __init__(self, max_seconds: float) -> None:
        super().__init__()
        self.max_seconds = max_seconds
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.started, self.stopped = time.perf_counter(), False

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.started > self.max_seconds:
            self.stopped = self.model.stop_training = True


class BestEpoch(keras.callbacks.Callback):
    """Tracks the epoch (1-based) of the best validation value of ``monitor``: the first epoch
    with the highest value, as Keras' ``EarlyStopping(mode="max")`` picks it. An epoch that did
    not validate has no ``monitor`` in its logs and is skipped, as ``fit``'s
    :class:`~sasrec_tf.early_stopping.ValidatedEarlyStopping` skips it.

    Args:
      monitor: the log key, e.g. ``"val_ndcg@10"``.

    Attributes:
      best_epoch: that epoch, or 0 while there was no validation.
    """

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor
        self.best, self.best_epoch = -float("inf"), 0

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch = -float("inf"), 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.best_epoch = float(value), epoch + 1


class RunProgress(keras.callbacks.Callback):
    """Records in ``out_dir/backup/run.json`` the epochs done and the training time so far, after
    each epoch's backup, so that a resumed run's ``metrics.json`` counts the whole run.

    Args:
      out_dir: the run directory.
      fingerprint: the run's :func:`~sasrec_tf.experiment.run_fingerprint`.
      progress: the interrupted run's progress when this run resumes it (``{}`` otherwise).
    """

    def __init__(self, out_dir: Path, fingerprint: dict[str, Any], progress: dict[str, Any]) -> None:
        super().__init__()
        self.out_dir, self.fingerprint, self.progress = out_dir, fingerprint, progress

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        earlier = float(self.progress.get("seconds", 0.0)) if self.first_epoch else 0.0  # resumed, not restarted
        seconds = earlier + time.perf_counter() - self.started
        record_progress(self.out_dir, self.fingerprint, epoch + 1, seconds)
