"""Ranking metrics (HR@k, NDCG@k, MRR) and the streaming Keras metrics; moved to
:mod:`sasrec_tf.evaluation.metrics`, importable from here as before."""

from sasrec_tf.evaluation.metrics import (DEFAULT_KS, MRR, NDCG, NOT_A_CANDIDATE, REPEATED_TARGETS, HitRate,
                                          check_repeated_targets, full_ranks, metric_names, ranking_metrics)

__all__ = ["DEFAULT_KS", "NOT_A_CANDIDATE", "REPEATED_TARGETS", "ranking_metrics", "metric_names", "full_ranks",
           "check_repeated_targets", "HitRate", "NDCG", "MRR"]
