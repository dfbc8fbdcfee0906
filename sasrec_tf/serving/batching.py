"""Server-side batching for the local server: concurrent requests to one signature run as one batch.

Work-conserving, like TF Serving's batching with ``batch_timeout_micros: 0``: ``num_batch_threads``
threads run batches; each takes every waiting request (up to ``max_batch_size`` rows) as soon as
it is free. An idle server runs a request at once (no batching delay); under load, requests that
arrive while a batch runs merge into the next one, so the per-request cost falls.

Inputs are concatenated along the batch dimension. Inputs of different widths are padded at the
end as TF Serving does with ``pad_variable_length_inputs``: with the tensor's first element (the
clients of this package start every history with ``""``, so the padding is the ignored token).
Outputs are split along the batch dimension; an output whose width follows a padded input (the
``score`` signature's) comes back at the padded width, as from TF Serving.

Two rules make mistakes visible instead of silently wrong (INVALID_ARGUMENT):

* a request with more rows than ``max_batch_size`` is refused with TF Serving's message ("Task
  size N is larger than maximum input batch size M"; TF Serving splits only with
  ``enable_large_batch_splitting``, which the shipped ``batching_parameters.txt`` leaves off):
  clients split large requests (``PredictionClient(max_batch_size=...)``);
* a string tensor of rank 2 or more whose first element is not ``""`` is refused: merged with a
  wider request it would be padded with that element, a real item, and answered wrongly. TF
  Serving cannot tell; the stand-in names the rule.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from pathlib import Path
from typing import Callable, Mapping

import grpc
import numpy as np

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.options import DEFAULTS

__all__ = ["Batcher", "read_batching_parameters"]

Run = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class _Task:
    __slots__ = ("inputs", "rows", "result", "error", "done")

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int):
        self.inputs = inputs
        self.rows = rows
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class Batcher:
    """Merge concurrent calls of ``run`` (one signature of one servable) into batches.

    Call it like ``run``. :meth:`close` lets queued requests finish, then stops the threads;
    calls after that run unbatched.
    """

    def __init__(self, run: Run, max_batch_size: int = DEFAULTS.max_batch_size,
                 num_batch_threads: int = DEFAULTS.num_batch_threads, name: str = "batcher"):
        if max_batch_size < 1 or num_batch_threads < 1:
            raise ValueError("max_batch_size and num_batch_threads must be >= 1")
        self._run = run
        self.max_batch_size = int(max_batch_size)
        self._ready = threading.Condition()
        self._pending: collections.deque[_Task] = collections.deque()
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"{name}-{i}")
                         for i in range(int(num_batch_threads))]
        for thread in self._threads:
            thread.start()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not inputs or any(np.ndim(v) == 0 for v in inputs.values()):
            return dict(self._run(inputs))
        rows = min(len(value) for value in inputs.values())
        if rows > self.max_batch_size:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Task size {rows} is larger than maximum input batch size {self.max_batch_size}: "
                              f"split the request (PredictionClient and RestClient take max_batch_size)")
        for name, value in inputs.items():
            if np.ndim(value) >= 2 and value.dtype == object and value.size and value.flat[0] not in (b"", ""):
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r} starts with {value.flat[0]!r}: with batching, a string tensor must start with "
                    f"\"\" because merged requests are padded with their first element (TF Serving's "
                    f"pad_variable_length_inputs); start every row with \"\" as sasrec_tf's clients do")
        task = _Task(inputs, rows)
        with self._ready:
            if self._closed:
                return dict(self._run(inputs))
            self._pending.append(task)
            self._ready.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                batch, rows = [], 0
                while self._pending and (not batch or rows + self._pending[0].rows <= self.max_batch_size):
                    task = self._pending.popleft()
                    batch.append(task)
                    rows += task.rows
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        try:
            outputs = self._run(_merge([task.inputs for task in batch])) if len(batch) > 1 else \
                self._run(batch[0].inputs)
            start = 0
            for task in batch:
                task.result = {name: value[start: start + task.rows] for name, value in outputs.items()}
                start += task.rows
        except BaseException as err:  # noqa: BLE001 - every request of the batch gets the error
            for task in batch:
                task.error = err
        finally:
            for task in batch:
                task.done.set()


def _merge(requests: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    merged = {}
    for name in requests[0]:
        arrays = [np.asarray(request[name]) for request in requests]
        if arrays[0].ndim > 1:
            width = [max(a.shape[axis] for a in arrays) for axis in range(1, arrays[0].ndim)]
            arrays = [_pad_end(a, width) for a in arrays]
        merged[name] = np.concatenate(arrays, axis=0)
    return merged


def _pad_end(array: np.ndarray, width: list[int]) -> np.ndarray:
    if list(array.shape[1:]) == width:
        return array
    fill = array.flat[0] if array.size else (b"" if array.dtype == object else 0)
    out = np.empty((array.shape[0], *width), dtype=array.dtype)
    out[...] = fill
    out[tuple(slice(0, s) for s in array.shape)] = array
    return out


def read_batching_parameters(path: str | os.PathLike[str]) -> dict[str, int]:
    """``max_batch_size`` and ``num_batch_threads`` of TF Serving's ``batching_parameters.txt``.

    The text proto's other fields configure TF Serving's queueing (timeouts, queue lengths), which
    this work-conserving batcher has no use for. The stand-in's batching matches TF Serving's only
    with ``pad_variable_length_inputs: true``, so a file without it is refused.
    """
    text = re.sub(r"#.*", "", Path(path).read_text(encoding="utf-8"))
    found = {}
    for field in ("max_batch_size", "num_batch_threads"):
        match = re.search(rf"\b{field}\s*{{\s*value\s*:\s*(\d+)\s*}}", text)
        if match:
            found[field] = int(match.group(1))
    if not re.search(r"\bpad_variable_length_inputs\s*:\s*true\b", text):
        raise ValueError(f"{path}: set pad_variable_length_inputs: true (histories have different lengths)")
    if found.get("max_batch_size", 1) < 1 or found.get("num_batch_threads", 1) < 1:
        raise ValueError(f"{path}: max_batch_size and num_batch_threads must be >= 1, got {found}")
    return found
