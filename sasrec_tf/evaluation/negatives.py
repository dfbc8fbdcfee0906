"""Negatives of the paper's sampled protocol: per user, distinct items never in their history.

Not the training negatives (:func:`sasrec_tf.data.pipeline.sample_negatives` draws fresh ones
every batch inside ``tf.data``): these are drawn once per evaluation, in NumPy, from a seed, so
the same seed gives the same users, negatives and numbers.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sasrec_tf.config import NEGATIVE_SAMPLING

__all__ = ["sample_evaluation_negatives", "sample_negatives", "history_keys"]


def history_keys(histories: Sequence[np.ndarray], num_items: int, extra: np.ndarray | None = None) -> np.ndarray:
    """Sorted unique ``row * (num_items + 1) + item`` for every non-padding history item of each row.

    ``extra`` (one item per row, e.g. the targets) is added to each row's set.
    """
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    items = np.concatenate(histories) if lengths.sum() else np.zeros(0, np.int64)
    if extra is not None:
        rows = np.concatenate([rows, np.arange(len(histories), dtype=np.int64)])
        items = np.concatenate([items, np.asarray(extra, dtype=np.int64)])
    keep = items > 0
    keys = np.sort(rows[keep] * (num_items + 1) + items[keep])
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys



def _sampling_probabilities(sampling: str, item_counts: Any, num_items: int) -> np.ndarray | None:
    """``None`` for uniform sampling, else normalised popularity weights ``[N + 1]`` with p[0] = 0."""
    if sampling not in NEGATIVE_SAMPLING:
        raise ValueError(f"sampling must be one of {NEGATIVE_SAMPLING}, got {sampling!r}")
    if sampling == "uniform":
        return None
    if item_counts is None:
        raise ValueError('sampling="popularity" needs item_counts (training interaction counts, length N + 1)')
    counts = np.asarray(item_counts, dtype=np.float64).reshape(-1)
    if len(counts) != num_items + 1:
        raise ValueError(f"item_counts must have length num_items + 1 = {num_items + 1}, got {len(counts)}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("item_counts must be finite and non-negative")
    counts = counts.copy()
    counts[0] = 0.0
    if counts.sum() <= 0:
        raise ValueError("item_counts has no positive count outside the padding id")
    return counts / counts.sum()


def _first_valid(draws: np.ndarray, row_ids: np.ndarray, excluded_keys: np.ndarray, stride: int, k: int):
    """Per row, the first ``k`` distinct non-excluded draws (in draw order) and whether ``k`` were found."""
    keys = row_ids[:, None] * stride + draws
    pos = np.minimum(np.searchsorted(excluded_keys, keys), max(len(excluded_keys) - 1, 0))
    excluded = excluded_keys[pos] == keys if len(excluded_keys) else np.zeros(keys.shape, bool)
    order = np.argsort(draws, axis=1, kind="stable")  # stable: the first occurrence comes first
    sorted_draws = np.take_along_axis(draws, order, axis=1)
    first_sorted = np.ones(draws.shape, bool)
    first_sorted[:, 1:] = sorted_draws[:, 1:] != sorted_draws[:, :-1]
    first = np.empty(draws.shape, bool)
    np.put_along_axis(first, order, first_sorted, axis=1)
    valid = first & ~excluded
    taken = valid & (np.cumsum(valid, axis=1) <= k)
    return taken, taken.sum(axis=1) == k


def sample_evaluation_negatives(
    histories: Sequence[np.ndarray],
    targets: Any,
    num_items: int,
    num_negatives: int = 100,
    *,
    sampling: str = "uniform",
    item_counts: Any = None,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Sample the sampled protocol's negatives: ``[n, num_negatives]`` int32, one row per user.

    Each row holds distinct items from ``1..num_items``, none of them the padding id, the row's
    target or an item of the row's history (as the original SASRec code rejects the user's history
    set). ``sampling="uniform"`` draws uniformly; ``"popularity"`` draws in proportion to
    ``item_counts`` (length ``num_items + 1``), one item at a time without replacement, so items
    with a zero count are never drawn. Same seed, same negatives.

    Vectorised: over-draws per row, rejects excluded items and duplicates with a sorted-key
    membership test, keeps the first ``num_negatives`` valid draws in draw order, and re-draws the
    rare rows that ran short (exactly, from the row's eligible items, after a few rounds).

    Raises:
      ValueError: if a user has fewer than ``num_negatives`` eligible items.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    num_items, k = int(num_items), int(num_negatives)
    if k < 1:
        raise ValueError(f"num_negatives must be positive, got {num_negatives}")
    histories = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    n, stride = len(targets), num_items + 1
    if len(histories) != n:
        raise ValueError(f"got {len(histories)} histories but {n} targets")
    if n and (targets.min() < 1 or targets.max() > num_items):
        raise ValueError(f"targets must be item ids in 1..{num_items}")
    if any(len(h) and (h.min() < 0 or h.max() > num_items) for h in histories):
        raise ValueError(f"history item ids must be in 0..{num_items}")
    probs = _sampling_probabilities(sampling, item_counts, num_items)
    excluded_keys = history_keys(histories, num_items, extra=targets)
    excluded_rows, excluded_items = excluded_keys // stride, excluded_keys % stride

    # Eligible items and eligible probability mass per row, for the feasibility check and sizing.
    if probs is None:
        eligible = num_items - np.bincount(excluded_rows, minlength=n)
        mass = eligible / num_items
    else:
        positive = probs[excluded_items] > 0
        eligible = np.count_nonzero(probs) - np.bincount(excluded_rows, weights=positive, minlength=n)
        mass = 1.0 - np.bincount(excluded_rows, weights=probs[excluded_items], minlength=n)
    short = np.flatnonzero(eligible < k)
    if len(short):
        raise ValueError(
            f"{len(short)} user(s) have fewer than num_negatives={k} eligible items (e.g. row {short[0]} "
            f"has {int(eligible[short[0]])}); lower num_negatives"
        )

    def draw(size):
        if probs is None:
            return rng.integers(1, num_items + 1, size=size)
        return rng.choice(stride, size=size, p=probs)

    out = np.zeros((n, k), dtype=np.int32)
    pending = np.arange(n)
    # Draws per row: enough for ~95% of rows (duplicates included via a coupon-collector bound).
    distinct_factor = np.log((eligible + 0.5) / (eligible - k + 0.5)) * eligible / k  # >= ~1
    expected = k / np.maximum(mass, 1e-12) * np.maximum(1.0, distinct_factor)
    width = int(np.ceil(1.2 * np.quantile(expected, 0.95))) + 8 if n else 0
    for _ in range(4):
        if not len(pending):
            break
        width = min(width, 64 * stride)
        still_short = []
        chunk = max(1, (1 << 21) // width)
        for start in range(0, len(pending), chunk):
            rows = pending[start:start + chunk]
            draws = draw((len(rows), width))
            taken, complete = _first_valid(draws, rows, excluded_keys, stride, k)
            out[rows[complete]] = draws[complete][taken[complete]].reshape(-1, k)
            still_short.append(rows[~complete])
        pending = np.concatenate(still_short)
        width *= 4
    # Rows that are still short (nearly all their items excluded): sample exactly from what is left.
    for row in pending:
        lo, hi = np.searchsorted(excluded_rows, [row, row + 1])
        pool = np.setdiff1d(np.arange(1, stride), excluded_items[lo:hi], assume_unique=True)
        p = None
        if probs is not None:
            pool = pool[probs[pool] > 0]
            p = probs[pool] / probs[pool].sum()
        out[row] = rng.choice(pool, size=k, replace=False, p=p)
    return out



# The name this function had when it lived in sasrec_tf.evaluation (kept for users' imports).
sample_negatives = sample_evaluation_negatives
