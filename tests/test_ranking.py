"""The one ranking kernel: pessimistic ties, history exclusion, the repeated-target rule, exact top-k,
and every consumer (protocols, Keras metrics, batch recommendations) getting the same answer from it."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.ranking import NOT_A_CANDIDATE, UNKNOWN_SCORE, Ranker, kernel


def table(rows):
    """A score table [B, N + 1] from per-row scores of items 1..N (column 0 = padding)."""
    rows = np.asarray(rows, np.float32)
    return tf.constant(np.concatenate([np.full((len(rows), 1), 99.0, np.float32), rows], axis=1))


def test_ties_and_nan_count_against_the_target_and_padding_never_does():
    scores = table([[1.0, 1.0, 0.5, 2.0],  # target item 1 ties item 2, item 4 beats it
                    [np.nan, 3.0, 1.0, 0.0],  # target item 3: a NaN and item 2 beat it
                    [5.0, 5.0, 5.0, 5.0]])  # a constant model: the worst rank
    ranks = kernel.target_ranks(scores, tf.constant([1, 3, 2]))
    np.testing.assert_array_equal(ranks.numpy(), [3, 3, 4])  # padding's 99 never counted


def test_history_exclusions_are_unique_without_padding_or_target():
    pairs, repeated = kernel.history_exclusions(tf.constant([[0, 3, 3, 2], [1, 0, 4, 1]]), tf.constant([2, 5]))
    assert sorted(map(tuple, pairs.numpy().tolist())) == [(0, 3), (1, 1), (1, 4)]
    np.testing.assert_array_equal(repeated.numpy(), [True, False])


@pytest.mark.parametrize("rule, expected", [("miss", NOT_A_CANDIDATE), ("drop", 0), ("rank", 2)])
def test_repeated_target_rule(rule, expected):
    scores = table([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    histories = tf.constant([[3, 2], [3, 0]])  # row 0: target 2 is in its history; item 3 excluded
    pairs, repeated = kernel.history_exclusions(histories, tf.constant([2, 1]))
    ranks = kernel.target_ranks(scores, tf.constant([2, 1]), pairs, repeated, rule).numpy()
    assert ranks[0] == (1 if rule == "rank" else expected)  # item 3 (above it) excluded: rank 1 if ranked
    assert ranks[1] == 1
    with pytest.raises(ValueError, match="repeated_targets"):
        kernel.target_ranks(scores, tf.constant([2, 1]), pairs, repeated, "keep")


def test_exclusion_removes_exactly_the_history_items_that_beat_the_target():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 40)).astype(np.float32)
    targets = rng.integers(1, 41, size=6)
    histories = rng.integers(0, 41, size=(6, 9))
    histories[histories == targets[:, None]] = 0
    pairs, repeated = kernel.history_exclusions(tf.constant(histories), tf.constant(targets))
    ranks = kernel.target_ranks(table(scores), tf.constant(targets), pairs, repeated).numpy()
    for row in range(6):
        candidates = np.setdiff1d(np.arange(1, 41), histories[row][histories[row] > 0])
        target_score = scores[row, targets[row] - 1]
        assert ranks[row] == 1 + np.sum(scores[row, candidates - 1] > target_score)


def test_exact_top_k_equals_tf_top_k_with_ties_on_wide_rows():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(3, 20_000)), 1).astype(np.float32)  # many ties
    values, indices = kernel.exact_top_k(tf.constant(scores), 12)
    expected_values, expected_indices = tf.math.top_k(scores, 12)
    np.testing.assert_array_equal(values.numpy(), expected_values.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


def test_top_k_items_never_returns_padding_or_excluded_items():
    scores = table([[4.0, 3.0, 2.0, 1.0]])
    values, ids = kernel.top_k_items(scores, 4, exclude=tf.constant([[1, 0, 3]]))
    assert ids.numpy()[0, :2].tolist() == [2, 4]
    assert (values.numpy()[0, 2:] == np.float32(UNKNOWN_SCORE)).all()  # fewer than k eligible


class Lookup:
    """A model whose query is the embedding of the last input item (scores chosen by the test)."""

    uses_user_embedding = False
    left_padding_invariant = True

    def __init__(self, num_items=30, d=4, seed=0):
        rng = np.random.default_rng(seed)
        self.num_items, self.max_len = num_items, 5
        self.matrix = tf.constant(rng.normal(size=(num_items + 1, d)).astype(np.float32))

    def query_embeddings(self, item_ids, user_ids=None):
        return tf.gather(self.matrix, tf.cast(item_ids[:, -1], tf.int32))

    def item_embeddings(self):
        return self.matrix


def test_every_consumer_ranks_through_the_same_kernel():
    from sasrec_tf.data.pipeline import pad_sequences
    from sasrec_tf.evaluation import evaluate_full, full_ranks

    model = Lookup()
    rng = np.random.default_rng(3)
    histories = [rng.integers(1, 31, size=rng.integers(1, 9)) for _ in range(25)]
    targets = np.array([h[0] if i % 5 == 0 else rng.integers(1, 31) for i, h in enumerate(histories)])  # some repeated
    _, offline = evaluate_full(model, histories, targets, batch_size=7, return_ranks=True)
    item_ids = tf.constant(pad_sequences(histories, model.max_len))
    dense = tf.constant(pad_sequences(histories, max(map(len, histories))))
    keras_ranks = full_ranks(model.query_embeddings(item_ids), model.matrix, tf.constant(targets), dense)
    ranker_ranks = Ranker(model).ranks(item_ids, tf.constant(targets), dense)
    np.testing.assert_array_equal(offline, keras_ranks.numpy())
    np.testing.assert_array_equal(offline, ranker_ranks.numpy())
    assert (offline == NOT_A_CANDIDATE).sum() >= 5


def test_the_rules_import_without_tensorflow():
    code = ("import sys; from sasrec_tf.ranking.rules import UNKNOWN_SCORE, NOT_A_CANDIDATE; "
            "import sasrec_tf.ranking; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
