"""The sequence rules shared by every reader: the leave-one-out training part, training windows,
the targets a window holds, and item counts.

The in-memory pipeline (:func:`sasrec_tf.data.training_dataset`), the split
(:func:`sasrec_tf.data.leave_one_out`), the TFRecord writer (its manifest and item counts), the
shard directory (windows and steps per epoch) and the TFRecord reader (in the ``tf.data`` graph)
all apply these functions and write none of the rules again, so the readers cannot drift apart:
the TFRecord reader yields the very batches of the in-memory pipeline, and the step count and
loss normaliser computed from a manifest are those of the epoch the reader then produces.

The length rules are written once, over a handful of array operations that numpy and TensorFlow
both have (:class:`_Ops`), and serve both worlds: called with tensors (inside the reader's
``tf.data`` graph) they build TensorFlow ops; called with numpy arrays or lists they compute in
numpy and return numpy arrays. They never run a TensorFlow op on numpy input, so the split, the
writer and the shard directory can be used before TensorFlow is configured (a multi-worker
strategy must be created before the first op runs). Lengths are int64.

The module does not import TensorFlow: a value can only be a tensor once TensorFlow is imported,
so the TensorFlow operations are built the first time a tensor comes in. The windows are those
of :data:`sasrec_tf.config.TRAINING_WINDOWS`. (``sasrec_tf.data.rules``, the module's old name,
re-exports it.)
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Sequence

import numpy as np

from sasrec_tf.config import TRAINING_WINDOWS

__all__ = [
    "WINDOWS",
    "check_windows",
    "count_windows",
    "item_counts",
    "leave_one_out_lengths",
    "mean_window_targets",
    "window_ends",
    "window_targets",
    "windows_per_sequence",
]

WINDOWS = TRAINING_WINDOWS  # the training windows a sequence is cut into


class _Ops:
    """The array operations the length rules are written in, for one backend (numpy or TensorFlow).

    Arithmetic and comparisons are the operators, which both backends share.
    """

    def __init__(self, *, int64: Callable, where: Callable, repeat: Callable, arange: Callable,
                 size: Callable, exclusive_cumsum: Callable, gather: Callable, total: Callable,
                 minimum: Callable):
        self.int64 = int64  # cast to int64
        self.where = where  # elementwise select, broadcasting scalars
        self.repeat = repeat  # repeat(values, counts): values[i] counts[i] times
        self.arange = arange  # 0..n-1, int64
        self.size = size
        self.exclusive_cumsum = exclusive_cumsum  # [a, b, c] -> [0, a, a + b]
        self.gather = gather  # gather(values, indices) = values[indices]
        self.total = total  # sum of all elements
        self.minimum = minimum


_NUMPY = _Ops(
    int64=lambda x: np.asarray(x, dtype=np.int64),
    where=np.where,
    repeat=np.repeat,
    arange=lambda n: np.arange(n, dtype=np.int64),
    size=np.size,
    exclusive_cumsum=lambda x: np.cumsum(x) - x,
    gather=lambda values, indices: values[indices],
    total=np.sum,
    minimum=np.minimum,
)


@functools.cache
def _tensorflow_ops() -> _Ops:
    """TensorFlow's operations (built on first use: TensorFlow is imported by then)."""
    import tensorflow as tf

    return _Ops(
        int64=lambda x: tf.cast(x, tf.int64),
        where=tf.where,
        repeat=tf.repeat,
        arange=lambda n: tf.range(n, dtype=tf.int64),
        size=lambda x: tf.size(x, out_type=tf.int64),
        exclusive_cumsum=lambda x: tf.cumsum(x, exclusive=True),
        gather=tf.gather,
        total=tf.reduce_sum,
        minimum=tf.minimum,
    )


def _ops(*values: Any) -> _Ops:
    """TensorFlow's operations when any value is a tensor, numpy's otherwise (a value cannot be a
    tensor while TensorFlow is not imported, so that case never imports it)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and any(tf.is_tensor(value) for value in values):
        return _tensorflow_ops()
    return _NUMPY


def check_windows(windows: str) -> None:
    """Raise ``ValueError`` unless ``windows`` is one of :data:`WINDOWS`."""
    if windows not in WINDOWS:
        raise ValueError(f"windows must be {' or '.join(map(repr, WINDOWS))}, got {windows!r}")


def leave_one_out_lengths(lengths: Any, min_length: int = 3) -> Any:
    """Training-part length per user under the paper's leave-one-out split (int64, numpy or tensor
    like ``lengths``).

    A user with at least ``min_length`` interactions keeps all but the last two for training (the
    second to last is the validation target, the last the test target); a shorter user keeps
    everything and is not evaluated. The training part of a sequence ``s`` is ``s[:length]``.

    Raises:
        ValueError: ``min_length < 3`` (a user needs a training, a validation and a test item).
    """
    if min_length < 3:
        raise ValueError(f"min_length must be at least 3, got {min_length}")
    ops = _ops(lengths)
    lengths = ops.int64(lengths)
    return ops.where(lengths >= min_length, lengths - 2, lengths)


def windows_per_sequence(lengths: Any, max_len: int, windows: str = "last") -> Any:
    """Training windows of each sequence of these ``lengths`` (int64, numpy or tensor).

    A sequence of ``n >= 2`` items has targets ``1..n-1``; ``"last"`` keeps one window (its most
    recent ``max_len`` targets), ``"all"`` cuts the targets into consecutive windows of
    ``max_len`` from the end, ``ceil((n - 1) / max_len)`` of them. Shorter sequences have none.

    Raises:
        ValueError: ``windows`` is not one of :data:`WINDOWS`.
    """
    check_windows(windows)
    ops = _ops(lengths)
    lengths = ops.int64(lengths)
    per_sequence = 1 if windows == "last" else (lengths - 1 + max_len - 1) // max_len
    return ops.int64(ops.where(lengths >= 2, per_sequence, 0))


def window_ends(lengths: Any, max_len: int, windows: str = "last") -> tuple[Any, Any]:
    """(sequence index, end) of every training window, int64 (numpy or tensors like ``lengths``);
    ``end`` = number of items the window's targets reach (its last target is item ``end - 1``).

    Windows come in sequence order, most recent first within a sequence; see
    :func:`windows_per_sequence` for which windows a sequence has.
    """
    ops = _ops(lengths)
    lengths = ops.int64(lengths)
    counts = windows_per_sequence(lengths, max_len, windows)
    rows = ops.repeat(ops.arange(ops.size(lengths)), counts)
    offsets = ops.arange(ops.total(counts)) - ops.repeat(ops.exclusive_cumsum(counts), counts)
    return rows, ops.gather(lengths, rows) - offsets * max_len


def window_targets(ends: Any, max_len: int) -> Any:
    """Target positions of windows with these ``ends`` (see :func:`window_ends`), int64: a window
    reaching item ``end`` has ``end - 1`` targets, at most ``max_len``."""
    ops = _ops(ends)
    return ops.minimum(ops.int64(ends) - 1, max_len)


def count_windows(lengths: Any, max_len: int, windows: str = "last", *, weights: Any = None) -> int:
    """Training windows of sequences of these ``lengths`` (an epoch's examples).

    ``weights`` counts the sequences of each length (e.g. a length histogram's users per length);
    ``None`` means one sequence per entry. numpy inputs.
    """
    counts = windows_per_sequence(np.asarray(lengths), max_len, windows)
    return int(np.sum(counts * _weights(weights, counts)))


def mean_window_targets(lengths: Any, max_len: int, windows: str = "last", *, weights: Any = None) -> float:
    """Mean number of target positions per training window of sequences of these ``lengths`` (the
    normaliser of the loss, see :mod:`sasrec_tf.data.pipeline`); 1.0 when there is no window.

    ``weights`` counts the sequences of each length, as in :func:`count_windows`. The sums are
    exact integers, so the result does not depend on how the sequences are grouped. numpy inputs.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    rows, ends = window_ends(lengths, max_len, windows)
    per_window = _weights(weights, lengths)[rows]
    total = int(np.sum(per_window))
    return float(np.sum(window_targets(ends, max_len) * per_window)) / total if total else 1.0


def _weights(weights: Any, like: np.ndarray) -> np.ndarray:
    if weights is None:
        return np.ones(np.shape(like), np.int64)
    return np.asarray(weights, np.int64).reshape(np.shape(like))


def item_counts(sequences: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """Interactions per item id in ``sequences``: ``[num_items + 1]`` int64, padding counted as 0.

    The counts of the leave-one-out training parts drive popularity sampling and log-q correction.

    Raises:
        ValueError: an id outside ``0..num_items``.
    """
    flat = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    flat = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() > num_items):
        raise ValueError(f"item ids must be in 0..{num_items}")
    counts = np.bincount(flat, minlength=num_items + 1).astype(np.int64, copy=False)
    counts[0] = 0
    return counts
