"""One ranking kernel for every consumer: score every item, exclude each history, rank or top k.

- :mod:`sasrec_tf.ranking.rules` — the shared rules as plain Python (``UNKNOWN_SCORE``,
  ``NOT_A_CANDIDATE``, the repeated-target choices); no TensorFlow.
- :mod:`sasrec_tf.ranking.kernel` — the tensor functions (score table, history exclusions,
  pessimistic ranks, the repeated-target rule, exact top-k).
- :class:`Ranker` — a query model's batches through the kernel.

Names load on first use (PEP 562), so ``from sasrec_tf.ranking.rules import UNKNOWN_SCORE`` does
not import TensorFlow.
"""

from sasrec_tf._lazy import lazy_exports

_EXPORTS = {
    "UNKNOWN_SCORE": "sasrec_tf.ranking.rules",
    "NOT_A_CANDIDATE": "sasrec_tf.ranking.rules",
    "REPEATED_TARGETS": "sasrec_tf.ranking.rules",
    "check_repeated_targets": "sasrec_tf.ranking.rules",
    "check_cold_score_offset": "sasrec_tf.ranking.rules",
    "Ranker": "sasrec_tf.ranking.ranker",
    "score_all": "sasrec_tf.ranking.kernel",
    "beats": "sasrec_tf.ranking.kernel",
    "history_exclusions": "sasrec_tf.ranking.kernel",
    "target_ranks": "sasrec_tf.ranking.kernel",
    "history_excluded_ranks": "sasrec_tf.ranking.kernel",
    "sampled_ranks": "sasrec_tf.ranking.kernel",
    "exclude_items": "sasrec_tf.ranking.kernel",
    "exact_top_k": "sasrec_tf.ranking.kernel",
    "top_k_items": "sasrec_tf.ranking.kernel",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
