"""The ranking rules every consumer shares, as plain Python (no TensorFlow): the unknown score,
the rank of a target that is not a candidate, and the repeated-target rule's choices.

Kept TensorFlow-free so that clients of the export's signature contract and the command line can
read them without loading TensorFlow; the arithmetic that applies them is
:mod:`sasrec_tf.ranking.kernel`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sasrec_tf.choices import REPEATED_TARGETS

__all__ = ["UNKNOWN_SCORE", "NOT_A_CANDIDATE", "REPEATED_TARGETS", "check_repeated_targets", "check_cold_score_offset",
           "popularity_scores"]

# The score of what is not a candidate (padding, an excluded history item, an unknown id): the
# lowest float32, -3.4028235e38. It sorts last like -inf but stays finite, because TF Serving's REST
# API writes JSON, which cannot carry -inf.
UNKNOWN_SCORE = -3.4028234663852886e38

# The rank of a target that is not among the candidates (a repeated target removed with the
# history, repeated_targets="miss"): past any cut-off, and 1 / rank is ~5e-10. Fits int32.
NOT_A_CANDIDATE = 2**31 - 1


def check_repeated_targets(repeated_targets: str) -> str:
    """``repeated_targets`` if it is one of :data:`REPEATED_TARGETS`, else a ``ValueError``.

    ``"miss"``: a target already in the history is excluded with the rest of the history and
    counts as a miss (rank :data:`NOT_A_CANDIDATE`), as what the served model can return;
    ``"drop"``: that user is left out (rank 0); ``"rank"``: the target stays a candidate.
    """
    if repeated_targets not in REPEATED_TARGETS:
        raise ValueError(f"repeated_targets must be one of {REPEATED_TARGETS}, got {repeated_targets!r}")
    return repeated_targets


def check_cold_score_offset(offset: Any, name: str = "cold_score_offset") -> float:
    """``offset`` as a float if it is a finite number >= 0 (how much lower cold items score:
    ``SASRec.item_score_bias``), else a ``ValueError`` naming ``name`` (e.g. a command-line flag)."""
    value = float(offset)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {offset!r}")
    return value


def popularity_scores(item_counts: Any, num_items: int) -> np.ndarray:
    """``[N + 1]`` float32 scores of the popularity fallback (a history with no known item).

    The training interaction counts when given, else dense-id order (``N + 1 - id``:
    ``ItemVocabulary.from_interactions`` numbers items by descending count, so this is popularity in
    the whole log). The export's signatures and :class:`sasrec_tf.Recommender` share it.

    Raises:
      ValueError: ``item_counts`` of another shape than ``[num_items + 1]``.
    """
    if item_counts is None:
        return np.concatenate([[0.0], np.arange(num_items, 0, -1, dtype=np.float64)]).astype(np.float32)
    popularity = np.asarray(item_counts, dtype=np.float64)
    if popularity.shape != (num_items + 1,):
        raise ValueError(f"item_counts must have shape ({num_items + 1},), got {popularity.shape}")
    return popularity.astype(np.float32)
