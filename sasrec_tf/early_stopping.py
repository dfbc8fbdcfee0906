"""Early stopping on validated epochs, robust to one noisy validation: the one mechanism that
stops training and restores the best validated weights, whether ``fit(patience=...)`` or a run
(:func:`sasrec_tf.experiment.train_and_evaluate`) asks for it.

Its defaults are Keras' ``EarlyStopping(mode="max", restore_best_weights=True)`` rule exactly,
shown only the epochs that validated; ``smoothing``, ``min_delta`` and ``min_epochs`` make it
robust on small, noisy logs (``benchmarks/early_stopping.py`` replays the rules on recorded curves).
"""

from __future__ import annotations

import numpy as np

from sasrec_tf._compat import keras

__all__ = ["ValidatedEarlyStopping"]


class ValidatedEarlyStopping(keras.callbacks.Callback):
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
