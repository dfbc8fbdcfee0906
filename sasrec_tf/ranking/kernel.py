"""The one ranking kernel: score every item, exclude each history, rank targets or take the top k.

Every consumer goes through these functions: the offline protocols
(:mod:`sasrec_tf.evaluation`), the streaming Keras metrics, the validation callback, the export's
recommendation signatures and batch recommendations (:mod:`sasrec_tf.recommend`). So a rule
written here holds everywhere at once:

- **Score tables** are ``[B, N + 1]``: column ``j`` is dense item id ``j``; column 0 is the padding
  id, never a candidate (:func:`score_all` is ``queries · Mᵀ`` over every row of the item matrix,
  plus a per-item bias where the model has one: the cold items' score offset).
- **History exclusion**: the items of each row's history are removed from the candidates
  (:func:`history_exclusions` gives them as unique ``(row, item)`` pairs, without padding and
  without the row's target, plus whether the target itself was in the history).
- **Pessimistic ties**: ``rank = 1 + #(candidates scoring > target) + #(other candidates scoring
  == target)``, and a NaN score counts as beating the target, so the rank does not depend on
  where the target sits among the candidates and a constant model gets the worst rank.
- **Repeated targets** (a target already in the history; see
  :func:`~sasrec_tf.ranking.rules.check_repeated_targets`): ``"miss"`` → rank
  :data:`~sasrec_tf.ranking.rules.NOT_A_CANDIDATE`, ``"drop"`` → rank 0 (left out), ``"rank"`` →
  ranked as a candidate.
- **Top k** is exact, with ``tf.math.top_k``'s ties (the lower id wins), and excluded items score
  :data:`~sasrec_tf.ranking.rules.UNKNOWN_SCORE`; a caller keeps only scores above it (a history
  covering almost the catalogue leaves fewer than k eligible items).

All functions take and return tensors and run eagerly or inside a ``tf.function``.
"""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf.ranking.rules import NOT_A_CANDIDATE, UNKNOWN_SCORE, check_repeated_targets

__all__ = ["score_all", "beats", "history_exclusions", "target_ranks", "history_excluded_ranks", "sampled_ranks",
           "exclude_items",
           "exact_top_k", "top_k_items"]

_KEY_STRIDE = 2**31  # (row, item) -> one int64 key: item ids and rows both fit int32


def score_all(queries: tf.Tensor, item_matrix: tf.Tensor, item_bias: tf.Tensor | None = None) -> tf.Tensor:
    """Scores ``[B, N + 1]`` of every item for each query: ``queries [B, d] · item_matrix [N + 1, d]ᵀ``,
    plus ``item_bias [N + 1]`` (each item's score offset, e.g. the cold items' exposure offset:
    ``SASRec.item_score_bias``) when given.

    Column ``j`` scores dense item ``j``; column 0 (padding) is scored too and excluded by every
    function below.
    """
    scores = tf.matmul(queries, item_matrix, transpose_b=True)
    return scores if item_bias is None else scores + tf.cast(item_bias, scores.dtype)[tf.newaxis, :]


def beats(scores: tf.Tensor, target_scores: tf.Tensor) -> tf.Tensor:
    """Whether each score counts against the true item: ties and NaN do (pessimistic ranking).

    Spelled out rather than ``not (score < target)``, which Grappler rewrites to ``>=`` (NaN-unsafe).
    """
    return (scores >= target_scores) | tf.math.is_nan(scores) | tf.math.is_nan(target_scores)


def _count_beating(scores: tf.Tensor, target_scores: tf.Tensor) -> tf.Tensor:
    """``[B]`` int32: how many of the items ``1..N`` of ``scores [B, N + 1]`` :func:`beats` the
    row's ``target_scores [B, 1]``.

    Counted as ``N - #(items scoring < target)``: the same integer (a NaN on either side is never
    ``<``, and beats), with one comparison per table entry instead of ``beats``' three and no copy
    of the table without its padding column, whose comparison is taken back out instead (about
    a fifth of a Beauty-shaped validation pass's CPU time saved: ``benchmarks/validation_pass.py``).
    """
    below = tf.reduce_sum(tf.cast(scores < target_scores, tf.int32), axis=1)
    below -= tf.cast(scores[:, 0] < target_scores[:, 0], tf.int32)  # the padding column is no candidate
    return tf.shape(scores)[1] - 1 - below


def history_exclusions(histories: tf.Tensor, targets: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``(row, item)`` pairs a history excludes, and whether each row's target is in its history.

    Args:
      histories: ``[B, H]`` int dense item ids of each row's history, 0 = padding (anywhere).
      targets: ``[B]`` each row's target, or None.

    Returns:
      ``(pairs, repeated)``: ``pairs`` ``[E, 2]`` int32, unique, never padding and never the row's
      target (a repeated target is decided by the repeated-target rule, not excluded here);
      ``repeated`` ``[B]`` bool, whether the target occurs in the history (all False without
      targets).
    """
    histories = tf.cast(histories, tf.int64)
    rows = tf.broadcast_to(tf.range(tf.shape(histories, out_type=tf.int64)[0])[:, tf.newaxis], tf.shape(histories))
    keep = histories > 0
    if targets is None:
        repeated = tf.zeros(tf.shape(histories)[:1], tf.bool)
    else:
        is_target = keep & (histories == tf.cast(targets, tf.int64)[:, tf.newaxis])
        repeated = tf.reduce_any(is_target, axis=1)
        keep &= ~is_target
    keys, _ = tf.unique(tf.boolean_mask(rows * _KEY_STRIDE + histories, keep))
    pairs = tf.cast(tf.stack([keys // _KEY_STRIDE, keys % _KEY_STRIDE], axis=1), tf.int32)
    return pairs, repeated


def target_ranks(scores: tf.Tensor, targets: tf.Tensor, excluded: tf.Tensor | None = None,
                 repeated: tf.Tensor | None = None, repeated_targets: str = "miss") -> tf.Tensor:
    """1-based rank ``[B]`` int32 of each target among the items ``1..N`` of a score table.

    Args:
      scores: ``[B, N + 1]`` score table (column = dense id; column 0, padding, is no candidate).
      targets: ``[B]`` true items in ``1..N``.
      excluded: ``[E, 2]`` unique ``(row, item)`` pairs removed from the candidates, never a row's
        target (:func:`history_exclusions`); None removes nothing.
      repeated: ``[B]`` bool, rows whose target is in their history; None: no row.
      repeated_targets: the rule for those rows: ``"miss"``, ``"drop"`` or ``"rank"``.

    Returns:
      Ranks with pessimistic ties (see the module doc); ``NOT_A_CANDIDATE`` / 0 for repeated
      targets under ``"miss"`` / ``"drop"``.
    """
    check_repeated_targets(repeated_targets)
    targets = tf.cast(targets, tf.int32)
    target_scores = tf.gather(scores, targets, batch_dims=1)[:, tf.newaxis]
    ranks = _count_beating(scores, target_scores)  # the target beats itself: the 1 of the rank
    if excluded is not None:
        # Excluded items that beat the target are taken back out of the count.
        excluded = tf.cast(excluded, tf.int32)
        excluded_rows = excluded[:, 0]
        excluded_beats = beats(tf.gather_nd(scores, excluded), tf.gather(target_scores[:, 0], excluded_rows))
        ranks -= tf.math.unsorted_segment_sum(tf.cast(excluded_beats, tf.int32), excluded_rows,
                                              num_segments=tf.shape(targets)[0])
    if repeated is None or repeated_targets == "rank":
        return ranks
    return tf.where(repeated, 0 if repeated_targets == "drop" else NOT_A_CANDIDATE, ranks)


def history_excluded_ranks(scores: tf.Tensor, targets: tf.Tensor, histories: tf.Tensor | None = None,
                           repeated_targets: str = "miss") -> tf.Tensor:
    """:func:`target_ranks` with ``histories [B, H]`` (0 = padding) excluded and the repeated-target
    rule applied (:func:`history_exclusions`); ``histories=None`` excludes nothing."""
    if histories is None:
        check_repeated_targets(repeated_targets)
        return target_ranks(scores, targets)
    excluded, repeated = history_exclusions(histories, targets)
    return target_ranks(scores, targets, excluded, repeated, repeated_targets)


def sampled_ranks(candidate_scores: tf.Tensor) -> tf.Tensor:
    """1-based rank ``[B]`` int32 of the target among ``1 + K`` candidates (the sampled protocol).

    Args:
      candidate_scores: ``[B, 1 + K]``, the target's score first, then its K negatives'. Compute
        them in one contraction so that identical embeddings give identical scores.
    """
    return 1 + tf.reduce_sum(tf.cast(beats(candidate_scores[:, 1:], candidate_scores[:, :1]), tf.int32), axis=1)


def exclude_items(scores: tf.Tensor, item_ids: tf.Tensor | None = None) -> tf.Tensor:
    """The score table with padding and each row's ``item_ids`` set to ``UNKNOWN_SCORE``.

    Args:
      scores: ``[B, N + 1]`` float32 score table.
      item_ids: ``[B, H]`` int dense ids to exclude per row (0 = padding, ignored; repeats are
        fine), e.g. the row's whole history; None excludes only the padding column.
    """
    rows = tf.range(tf.shape(scores, out_type=tf.int64)[0])
    indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)  # the padding column of every row
    if item_ids is not None:
        item_ids = tf.cast(item_ids, tf.int64)
        pairs = tf.stack([tf.broadcast_to(rows[:, tf.newaxis], tf.shape(item_ids)), item_ids], axis=-1)
        indices = tf.concat([indices, tf.reshape(pairs, [-1, 2])], axis=0)
    updates = tf.fill(tf.shape(indices)[:1], tf.constant(UNKNOWN_SCORE, scores.dtype))
    return tf.tensor_scatter_nd_update(scores, indices, updates)


def exact_top_k(scores: tf.Tensor, k: int, block: int = 256, min_columns: int = 8192):
    """``tf.math.top_k(scores, k)`` — the same values and indices, ties included — for wide rows.

    ``top_k`` over ``[B, N]`` costs about ``B * N`` heap pushes on one core per row; for a large
    catalogue (or batch) most of that time goes to items that cannot win. Instead: the maximum
    of each block of ``block`` columns (a vectorised reduction), the top-k blocks by maximum (every
    element of the true top-k lies in one of them), then ``top_k`` over those ``k * block``
    candidates kept in column order, so ties resolve to the lower index exactly as in ``top_k``.
    Rows narrower than ``min_columns`` use ``top_k`` directly.

    Returns:
      ``(values [B, k], indices [B, k] int32)``, best first.
    """
    if scores.shape[-1] is not None and scores.shape[-1] < max(min_columns, k * block):
        return tf.math.top_k(scores, k=k)
    batch, columns = tf.shape(scores)[0], tf.shape(scores)[1]
    padded = tf.pad(scores, [[0, 0], [0, (-columns) % block]], constant_values=UNKNOWN_SCORE)
    blocks = tf.reshape(padded, [batch, -1, block])
    _, best_blocks = tf.math.top_k(tf.reduce_max(blocks, axis=2), k=k)
    best_blocks = tf.sort(best_blocks, axis=1)  # column order: ties go to the lower index
    candidates = tf.reshape(tf.gather(blocks, best_blocks, batch_dims=1), [batch, k * block])
    values, positions = tf.math.top_k(candidates, k=k)
    indices = tf.gather(best_blocks, positions // block, batch_dims=1) * block + positions % block
    return values, indices


def top_k_items(scores: tf.Tensor, k: int, exclude: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``k`` best items of each row of a score table, padding and ``exclude`` left out.

    Args:
      scores: ``[B, N + 1]`` score table.
      k: items per row, at most ``N``.
      exclude: ``[B, H]`` dense ids per row to leave out (e.g. the history; 0 = padding), or None.

    Returns:
      ``(scores [B, k], item_ids [B, k] int32)``, best first; an entry whose score is
      ``UNKNOWN_SCORE`` is not a recommendation (fewer than k eligible items).
    """
    return exact_top_k(exclude_items(scores, exclude), k)
