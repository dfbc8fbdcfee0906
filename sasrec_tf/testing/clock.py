"""The benchmarks' one timer of ``model.fit``: wall seconds per epoch and, on request, per step.

Wall time is ``time.perf_counter``, CPU time ``time.process_time`` (every thread of the process,
the input pipeline's included). Warm-up is the caller's to drop: the clock keeps every epoch and
every step, the first (tracing) one included.

Two classes, because a callback with batch hooks makes Keras call them after every step (and
turn the step's logs into Python numbers first): :class:`EpochClock` has none, so timing epochs
adds nothing to them; :class:`StepClock` adds the per-step stamps.
"""

from __future__ import annotations

import time

from sasrec_tf._compat import keras

__all__ = ["EpochClock", "StepClock"]


class EpochClock(keras.callbacks.Callback):
    """Appends each epoch's wall seconds to ``epoch_seconds`` (from its begin to its end hook).

    fit's own callbacks placed before it in the list (validation, checkpoints) run inside the
    epoch; callbacks listed after it see the epoch's duration already appended.

    Args:
        epoch_seconds: The list to append to (default: a new one), readable while fit runs.
    """

    def __init__(self, epoch_seconds: list[float] | None = None):
        super().__init__()
        self.epoch_seconds = [] if epoch_seconds is None else epoch_seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)


class StepClock(EpochClock):
    """An :class:`EpochClock` that also stamps the end of every training step.

    ``step_ends`` / ``cpu_step_ends`` hold ``perf_counter`` / ``process_time`` at each step's end;
    ``train_start`` / ``cpu_train_start`` the same at ``on_train_begin``. A step's time runs from
    the previous step's end (the first's from the start of training): compute, waiting for input
    and callback overhead, end to end.
    """

    def __init__(self, epoch_seconds: list[float] | None = None):
        super().__init__(epoch_seconds)
        self.step_ends: list[float] = []
        self.cpu_step_ends: list[float] = []
        self.train_start = self.cpu_train_start = None

    def on_train_begin(self, logs=None):
        self.train_start, self.cpu_train_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        self.step_ends.append(time.perf_counter())
        self.cpu_step_ends.append(time.process_time())

    @property
    def step_seconds(self) -> list[float]:
        """Wall seconds of each step, in order."""
        return _durations(self.train_start, self.step_ends)

    @property
    def cpu_step_seconds(self) -> list[float]:
        """CPU seconds of each step, in order."""
        return _durations(self.cpu_train_start, self.cpu_step_ends)


def _durations(start: float, ends: list[float]) -> list[float]:
    return [end - previous for previous, end in zip([start, *ends[:-1]], ends)]
