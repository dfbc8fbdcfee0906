"""Leave-one-out evaluation of next-item models: full ranking and the paper's sampled protocol.

For each user the model sees the interaction history (``inputs``) and must rank the held-out next
item (``targets``). Both protocols reduce to one 1-based rank per user and report
:func:`sasrec_tf.metrics.ranking_metrics` of those ranks.

- **Full ranking** (:func:`evaluate_full`) ranks the target against *every* item ``1..N``. This is
  the honest protocol and the one to report and to select models with.
- **Sampled** (:func:`evaluate_sampled`) ranks the target against ``num_negatives`` (100) sampled
  items, as in SASRec (Kang & McAuley 2018) and its original code. Its numbers read several times
  higher than full-ranking numbers, are **not comparable** with them, and can even order models
  differently (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020). Use it
  only to compare with papers that used it, and always say which protocol a number comes from.

Shared rules:

- The padding id 0 is never a candidate.
- Ties never favour the true item: ``rank = 1 + #(candidates scoring > target) + #(other
  candidates scoring == target)`` (a NaN score counts as beating the target), so the rank does not
  depend on where the target sits among the candidates, and a constant model gets the worst rank.
- "History" means the whole given input sequence, not only the last ``model.max_len`` items the
  model reads.
- **Repeated targets** (full ranking with ``exclude_history``): a target that is already in the
  user's history is removed from the candidates with the rest of the history, as
  ``serving_default`` removes it, so by default (``repeated_targets="miss"``) it counts as a miss:
  offline numbers equal what the served model can return, and match the published code of
  S3-Rec / FMLP-Rec / BSARec, which blank every history score. ``"drop"`` leaves those users out
  (the RecTools / eSASRec benchmark); ``"rank"`` keeps the target a candidate (for data where
  re-consumption is the point). The Amazon files have no repeated targets; Yelp has 6.7%. The
  sampled protocol always ranks the target (the paper's code), whatever this setting.

Scoring runs in TensorFlow, batched, in a ``tf.function`` traced once per call (the last batch is
padded to the batch size and the padded rows dropped). Memory per batch is about
``batch_size * (num_items + 1) * 4`` bytes for full ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf.data.pipeline import pad_sequences
from sasrec_tf.data.rules import item_counts
from sasrec_tf.metrics import DEFAULT_KS, NOT_A_CANDIDATE, REPEATED_TARGETS, check_repeated_targets, ranking_metrics

__all__ = ["REPEATED_TARGETS", "evaluate", "evaluate_full", "evaluate_sampled", "repeated_targets_mask",
           "sample_negatives", "training_item_counts"]

_SAMPLING_MODES = ("uniform", "popularity")
_STAGES = ("valid", "test")
_PROTOCOLS = ("full", "sampled")


# --------------------------------------------------------------------------------------------------
# Input preparation


@dataclass(frozen=True)
class _Prepared:
    """Validated evaluation inputs in the arrays the rankers consume."""

    histories: list[np.ndarray]  # full input sequences, int64
    item_ids: np.ndarray  # [n, max_len] int32, left-padded model input
    targets: np.ndarray  # [n] int32
    user_ids: np.ndarray | None  # [n] int32 when the model uses user embeddings, else None
    num_items: int

    @property
    def size(self) -> int:
        return len(self.targets)

    def length_order(self) -> np.ndarray:
        """Rows by ascending history length (stable): batches of similar lengths can be cut to
        their longest window, which changes no score (SASRec ignores leading padding)."""
        lengths = np.fromiter((len(h) for h in self.histories), dtype=np.int64, count=self.size)
        return np.argsort(lengths, kind="stable")

    def subset(self, rows: np.ndarray) -> "_Prepared":
        return _Prepared(
            histories=[self.histories[i] for i in rows],
            item_ids=self.item_ids[rows],
            targets=self.targets[rows],
            user_ids=None if self.user_ids is None else self.user_ids[rows],
            num_items=self.num_items,
        )


def _uses_user_embedding(model: Any) -> bool:
    return bool(getattr(model, "uses_user_embedding", False))


def _prepare(model: Any, inputs: Sequence[np.ndarray], targets: Any, user_ids: Any) -> _Prepared:
    """Validate histories, targets and user ids against ``model`` and pad the histories."""
    for name in ("query_embeddings", "item_embeddings", "max_len", "num_items"):
        if not hasattr(model, name):
            raise TypeError(f"model must provide `{name}` (see sasrec_tf.evaluation); got {type(model).__name__}")
    num_items, max_len = int(model.num_items), int(model.max_len)
    histories = [np.asarray(seq, dtype=np.int64).reshape(-1) for seq in inputs]
    targets = np.asarray(targets).reshape(-1)
    if len(histories) != len(targets):
        raise ValueError(f"got {len(histories)} input sequences but {len(targets)} targets")
    if not len(targets):
        raise ValueError("nothing to evaluate: no users")
    if targets.min() < 1 or targets.max() > num_items:
        raise ValueError(f"targets must be item ids in 1..{num_items}; got range {targets.min()}..{targets.max()}")
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if lengths.sum():
        flat = np.concatenate(histories)
        if flat.min() < 0 or flat.max() > num_items:
            raise ValueError(f"input item ids must be in 0..{num_items}; got range {flat.min()}..{flat.max()}")
    users = None
    if _uses_user_embedding(model):
        if user_ids is None:
            raise ValueError("this model uses a user embedding: pass user_ids (dense user index 1..U)")
        users = np.asarray(user_ids).reshape(-1).astype(np.int32)
        if len(users) != len(targets):
            raise ValueError(f"got {len(users)} user ids for {len(targets)} targets")
    return _Prepared(
        histories=histories,
        item_ids=np.asarray(pad_sequences(histories, max_len), dtype=np.int32),
        targets=targets.astype(np.int32),
        user_ids=users,
        num_items=num_items,
    )


def _history_keys(histories: Sequence[np.ndarray], num_items: int, extra: np.ndarray | None = None) -> np.ndarray:
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


def _select_users(num_users: int, max_users: int | None, rng: np.random.Generator) -> np.ndarray:
    """All rows, or a seeded random subset of ``max_users`` rows in ascending order."""
    if max_users is None or max_users >= num_users:
        return np.arange(num_users)
    if max_users < 1:
        raise ValueError(f"max_users must be positive, got {max_users}")
    return np.sort(rng.choice(num_users, size=max_users, replace=False))


def _batches(n: int, batch_size: int):
    """``(start, stop)`` of consecutive batches."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def _pad_rows(array: np.ndarray, rows: int, fill: int = 0) -> np.ndarray:
    """``array`` with its first axis padded to ``rows`` with ``fill``."""
    missing = rows - len(array)
    if missing == 0:
        return array
    pad = np.full((missing,) + array.shape[1:], fill, dtype=array.dtype)
    return np.concatenate([array, pad])


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values`` computed for rows ``order`` of the input, back in input order."""
    out = np.empty_like(values)
    out[order] = values
    return out


def _check_batch_size(batch_size: int) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return batch_size


# --------------------------------------------------------------------------------------------------
# Compiled rankers (one trace each; reusable across calls, e.g. every epoch in a callback)


def _beats(scores: tf.Tensor, target_scores: tf.Tensor) -> tf.Tensor:
    """Whether each score counts against the true item: ties and NaN do (pessimistic ranking).

    Spelled out rather than ``not (score < target)``, which Grappler rewrites to ``>=`` (NaN-unsafe).
    """
    return (scores >= target_scores) | tf.math.is_nan(scores) | tf.math.is_nan(target_scores)


class _Ranker:
    """Scores batches of users with a model inside a ``tf.function`` traced once."""

    def __init__(self, model: Any, batch_size: int):
        self.model = model
        self.batch_size = _check_batch_size(batch_size)
        self.uses_users = _uses_user_embedding(model)
        self._fn = None
        self._key: tuple = ()

    def _query(self, item_ids, user_ids):
        return self.model.query_embeddings(item_ids, user_ids if self.uses_users else None)

    def _run(self, prepared: _Prepared, per_batch) -> np.ndarray:
        """Ranks of all users: pads each batch to ``rows`` rows, calls ``per_batch``, drops padded rows.

        A model that declares ``left_padding_invariant = True`` (SASRec: positions count from
        the right and padding is masked) gets each batch cut to its longest history, at most
        ``max_len``; callers pass ``prepared`` in :meth:`_Prepared.length_order`, so most batches
        are narrow: on sparse logs most of a ``max_len`` window is padding, and the query
        encoder's cost grows with the width (Beauty: 2x faster full ranking). Other models get
        ``[rows, max_len]``. ``per_batch(start, stop, rows, item_ids, user_ids, targets,
        item_emb)`` returns ``[rows]`` ranks.
        """
        # Small evaluations should not pay for padding to a large batch size.
        rows = min(self.batch_size, prepared.size)
        max_len = prepared.item_ids.shape[1]
        lengths = np.minimum(np.fromiter((len(h) for h in prepared.histories), np.int64, prepared.size), max_len)
        item_emb = tf.convert_to_tensor(self.model.item_embeddings(), dtype=tf.float32)
        out = []
        cut = bool(getattr(self.model, "left_padding_invariant", False))
        for start, stop in _batches(prepared.size, rows):
            width = max(1, int(lengths[start:stop].max())) if cut else max_len
            item_ids = _pad_rows(prepared.item_ids[start:stop, max_len - width:], rows)
            targets = _pad_rows(prepared.targets[start:stop], rows, fill=1)
            users = np.ones(rows, np.int32) if prepared.user_ids is None else prepared.user_ids[start:stop]
            users = _pad_rows(users, rows, fill=1)
            ranks = per_batch(start, stop, rows, item_ids, users, targets, item_emb)
            out.append(ranks.numpy()[: stop - start])
        return np.concatenate(out).astype(np.int64)


class _FullRanker(_Ranker):
    """Full ranking over items ``1..N`` with optional history exclusion."""

    def _compile(self, rows: int):
        signature = [
            tf.TensorSpec([rows, None], tf.int32),  # item_ids, cut to the batch's longest history
            tf.TensorSpec([rows], tf.int32),  # user_ids
            tf.TensorSpec([rows], tf.int32),  # targets (1..N)
            tf.TensorSpec([None, 2], tf.int32),  # excluded (row, item) pairs, unique, never the target
            tf.TensorSpec([None, None], tf.float32),  # item embeddings [N + 1, d]
        ]
        return tf.function(self._ranks, input_signature=signature)

    def _ranks(self, item_ids, user_ids, targets, excluded, item_emb):
        query = self._query(item_ids, user_ids)
        scores = tf.matmul(query, item_emb[1:], transpose_b=True)  # [B, N]; padding never scored
        target_scores = tf.gather(scores, targets - 1, batch_dims=1)[:, None]
        beats = _beats(scores, target_scores)  # includes the target itself
        counts = tf.reduce_sum(tf.cast(beats, tf.int32), axis=1)
        # Excluded history items that beat the target are taken back out of the count.
        excluded_rows = excluded[:, 0]
        excluded_scores = tf.gather_nd(scores, tf.stack([excluded_rows, excluded[:, 1] - 1], axis=1))
        excluded_beats = _beats(excluded_scores, tf.gather(target_scores[:, 0], excluded_rows))
        removed = tf.math.unsorted_segment_sum(
            tf.cast(excluded_beats, tf.int32), excluded_rows, num_segments=tf.shape(targets)[0]
        )
        return counts - removed

    def ranks(self, prepared: _Prepared, exclude_history: bool, repeated_targets: str = "miss") -> np.ndarray:
        """1-based ranks in input order; with ``repeated_targets="drop"``, 0 for the users left out."""
        check_repeated_targets(repeated_targets)
        rows = min(self.batch_size, prepared.size)
        if self._fn is None or self._key != (rows,):
            self._fn, self._key = self._compile(rows), (rows,)
        order = prepared.length_order()
        prepared = prepared.subset(order)
        stride = prepared.num_items + 1
        repeated = np.zeros(prepared.size, bool)
        if exclude_history:
            keys = _history_keys(prepared.histories, prepared.num_items)
            is_target = keys % stride == prepared.targets[keys // stride]
            repeated[keys[is_target] // stride] = True
            keys = keys[~is_target]  # scored as a candidate; the repeated_targets rule applies after
        else:
            keys = np.zeros(0, np.int64)
        key_rows = keys // stride

        def per_batch(start, stop, rows, item_ids, users, targets, item_emb):
            lo, hi = np.searchsorted(key_rows, [start, stop])
            excluded = np.stack([key_rows[lo:hi] - start, keys[lo:hi] % stride], axis=1).astype(np.int32)
            return self._fn(item_ids, users, targets, excluded.reshape(-1, 2), item_emb)

        ranks = self._run(prepared, per_batch)
        if repeated_targets == "miss":
            ranks[repeated] = NOT_A_CANDIDATE  # past every cut-off
        elif repeated_targets == "drop":
            ranks[repeated] = 0
        return _unsort(ranks, order)


class _SampledRanker(_Ranker):
    """Ranks the target among ``1 + K`` candidates: itself and ``K`` given negatives."""

    def _compile(self, rows: int, num_negatives: int):
        signature = [
            tf.TensorSpec([rows, None], tf.int32),
            tf.TensorSpec([rows], tf.int32),
            tf.TensorSpec([rows], tf.int32),
            tf.TensorSpec([rows, num_negatives], tf.int32),
            tf.TensorSpec([None, None], tf.float32),
        ]
        return tf.function(self._ranks, input_signature=signature)

    def _ranks(self, item_ids, user_ids, targets, negatives, item_emb):
        query = self._query(item_ids, user_ids)
        candidates = tf.concat([targets[:, None], negatives], axis=1)  # [B, 1 + K]
        # One contraction for target and negatives, so identical embeddings give identical scores.
        scores = tf.einsum("bd,bkd->bk", query, tf.gather(item_emb, candidates))
        beats = _beats(scores[:, 1:], scores[:, :1])
        return 1 + tf.reduce_sum(tf.cast(beats, tf.int32), axis=1)

    def ranks(self, prepared: _Prepared, negatives: np.ndarray) -> np.ndarray:
        rows = min(self.batch_size, prepared.size)
        key = (rows, negatives.shape[1])
        if self._fn is None or self._key != key:
            self._fn, self._key = self._compile(*key), key
        order = prepared.length_order()
        prepared, negatives = prepared.subset(order), negatives[order].astype(np.int32)

        def per_batch(start, stop, rows, item_ids, users, targets, item_emb):
            return self._fn(item_ids, users, targets, _pad_rows(negatives[start:stop], rows, fill=1), item_emb)

        return _unsort(self._run(prepared, per_batch), order)


# --------------------------------------------------------------------------------------------------
# Negative sampling for the sampled protocol


def _sampling_probabilities(sampling: str, item_counts: Any, num_items: int) -> np.ndarray | None:
    """``None`` for uniform sampling, else normalised popularity weights ``[N + 1]`` with p[0] = 0."""
    if sampling not in _SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {_SAMPLING_MODES}, got {sampling!r}")
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


def sample_negatives(
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
    excluded_keys = _history_keys(histories, num_items, extra=targets)
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


# --------------------------------------------------------------------------------------------------
# Public protocols


def metrics_of_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """:func:`ranking_metrics` of the users that were ranked (rank 0 = left out: ``max_users``,
    ``repeated_targets="drop"``)."""
    ranked = ranks[ranks > 0]
    if not ranked.size:
        raise ValueError("no user left to evaluate: every target was left out (repeated_targets='drop'?)")
    return ranking_metrics(ranked, ks)


def _finish(ranks: np.ndarray, ks: Sequence[int], return_ranks: bool):
    metrics = metrics_of_ranks(ranks, ks)
    return (metrics, ranks) if return_ranks else metrics


def evaluate_full(
    model: Any,
    inputs: Sequence[np.ndarray],
    targets: Any,
    *,
    user_ids: Any = None,
    exclude_history: bool = True,
    repeated_targets: str = "miss",
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
):
    """Full-ranking leave-one-out metrics: the target ranked against every item ``1..N``.

    Args:
      model: provides ``query_embeddings(item_ids, user_ids=None)``, ``item_embeddings()``,
        ``max_len``, ``num_items`` and optionally ``uses_user_embedding`` (see the module doc).
      inputs: per user, the chronological history of dense item ids; the model reads its most
        recent ``model.max_len`` items.
      targets: ``[n]`` held-out next item per user, in ``1..N``.
      user_ids: ``[n]`` dense user ids ``1..U``; required when ``model.uses_user_embedding``,
        ignored otherwise.
      exclude_history: drop the items of the user's whole input history from the candidates
        (the usual convention, and what ``serving_default`` does).
      repeated_targets: with ``exclude_history``, what a target that is itself in the history
        counts as: ``"miss"`` (it is not a candidate, as in what the served model can return:
        rank :data:`~sasrec_tf.metrics.NOT_A_CANDIDATE`, past every cut-off), ``"drop"`` (the
        user is left out of the metrics; rank 0 in ``return_ranks``) or ``"rank"`` (it stays a
        candidate, as a re-consumed item). See the module doc.
      batch_size: users scored per step; memory is about ``batch_size * (N + 1) * 4`` bytes.
      ks: cut-offs for HR@k and NDCG@k.
      return_ranks: also return the ``[n]`` int64 ranks, in input order (0 = left out).

    Returns:
      ``{"hr@k": ..., "ndcg@k": ..., "mrr": ...}``; with ``return_ranks``, ``(metrics, ranks)``.
    """
    prepared = _prepare(model, inputs, targets, user_ids)
    ranks = _FullRanker(model, batch_size).ranks(prepared, exclude_history, repeated_targets)
    return _finish(ranks, ks, return_ranks)


def evaluate_sampled(
    model: Any,
    inputs: Sequence[np.ndarray],
    targets: Any,
    *,
    user_ids: Any = None,
    num_negatives: int = 100,
    sampling: str = "uniform",
    item_counts: Any = None,
    max_users: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
):
    """The paper's sampled leave-one-out metrics: the target ranked among ``1 + num_negatives`` items.

    Negatives come from :func:`sample_negatives` (uniform, or ``"popularity"`` in proportion to
    ``item_counts``; never padding, the target or a history item; no duplicates). ``max_users``
    evaluates a seeded random subset of at most that many users, like the original code's
    10,000-user sample. The same ``seed`` gives the same users, negatives and numbers. Not
    comparable with :func:`evaluate_full` (see the module doc).

    Returns:
      The metrics dict; with ``return_ranks``, ``(metrics, ranks)`` where ``ranks`` is ``[n]`` in
      input order and 0 for the users left out by ``max_users``.
    """
    rng = np.random.default_rng(seed)
    prepared = _prepare(model, inputs, targets, user_ids)
    rows = _select_users(prepared.size, max_users, rng)
    selected = prepared.subset(rows)
    negatives = sample_negatives(
        selected.histories,
        selected.targets,
        selected.num_items,
        num_negatives,
        sampling=sampling,
        item_counts=item_counts,
        seed=rng,
    )
    ranks = np.zeros(prepared.size, dtype=np.int64)
    ranks[rows] = _SampledRanker(model, batch_size).ranks(selected, negatives)
    return _finish(ranks, ks, return_ranks)


def evaluate(
    model: Any,
    split: Any,
    *,
    stage: str = "valid",
    protocols: Sequence[str] = _PROTOCOLS,
    exclude_history: bool = True,
    repeated_targets: str = "miss",
    num_negatives: int = 100,
    sampling: str = "uniform",
    max_users: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` on a ``LeaveOneOutSplit`` stage with the given protocols.

    ``stage="valid"`` ranks ``valid_targets`` given ``valid_inputs``; ``"test"`` uses the test
    fields. Model user ids are the split's 0-based user indices + 1. Popularity sampling counts
    items in ``split.train``. ``max_users`` applies to the sampled protocol only; the full one
    always ranks every user. ``exclude_history`` and ``repeated_targets`` apply to the full
    protocol (see :func:`evaluate_full`).

    Returns:
      ``{"full": {...}, "sampled": {...}}`` with one entry per requested protocol.
    """
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES}, got {stage!r}")
    check_repeated_targets(repeated_targets)
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in _PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"protocols must be a non-empty subset of {_PROTOCOLS}, got {protocols!r}")
    inputs = getattr(split, f"{stage}_inputs")
    targets = getattr(split, f"{stage}_targets")
    user_ids = np.asarray(getattr(split, f"{stage}_users")) + 1
    results: dict[str, dict[str, float]] = {}
    for protocol in protocols:
        if protocol == "full":
            results["full"] = evaluate_full(
                model, inputs, targets, user_ids=user_ids, exclude_history=exclude_history,
                repeated_targets=repeated_targets, batch_size=batch_size, ks=ks,
            )
        else:
            item_counts = None
            if sampling == "popularity":
                item_counts = training_item_counts(split.train, int(model.num_items))
            results["sampled"] = evaluate_sampled(
                model, inputs, targets, user_ids=user_ids, num_negatives=num_negatives,
                sampling=sampling, item_counts=item_counts, max_users=max_users, seed=seed,
                batch_size=batch_size, ks=ks,
            )
    return results


def repeated_targets_mask(inputs: Sequence[np.ndarray], targets: Any) -> np.ndarray:
    """``[n]`` bool: whether each user's target already occurs in their input history (the users
    that ``repeated_targets`` decides about)."""
    targets = np.asarray(targets).reshape(-1)
    return np.fromiter((np.any(np.asarray(h) == t) for h, t in zip(inputs, targets)), dtype=bool, count=len(targets))


def training_item_counts(sequences: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """Interactions per item id in ``sequences``: ``[num_items + 1]`` int64, padding counted as 0
    (the rule :func:`sasrec_tf.data.rules.item_counts`, which the TFRecord writer applies too)."""
    return item_counts(sequences, num_items)
