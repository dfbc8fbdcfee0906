"""Ranking metrics from ranks: exact values on hand-computed cases and input validation."""

import math

import numpy as np
import pytest

from sasrec_tf.metrics import DEFAULT_KS, metric_names, ranking_metrics


def test_hand_computed_ranks_1_3_11_give_exact_hr_ndcg_mrr():
    metrics = ranking_metrics(np.array([1, 3, 11]))

    assert metrics["hr@1"] == pytest.approx(1 / 3)
    assert metrics["ndcg@1"] == pytest.approx(1 / 3)
    assert metrics["hr@5"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 3)  # (1 + 0.5) / 3
    assert metrics["hr@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx(0.5)
    assert metrics["hr@20"] == pytest.approx(1.0)
    assert metrics["ndcg@20"] == pytest.approx((1 + 0.5 + 1 / math.log2(12)) / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)  # full MRR: rank 11 counts


def test_keys_are_lowercase_at_k_pairs_then_mrr_and_values_are_python_floats():
    metrics = ranking_metrics([2, 7], ks=DEFAULT_KS)

    assert list(metrics) == ["hr@1", "ndcg@1", "hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"]
    assert list(metrics) == metric_names(DEFAULT_KS)
    assert all(type(value) is float for value in metrics.values())


def test_custom_ks_only_report_those_cutoffs():
    assert list(ranking_metrics([1], ks=(10,))) == ["hr@10", "ndcg@10", "mrr"]


def test_rank_exactly_k_is_a_hit_and_k_plus_one_is_not():
    assert ranking_metrics([10], ks=(10,))["hr@10"] == 1.0
    assert ranking_metrics([11], ks=(10,))["hr@10"] == 0.0
    assert ranking_metrics([11], ks=(10,))["ndcg@10"] == 0.0


def test_accepts_tensors_and_2d_arrays():
    import tensorflow as tf

    expected = ranking_metrics(np.array([1, 3, 11]))
    assert ranking_metrics(tf.constant([1, 3, 11])) == expected
    assert ranking_metrics(np.array([[1, 3], [11, 3]]))["hr@5"] == pytest.approx(0.75)


@pytest.mark.parametrize("ranks", [[], [0, 1], [np.nan]])
def test_empty_or_non_positive_ranks_are_rejected(ranks):
    with pytest.raises(ValueError):
        ranking_metrics(np.array(ranks, dtype=float))


@pytest.mark.parametrize("ks", [(), (0,), (5, -1)])
def test_invalid_cutoffs_are_rejected(ks):
    with pytest.raises(ValueError):
        ranking_metrics([1], ks=ks)
