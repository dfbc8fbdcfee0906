"""Ranking metrics computed from the rank of the one relevant item per user.

Every leave-one-out protocol in :mod:`sasrec_tf.evaluation` reduces to one 1-based rank per user
(the position of the held-out item among the candidates), so all metrics are functions of ranks:

- ``hr@k``   (hit rate / recall with one relevant item): ``mean(rank <= k)``;
- ``ndcg@k`` (one relevant item, so IDCG = 1): ``mean(1 / log2(rank + 1) if rank <= k else 0)``;
- ``mrr``    (full, not cut at any k): ``mean(1 / rank)``.

The same metrics stream inside Keras as :class:`HitRate`, :class:`NDCG` and :class:`MRR`
(``keras.metrics.Metric`` classes, tf_keras): each batch's targets are ranked by full ranking with
history exclusion (:func:`full_ranks`, the rules of :func:`sasrec_tf.evaluation.evaluate_full`)
and the per-user values are averaged over every batch seen, so ``model.evaluate`` on a dataset
from :func:`sasrec_tf.keras_evaluation.validation_dataset` reports the numbers ``evaluate_full``
computes on the same split. Recall@k and Precision@k are not separate metrics: with one relevant
item per user, Recall@k *is* HR@k and Precision@k is HR@k / k, a constant rescaling.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.ranking import kernel
from sasrec_tf.ranking.rules import NOT_A_CANDIDATE, REPEATED_TARGETS, check_repeated_targets

__all__ = ["DEFAULT_KS", "NOT_A_CANDIDATE", "REPEATED_TARGETS", "ranking_metrics", "metric_names", "full_ranks",
           "HitRate", "NDCG", "MRR"]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)


def _validate_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    return ks


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The keys :func:`ranking_metrics` returns for ``ks``, in its order."""
    names = []
    for k in _validate_ks(ks):
        names += [f"hr@{k}", f"ndcg@{k}"]
    return names + ["mrr"]


def ranking_metrics(ranks: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@k, NDCG@k (for each k) and MRR averaged over users.

    Args:
      ranks: 1-based ranks of the true item, one per user; a NumPy array, list or tensor of any
        shape (flattened).
      ks: cut-offs for HR and NDCG.

    Returns:
      ``{"hr@1": ..., "ndcg@1": ..., ..., "mrr": ...}`` as Python floats, keys ordered as
      :func:`metric_names`.

    Raises:
      ValueError: if ``ranks`` is empty or holds a rank below 1.
    """
    ks = _validate_ks(ks)
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size == 0:
        raise ValueError("ranking_metrics needs at least one rank")
    if not np.all(ranks >= 1):  # also rejects NaN
        raise ValueError(f"ranks must be >= 1 (1-based); got minimum {np.min(ranks)!r}")
    gains = 1.0 / np.log2(ranks + 1.0)
    result: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        result[f"hr@{k}"] = float(np.mean(hit))
        result[f"ndcg@{k}"] = float(np.mean(np.where(hit, gains, 0.0)))
    result["mrr"] = float(np.mean(1.0 / ranks))
    return result


# --------------------------------------------------------------------------------------------------
# Streaming Keras metrics


def full_ranks(queries: tf.Tensor, item_embeddings: tf.Tensor, targets: tf.Tensor,
               histories: tf.Tensor | None = None, repeated_targets: str = "miss",
               item_bias: tf.Tensor | None = None) -> tf.Tensor:
    """1-based rank ``[B]`` int32 of each target among all items ``1..N``, scored ``q · M_i`` (``+ b_i``).

    The ranking kernel's rules (:mod:`sasrec_tf.ranking.kernel`), as in
    :func:`sasrec_tf.evaluation.evaluate_full`: padding (row 0) is never a
    candidate; ties and NaN count against the target, so a constant model gets the worst rank;
    the items of ``histories`` are removed from the candidates, and a target that is itself in
    the history is a miss (rank :data:`NOT_A_CANDIDATE`), left out (rank 0) or ranked, by
    ``repeated_targets`` (``"miss"``, ``"drop"``, ``"rank"``).

    Args:
      queries: ``[B, d]`` next-item queries (``SASRec.query_embeddings``).
      item_embeddings: ``[N + 1, d]`` item matrix, row 0 padding (``SASRec.item_embeddings()``).
      targets: ``[B]`` true next items in ``1..N``.
      histories: ``[B, H]`` each row's history items, 0 = padding; ``None`` excludes nothing.
      repeated_targets: see :func:`sasrec_tf.evaluation.evaluate_full`; only with ``histories``.
      item_bias: ``[N + 1]`` added to every item's score (``SASRec.item_score_bias()``), or None.
    """
    return kernel.history_excluded_ranks(kernel.score_all(queries, item_embeddings, item_bias), targets, histories,
                                         repeated_targets)


class _FullRankingMetric(keras.metrics.Mean):
    """The mean over users of a function of each user's full-ranking rank (see :func:`full_ranks`).

    Shaped like TFRS's ``FactorizedTopK``: the metric is given the candidates once (here the model
    whose ``item_embeddings()`` scores every item) and is updated with the queries. In Keras terms
    ``update_state(y_true, y_pred)`` takes ``y_pred`` = the queries ``[B, d]`` and ``y_true`` =
    ``[B, 1 + H]`` int, each row's target followed by its history padded with 0 (the batches of
    :func:`sasrec_tf.keras_evaluation.validation_dataset`, whose ``QueryModel`` produces the
    queries). Sums and counts are Keras ``Mean`` state, so batches stream and replicas of a
    ``tf.distribute`` strategy add up.

    Args:
      candidates: the model (anything with ``item_embeddings()`` returning ``[N + 1, d]``). Only
        its method is kept, not the model, so the metric tracks no model weights and resetting it
        cannot touch them.
      exclude_history: remove the history's items from the candidates, as
        :func:`~sasrec_tf.evaluation.evaluate_full` does by default.
      repeated_targets: what a target already in the history counts as (``"miss"``, ``"drop"``:
        weight 0, or ``"rank"``), as in :func:`~sasrec_tf.evaluation.evaluate_full`.
    """

    def __init__(self, candidates: Any, *, exclude_history: bool = True, repeated_targets: str = "miss",
                 name: str, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not callable(getattr(candidates, "item_embeddings", None)):
            raise TypeError("candidates must provide item_embeddings() (e.g. a SASRec); "
                            f"got {type(candidates).__name__}")
        self._item_embeddings = candidates.item_embeddings
        self._item_bias = getattr(candidates, "item_score_bias", lambda: None)
        self.exclude_history = bool(exclude_history)
        self.repeated_targets = check_repeated_targets(repeated_targets)

    def _values(self, ranks: tf.Tensor) -> tf.Tensor:
        """Per-user metric values ``[B]`` from float ranks ``[B]``."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.convert_to_tensor(y_true)
        histories = y_true[:, 1:] if self.exclude_history else None
        ranks = full_ranks(y_pred, self._item_embeddings(), y_true[:, 0], histories, self.repeated_targets,
                           self._item_bias())
        weights = tf.cast(ranks > 0, self.dtype)  # 0: left out (repeated_targets="drop")
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(sample_weight, self.dtype), [-1])
        values = self._values(tf.cast(tf.maximum(ranks, 1), self.dtype))
        return super().update_state(values, sample_weight=weights)


class _CutOffMetric(_FullRankingMetric):
    def __init__(self, candidates: Any, k: int = 10, *, name: str, **kwargs):
        (k,) = _validate_ks([k])
        super().__init__(candidates, name=name.format(k=k), **kwargs)
        self.k = k


class HitRate(_CutOffMetric):
    """HR@k (= Recall@k with one relevant item): the share of users whose target ranks in the top k.

    Named ``hr@{k}`` by default, as in :func:`ranking_metrics` (``{k}`` in ``name`` becomes ``k``).
    See :class:`_FullRankingMetric` for ``candidates``, ``exclude_history`` and the ``y_true`` /
    ``y_pred`` layout.
    """

    def __init__(self, candidates: Any, k: int = 10, *, exclude_history: bool = True, repeated_targets: str = "miss",
                 name: str = "hr@{k}", dtype=None):
        super().__init__(candidates, k, exclude_history=exclude_history, repeated_targets=repeated_targets,
                         name=name, dtype=dtype)

    def _values(self, ranks):
        return tf.cast(ranks <= self.k, ranks.dtype)


class NDCG(_CutOffMetric):
    """NDCG@k with one relevant item: ``1 / log2(rank + 1)`` if the target ranks in the top k, else 0.

    Named ``ndcg@{k}`` by default. See :class:`_FullRankingMetric` for the arguments.
    """

    def __init__(self, candidates: Any, k: int = 10, *, exclude_history: bool = True, repeated_targets: str = "miss",
                 name: str = "ndcg@{k}", dtype=None):
        super().__init__(candidates, k, exclude_history=exclude_history, repeated_targets=repeated_targets,
                         name=name, dtype=dtype)

    def _values(self, ranks):
        gains = tf.math.log(tf.constant(2.0, ranks.dtype)) / tf.math.log(ranks + 1.0)
        return tf.where(ranks <= self.k, gains, tf.zeros_like(gains))


class MRR(_FullRankingMetric):
    """Mean reciprocal rank, not cut at any k: ``1 / rank``. Named ``mrr`` by default.

    See :class:`_FullRankingMetric` for the arguments.
    """

    def __init__(self, candidates: Any, *, exclude_history: bool = True, repeated_targets: str = "miss",
                 name: str = "mrr", dtype=None):
        super().__init__(candidates, exclude_history=exclude_history, repeated_targets=repeated_targets,
                         name=name, dtype=dtype)

    def _values(self, ranks):
        return 1.0 / ranks
