"""Leave-one-out evaluation of next-item models: the protocols and everything that measures them.

- :mod:`~sasrec_tf.evaluation.protocols` — :func:`evaluate_full` (the honest one),
  :func:`evaluate_sampled` (the paper's 100 negatives), :func:`evaluate` over a split's stage;
- :mod:`~sasrec_tf.evaluation.rankings` — :class:`FullRanking` / :class:`SampledRanking`, the same
  ranks for a fixed set of users, recomputable as the model trains; :class:`JointRanking`, both
  from one encoder pass;
- :mod:`~sasrec_tf.evaluation.negatives` — the sampled protocol's negatives;
- :mod:`~sasrec_tf.evaluation.metrics` — HR / NDCG / MRR from ranks, and as streaming Keras metrics;
- :mod:`~sasrec_tf.evaluation.keras_validation` — the same metrics in ``compile`` / ``evaluate`` /
  ``fit(validation_data=...)``;
- :mod:`~sasrec_tf.evaluation.callback` — validation inside ``fit`` (:class:`RankingMetricsCallback`);
- :mod:`~sasrec_tf.evaluation.baselines` — the most-popular and content (attribute similarity)
  baselines, ranked the same way.

Every ranking goes through the one kernel, :mod:`sasrec_tf.ranking`.
"""

from sasrec_tf.evaluation.baselines import ContentBaseline, MostPopular
from sasrec_tf.evaluation.callback import RankingMetricsCallback
from sasrec_tf.evaluation.cold_offsets import DEFAULT_COLD_OFFSETS, cold_offset_table, format_cold_offset_table
from sasrec_tf.evaluation.inputs import EvaluationInputs, prepare_inputs
from sasrec_tf.evaluation.keras_validation import QueryModel, validation_dataset
from sasrec_tf.evaluation.metrics import DEFAULT_KS, MRR, NDCG, HitRate, full_ranks, metric_names, ranking_metrics
from sasrec_tf.evaluation.negatives import sample_evaluation_negatives, sample_negatives
from sasrec_tf.evaluation.protocols import (PROTOCOLS, REPEATED_TARGETS, STAGES, evaluate, evaluate_full,
                                            evaluate_sampled, metrics_of_ranks, repeated_targets_mask,
                                            target_group_metrics, training_item_counts)
from sasrec_tf.evaluation.rankings import FullRanking, JointRanking, SampledRanking
from sasrec_tf.ranking.rules import NOT_A_CANDIDATE

__all__ = [
    "evaluate", "evaluate_full", "evaluate_sampled", "FullRanking", "SampledRanking", "JointRanking", "EvaluationInputs",
    "prepare_inputs", "sample_evaluation_negatives", "sample_negatives", "metrics_of_ranks",
    "repeated_targets_mask", "training_item_counts", "ranking_metrics", "metric_names", "full_ranks", "HitRate",
    "NDCG", "MRR", "DEFAULT_KS", "NOT_A_CANDIDATE", "REPEATED_TARGETS", "STAGES", "PROTOCOLS",
    "RankingMetricsCallback", "QueryModel", "validation_dataset", "MostPopular", "ContentBaseline",
    "target_group_metrics", "cold_offset_table", "format_cold_offset_table", "DEFAULT_COLD_OFFSETS",
]
