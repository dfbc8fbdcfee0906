"""The validation callback; moved to :mod:`sasrec_tf.evaluation.callback`, importable from here as before."""

from sasrec_tf.evaluation.callback import RankingMetricsCallback

__all__ = ["RankingMetricsCallback"]
