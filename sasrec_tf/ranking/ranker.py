"""`Ranker`: a query model's batches ranked through the one kernel (:mod:`sasrec_tf.ranking.kernel`).

The shape of TFRS's ``BruteForce`` / ``query_with_exclusions``, for next-item models: given the
model (anything with ``query_embeddings(item_ids, user_ids=None)`` → ``[B, d]`` and
``item_embeddings()`` → ``[N + 1, d]``, and optionally ``item_score_bias()`` → ``[N + 1]`` or None,
added to every score), a batch of left-padded histories gives every item's
score, the rank of each held-out target (full ranking or among sampled candidates) or the top k,
with each history excluded. Its methods take and return tensors and are meant to run inside a
``tf.function`` the caller traces once (the offline protocols, the validation callback and batch
recommendations each do; the Keras metrics and the export call the kernel on queries they already
have).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from sasrec_tf.ranking import kernel

__all__ = ["Ranker"]

_REQUIRED = ("query_embeddings", "item_embeddings", "max_len", "num_items")


class Ranker:
    """Scores, ranks and top-k of a next-item model's queries, histories excluded.

    Args:
      model: provides ``query_embeddings(item_ids, user_ids=None)``, ``item_embeddings()``,
        ``max_len``, ``num_items`` and optionally ``uses_user_embedding`` (then every call needs
        ``user_ids``). A :class:`~sasrec_tf.SASRec` or :class:`~sasrec_tf.evaluation.MostPopular`.

    Raises:
      TypeError: if ``model`` lacks one of those members.
    """

    def __init__(self, model: Any):
        for name in _REQUIRED:
            if not hasattr(model, name):
                raise TypeError(f"model must provide `{name}` (see sasrec_tf.ranking); got {type(model).__name__}")
        self.model = model
        self.uses_user_embedding = bool(getattr(model, "uses_user_embedding", False))

    @property
    def num_items(self) -> int:
        return int(self.model.num_items)

    @property
    def max_len(self) -> int:
        return int(self.model.max_len)

    def queries(self, item_ids: tf.Tensor, user_ids: tf.Tensor | None = None) -> tf.Tensor:
        """``[B, d]`` next-item queries of left-padded ``item_ids [B, T]`` (``T <= max_len``)."""
        return self.model.query_embeddings(item_ids, user_ids if self.uses_user_embedding else None)

    def item_matrix(self) -> tf.Tensor:
        """``[N + 1, d]`` float32 item matrix, row 0 = padding."""
        return tf.convert_to_tensor(self.model.item_embeddings(), dtype=tf.float32)

    def item_bias(self) -> tf.Tensor | None:
        """``[N + 1]`` float32 added to every item's score (the model's ``item_score_bias()``, e.g.
        the cold items' score offset), or None."""
        bias = getattr(self.model, "item_score_bias", None)
        return None if bias is None else bias()

    def scores(self, item_ids: tf.Tensor, user_ids: tf.Tensor | None = None, item_matrix: tf.Tensor | None = None):
        """``[B, N + 1]`` score table of every item (column = dense id; column 0 is padding).

        ``item_matrix`` (from :meth:`item_matrix`) lets a caller read the weights once per pass.
        """
        matrix = self.item_matrix() if item_matrix is None else item_matrix
        return kernel.score_all(self.queries(item_ids, user_ids), matrix, self.item_bias())

    def ranks(self, item_ids: tf.Tensor, targets: tf.Tensor, histories: tf.Tensor | None = None, *,
              user_ids: tf.Tensor | None = None, repeated_targets: str = "miss",
              item_matrix: tf.Tensor | None = None) -> tf.Tensor:
        """Full-ranking 1-based ranks ``[B]`` int32 of ``targets`` among all items ``1..N``.

        Args:
          item_ids: ``[B, T]`` left-padded model input.
          targets: ``[B]`` held-out items in ``1..N``.
          histories: ``[B, H]`` each row's whole history (0 = padding), excluded from the
            candidates; None excludes nothing.
          user_ids: ``[B]`` for a model with a user embedding.
          repeated_targets: what a target inside its history counts as (``"miss"``, ``"drop"``,
            ``"rank"``); only with ``histories``.
          item_matrix: the item matrix, if the caller already read it.
        """
        return self.query_ranks(self.queries(item_ids, user_ids), targets, histories,
                                repeated_targets=repeated_targets, item_matrix=item_matrix)

    def query_ranks(self, queries: tf.Tensor, targets: tf.Tensor, histories: tf.Tensor | None = None, *,
                    repeated_targets: str = "miss", item_matrix: tf.Tensor | None = None) -> tf.Tensor:
        """:meth:`ranks` of queries ``[B, d]`` already computed (:meth:`queries`), so that one
        encoder pass can serve several protocols (:class:`~sasrec_tf.evaluation.JointRanking`)."""
        matrix = self.item_matrix() if item_matrix is None else item_matrix
        return kernel.history_excluded_ranks(kernel.score_all(queries, matrix, self.item_bias()), targets, histories,
                                             repeated_targets)

    def sampled_ranks(self, item_ids: tf.Tensor, targets: tf.Tensor, negatives: tf.Tensor, *,
                      user_ids: tf.Tensor | None = None, item_matrix: tf.Tensor | None = None) -> tf.Tensor:
        """1-based ranks ``[B]`` int32 of ``targets`` among themselves and ``negatives [B, K]``."""
        return self.query_sampled_ranks(self.queries(item_ids, user_ids), targets, negatives, item_matrix=item_matrix)

    def query_sampled_ranks(self, queries: tf.Tensor, targets: tf.Tensor, negatives: tf.Tensor, *,
                            item_matrix: tf.Tensor | None = None) -> tf.Tensor:
        """:meth:`sampled_ranks` of queries ``[B, d]`` already computed (:meth:`queries`)."""
        matrix = self.item_matrix() if item_matrix is None else item_matrix
        candidates = tf.concat([tf.cast(targets, tf.int32)[:, None], tf.cast(negatives, tf.int32)], axis=1)
        # One contraction for target and negatives, so identical embeddings give identical scores.
        scores = tf.einsum("bd,bkd->bk", queries, tf.gather(matrix, candidates))
        bias = self.item_bias()
        if bias is not None:
            scores += tf.gather(bias, candidates)
        return kernel.sampled_ranks(scores)

    def top_k(self, item_ids: tf.Tensor, k: int, exclude: tf.Tensor | None = None, *,
              user_ids: tf.Tensor | None = None, item_matrix: tf.Tensor | None = None):
        """``(scores [B, k], item_ids [B, k] int32)``: the best items not in ``exclude [B, H]``.

        Entries scoring ``UNKNOWN_SCORE`` are not recommendations (fewer than k eligible items).
        """
        return kernel.top_k_items(self.scores(item_ids, user_ids, item_matrix), k, exclude)
