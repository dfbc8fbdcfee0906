"""The Keras callbacks a training run adds to :func:`sasrec_tf.training.fit`: the wall-time limit,
early stopping, the record of the best validated epoch, and the run's progress for a resume.

With ``patience``, :class:`RunEarlyStopping` keeps the best validated weights and restores them at
the end of training however it ends (early, on the epoch limit, or on :class:`TimeLimit`);
:class:`BestEpoch` says which epoch that was.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.experiment.run_dir import record_progress

__all__ = ["BestEpoch", "RunEarlyStopping", "RunProgress", "TimeLimit"]


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


class RunEarlyStopping(keras.callbacks.Callback):
    """Early stopping on the validated epochs that one noisy validation cannot end.

    Only epochs whose logs hold ``monitor`` count (those that validated). The *weights* kept are
    those of the first epoch with the highest validated value (as Keras'
    ``EarlyStopping(mode="max", restore_best_weights=True)`` keeps them) and they are restored at
    the end of training however it ends. *Stopping* looks at a score: the mean of the last
    ``smoothing`` validations (fewer at the start); a validation improves when its score exceeds
    the best score so far by more than ``min_delta``; training stops after ``patience``
    validations without improvement, but not before epoch ``min_epochs``. With ``smoothing=1``,
    ``min_delta=0`` and ``min_epochs=0`` this is Keras' rule exactly (what ``patience`` alone did).

    Args:
      monitor: the log key, e.g. ``"val_ndcg@10"`` (higher is better).
      patience: validations without improvement before stopping.
      min_delta: the least gain of the score that counts as an improvement.
      smoothing: validations averaged into the score.
      min_epochs: no stop before this epoch (1-based).
      verbose: print one line when training stops early.

    Attributes:
      best_epoch: the epoch (1-based) whose weights are kept, 0 before any validation.
      stopped_epoch: the epoch (1-based) this callback stopped training at, 0 if it did not.
    """

    def __init__(self, monitor: str, patience: int, *, min_delta: float = 0.0, smoothing: int = 1,
                 min_epochs: int = 0, verbose: int = 0) -> None:
        super().__init__()
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.smoothing, self.min_epochs, self.verbose = smoothing, min_epochs, verbose
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.values: list[float] = []
        self.best, self.best_epoch, self.best_weights = -np.inf, 0, None
        self.best_score, self.wait, self.stopped_epoch = -np.inf, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(value)
        self.values.append(value)
        if self.best_weights is None or value > self.best:
            self.best, self.best_epoch, self.best_weights = value, epoch + 1, self.model.get_weights()
        score = float(np.mean(self.values[-self.smoothing:]))
        self.wait += 1
        if score - self.min_delta > self.best_score:
            self.best_score, self.wait = score, 0
            return
        if self.wait >= self.patience and epoch > 0 and epoch + 1 >= self.min_epochs:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping: {self.describe()}", flush=True)

    def describe(self) -> str:
        """Why training stopped, and which epoch's weights are restored (one line)."""
        score = self.monitor if self.smoothing == 1 else f"the mean {self.monitor} of the last {self.smoothing}"
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (f"{score} did not improve{by} in {self.patience} validation(s); restoring the weights of epoch "
                f"{self.best_epoch} ({self.monitor} {self.best:.4f})")

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class BestEpoch(keras.callbacks.Callback):
    """Tracks the epoch (1-based) of the best validation value of ``monitor``: the first epoch
    with the highest value, as Keras' ``EarlyStopping(mode="max")`` picks it. An epoch that did
    not validate has no ``monitor`` in its logs and is skipped, as ``fit``'s
    :class:`~sasrec_tf.training.ValidatedEarlyStopping` skips it.

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
