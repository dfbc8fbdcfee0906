"""Ranking metrics computed from the rank of the one relevant item per user.

Every leave-one-out protocol in :mod:`sasrec_tf.evaluation` reduces to one 1-based rank per user
(the position of the held-out item among the candidates), so all metrics are functions of ranks:

- ``hr@k``   (hit rate / recall with one relevant item): ``mean(rank <= k)``;
- ``ndcg@k`` (one relevant item, so IDCG = 1): ``mean(1 / log2(rank + 1) if rank <= k else 0)``;
- ``mrr``    (full, not cut at any k): ``mean(1 / rank)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DEFAULT_KS", "ranking_metrics", "metric_names"]

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
