"""Server-side batching for the local server: concurrent requests to one signature run as one batch.

Work-conserving, like TF Serving's batching with ``batch_timeout_micros: 0``: ``num_batch_threads``
threads run batches; each takes the oldest queued batch as soon as it is free. An idle server runs
a request at once (no batching delay); under load, requests that arrive while a batch runs merge
into the next one, so the per-request cost falls.

The queue is TF Serving's (``SharedBatchScheduler``, tensorflow/core/kernels/batching_util/
shared_batch_scheduler.h ``Schedule``): a request joins the open batch if its rows fit, else it
opens a new one; with ``max_enqueued_batches`` batches already waiting it is refused
``UNAVAILABLE`` "The batch scheduling queue to which this task was submitted is full" (a batch a
thread runs has left the queue). A request with more rows than ``max_batch_size`` is refused
INVALID_ARGUMENT "Task size N is larger than maximum input batch size M" before anything is queued
(also with ``enable_large_batch_splitting``, whose size check comes first).

Inputs are concatenated along the batch dimension. Where the widths of merged requests differ,
they are padded at the end with each request's first element when ``pad_variable_length_inputs``
is set (``batching_session.cc`` ~500-545; the clients of this package start every history with
``""``, so the padding is the ignored token); without it the whole batch fails FAILED_PRECONDITION,
as any failure of a merged batch fails every request in it. A request padded with an element
other than ``""`` may be answered wrongly, on TF Serving as here: the stand-in logs it once.
Outputs are split along the batch dimension; an output whose width follows a padded input (the
``score`` signature's) comes back at the padded width, as from TF Serving.

:func:`read_batching_parameters` parses ``batching_parameters.txt`` as the ``BatchingParameters``
text proto it is (``servables/tensorflow/session_bundle_config.proto``; tensorflow-serving-api does
not ship its Python module, so the message is declared here with the proto's field names and
numbers): an unknown field is refused, absent fields take TF Serving's defaults.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Mapping

import grpc
import numpy as np

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.options import DEFAULTS

__all__ = ["Batcher", "read_batching_parameters", "BATCHING_DEFAULTS"]

logger = logging.getLogger(__name__)

# What TF Serving uses for a field the file does not set (SharedBatchScheduler's QueueOptions and
# Options; pad_variable_length_inputs is a proto3 bool, false).
BATCHING_DEFAULTS = {"max_batch_size": 1000, "num_batch_threads": os.cpu_count() or 1, "max_enqueued_batches": 10,
                     "pad_variable_length_inputs": False}

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
                 num_batch_threads: int = DEFAULTS.num_batch_threads, name: str = "batcher", *,
                 max_enqueued_batches: int = DEFAULTS.max_enqueued_batches,
                 pad_variable_length_inputs: bool = DEFAULTS.pad_variable_length_inputs):
        if max_batch_size < 1 or num_batch_threads < 1 or max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")
        self._run = run
        self.max_batch_size = int(max_batch_size)
        self.max_enqueued_batches = int(max_enqueued_batches)
        self.pad = bool(pad_variable_length_inputs)
        self._name = name
        self._warned = False
        self._ready = threading.Condition()
        self._batches: collections.deque[list[_Task]] = collections.deque()  # the last one is open
        self._open_rows = 0
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
        task = _Task(inputs, rows)
        with self._ready:
            if self._closed:
                return dict(self._run(inputs))
            if not self._batches or self._open_rows + rows > self.max_batch_size:
                if len(self._batches) >= self.max_enqueued_batches:
                    raise StatusError(grpc.StatusCode.UNAVAILABLE,
                                      "The batch scheduling queue to which this task was submitted is full "
                                      f"({self.max_enqueued_batches} batches of up to {self.max_batch_size} rows "
                                      f"wait; max_enqueued_batches): retry later")
                self._batches.append([])
                self._open_rows = 0
            self._batches[-1].append(task)
            self._open_rows += rows
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
                while not self._batches and not self._closed:
                    self._ready.wait()
                if not self._batches:
                    return
                batch = self._batches.popleft()  # a running batch has left the queue
                if not self._batches:
                    self._open_rows = 0
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        try:
            outputs = self._run(self._merge([task.inputs for task in batch])) if len(batch) > 1 else \
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

    def _merge(self, requests: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        merged = {}
        for name in requests[0]:
            arrays = [np.asarray(request[name]) for request in requests]
            if arrays[0].ndim > 1 and len({a.shape[1:] for a in arrays}) > 1:
                if not self.pad:
                    raise StatusError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Tensors with name '{name}' from different tasks have different shapes and padding is "
                        f"turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with the "
                        f"same name have equal dimensions starting with the first dim.")
                width = [max(a.shape[axis] for a in arrays) for axis in range(1, arrays[0].ndim)]
                padded = [a for a in arrays if list(a.shape[1:]) != width]
                if not self._warned and any(a.size and a.flat[0] not in (b"", "") for a in padded):
                    self._warned = True
                    logger.warning("%s: a request whose %r does not start with \"\" was padded with its first "
                                   "element (TF Serving's pad_variable_length_inputs): its answer may be wrong; "
                                   "start every row with \"\" as sasrec_tf's clients do", self._name, name)
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


def _batching_parameters_class():
    """``tensorflow.serving.BatchingParameters`` (session_bundle_config.proto ~149-203), built once."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="sasrec_tf/batching_parameters.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    for name, number, wrapper in [("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
                                  ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
                                  ("thread_pool_name", 5, "StringValue"),
                                  ("enable_large_batch_splitting", 8, "BoolValue"),
                                  ("max_execution_batch_size", 9, "Int64Value")]:
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                          type_name=f".google.protobuf.{wrapper}")
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def read_batching_parameters(path: str | os.PathLike[str]) -> dict:
    """TF Serving's ``batching_parameters.txt`` as the batcher's settings.

    Returns ``max_batch_size``, ``num_batch_threads``, ``max_enqueued_batches`` and
    ``pad_variable_length_inputs`` (TF Serving's defaults, :data:`BATCHING_DEFAULTS`, for fields not
    set). Timeouts and the thread pool name configure TF Serving's queueing, which this
    work-conserving batcher has no use for; they are parsed and checked all the same.

    Raises:
        ValueError: not a ``BatchingParameters`` text proto (an unknown field included), a size
            below 1, or ``allowed_batch_sizes`` whose last entry is not ``max_batch_size``
            (``bundle_factory_util.cc`` ~113-125: TF Serving fails the model's load).
    """
    from google.protobuf import text_format

    try:
        params = text_format.Parse(Path(path).read_text(encoding="utf-8"), _batching_parameters_class()())
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a BatchingParameters text proto: {err}") from None
    found = dict(BATCHING_DEFAULTS)
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if params.HasField(name):
            found[name] = int(getattr(params, name).value)
    found["pad_variable_length_inputs"] = bool(params.pad_variable_length_inputs)
    small = {name: found[name] for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches")
             if found[name] < 1}
    if small:
        raise ValueError(f"{path}: max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1, got {small}")
    if params.allowed_batch_sizes and params.allowed_batch_sizes[-1] != found["max_batch_size"]:
        raise ValueError(f"{path}: Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                         f"{params.allowed_batch_sizes[-1]}; expected {found['max_batch_size']}")
    return found
