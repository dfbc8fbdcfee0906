"""Leave-one-out protocols: rank rules (ties, padding, history), negative sampling, batching."""

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.evaluation import (
    evaluate,
    evaluate_full,
    evaluate_sampled,
    repeated_targets_mask,
    sample_negatives,
    training_item_counts,
)
from sasrec_tf.metrics import NOT_A_CANDIDATE, ranking_metrics


class FakeModel:
    """The evaluation interface with fixed embeddings.

    The query is row ``query_table[key]`` where ``key`` is the user id (user-embedding models) or
    the last input item, so tests choose scores exactly.
    """

    def __init__(self, item_table, query_table=None, max_len=4, uses_user_embedding=False):
        item_table = np.asarray(item_table, dtype=np.float32)
        if item_table.ndim == 1:
            item_table = item_table[:, None]
        if query_table is None:
            query_table = np.ones((len(item_table), item_table.shape[1]), np.float32)
        self._items = tf.constant(item_table)
        self._queries = tf.constant(np.asarray(query_table, dtype=np.float32))
        self.max_len = max_len
        self.num_items = len(item_table) - 1
        self.uses_user_embedding = uses_user_embedding

    def item_embeddings(self):
        return self._items

    def query_embeddings(self, item_ids, user_ids=None):
        key = user_ids if self.uses_user_embedding else item_ids[:, -1]
        return tf.gather(self._queries, key)


class RecordingModel(FakeModel):
    """A :class:`FakeModel` that records the padded item ids it is given (eagerly, via py_function)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen_item_ids = []

    def query_embeddings(self, item_ids, user_ids=None):
        def record(ids):
            self.seen_item_ids.append(ids.numpy())
            return ids

        item_ids = tf.py_function(record, [item_ids], Tout=item_ids.dtype)
        return super().query_embeddings(item_ids, user_ids)


# Items 1..5 score 0.5, 0.9, 0.1, 0.7, 0.3 for every query; padding row 0 scores highest of all.
HAND_SCORES = [100.0, 0.5, 0.9, 0.1, 0.7, 0.3]


def full_ranks(model, inputs, targets, **kwargs):
    return evaluate_full(model, inputs, np.asarray(targets), return_ranks=True, **kwargs)[1]


def random_model(num_items=40, dim=4, max_len=5, seed=0, uses_user_embedding=False, num_users=0):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(num_items + 1, dim))
    rows = (num_users + 1) if uses_user_embedding else (num_items + 1)
    queries = rng.normal(size=(rows, dim))
    return FakeModel(items, queries, max_len=max_len, uses_user_embedding=uses_user_embedding)


def random_users(num_users, num_items, seed=0, max_history=12):
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(1, num_items + 1, size=n) for n in rng.integers(1, max_history, size=num_users)]
    targets = rng.integers(1, num_items + 1, size=num_users)
    return inputs, targets


# ------------------------------------------------------------------------------------- full ranking


def test_full_rank_counts_items_scoring_above_target_without_exclusion():
    model = FakeModel(HAND_SCORES)
    # Target 1 (0.5): items 2 (0.9) and 4 (0.7) score higher; padding (100) is not a candidate.
    assert full_ranks(model, [np.array([2, 5])], [1], exclude_history=False).tolist() == [3]


def test_history_exclusion_removes_exactly_the_history_items():
    model = FakeModel(HAND_SCORES)
    # History {2, 5} leaves candidates {1, 3, 4}: only item 4 beats the target.
    assert full_ranks(model, [np.array([2, 5])], [1], exclude_history=True).tolist() == [2]
    # Excluding items that score below the target changes nothing.
    assert full_ranks(model, [np.array([3, 5])], [1], exclude_history=True).tolist() == [3]


def test_a_target_already_in_the_history_is_a_miss_by_default_as_the_served_model_excludes_it():
    model = FakeModel(HAND_SCORES)
    # Target 1 is in history {1, 2}: the served top-k (history excluded) can never return it.
    assert full_ranks(model, [np.array([1, 2])], [1]).tolist() == [NOT_A_CANDIDATE]  # past any cut-off
    metrics = evaluate_full(model, [np.array([1, 2]), np.array([2])], np.array([1, 1]), ks=(1, 5))
    # User 2 ranks target 1 behind item 4 only (rank 2); user 1 is a miss at every cut-off.
    assert metrics["hr@5"] == 0.5 and metrics["ndcg@5"] == pytest.approx(0.5 / np.log2(3))
    assert metrics["hr@1"] == 0.0 and metrics["mrr"] == pytest.approx(1 / 4)


def test_repeated_targets_drop_leaves_those_users_out_and_rank_keeps_the_target_a_candidate():
    model = FakeModel(HAND_SCORES)
    inputs, targets = [np.array([1, 2]), np.array([2]), np.array([1, 1, 2])], np.array([1, 1, 1])
    assert full_ranks(model, inputs, targets, repeated_targets="drop").tolist() == [0, 2, 0]
    assert evaluate_full(model, inputs, targets, repeated_targets="drop", ks=(1,)) == ranking_metrics([2], (1,))
    # "rank": the re-consumed target competes with the non-history items ({1, 3, 4, 5}): item 4 beats it.
    assert full_ranks(model, inputs, targets, repeated_targets="rank").tolist() == [2, 2, 2]
    # Without history exclusion nothing is removed, so every target is ranked, whatever the rule.
    for rule in ("miss", "drop", "rank"):
        assert full_ranks(model, inputs, targets, exclude_history=False, repeated_targets=rule).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="every target was left out"):
        evaluate_full(model, inputs[:1], targets[:1], repeated_targets="drop")
    with pytest.raises(ValueError, match="repeated_targets must be one of"):
        evaluate_full(model, inputs, targets, repeated_targets="skip")


def test_repeated_targets_mask_marks_the_users_whose_target_is_in_their_history():
    inputs = [np.array([1, 2]), np.array([2]), np.array([], np.int64), np.array([3, 1, 3])]
    assert repeated_targets_mask(inputs, [1, 1, 1, 3]).tolist() == [True, False, False, True]


def test_history_older_than_max_len_is_still_excluded():
    model = RecordingModel(HAND_SCORES, max_len=2)
    # The model reads [4, 5] but the whole history {2, 4, 3, 5} is excluded: the target is alone.
    assert full_ranks(model, [np.array([2, 3, 4, 5])], [1]).tolist() == [1]
    np.testing.assert_array_equal(model.seen_item_ids[-1], [[4, 5]])


def test_model_receives_most_recent_items_left_padded():
    model = RecordingModel(HAND_SCORES, max_len=4)
    full_ranks(model, [np.array([2, 3])], [1])
    np.testing.assert_array_equal(model.seen_item_ids[-1], [[0, 0, 2, 3]])


def test_a_left_padding_invariant_model_gets_batches_cut_to_their_longest_history_in_length_order():
    model = RecordingModel(HAND_SCORES, max_len=4)
    model.left_padding_invariant = True
    ranks = full_ranks(model, [np.array([2, 3]), np.array([1]), np.array([3, 1, 2])], [1, 2, 3], batch_size=2)
    # Sorted by length: [1] and [2, 3] share a batch two wide; [3, 1, 2] comes alone, three wide.
    assert [ids.tolist() for ids in model.seen_item_ids[-2:]] == [[[0, 1], [2, 3]], [[3, 1, 2], [0, 0, 0]]]
    plain = RecordingModel(HAND_SCORES, max_len=4)
    expected = full_ranks(plain, [np.array([2, 3]), np.array([1]), np.array([3, 1, 2])], [1, 2, 3], batch_size=2)
    np.testing.assert_array_equal(ranks, expected)  # back in input order


def test_sasrec_ranks_the_same_with_batches_cut_to_their_longest_history():
    from sasrec_tf import SASRecConfig
    from sasrec_tf.training import build_model

    rng = np.random.default_rng(0)
    model = build_model(SASRecConfig(max_len=12, hidden_units=16, num_blocks=2, seed=3), 40)
    histories = [rng.integers(1, 41, size=n) for n in rng.integers(1, 20, size=50)]
    targets = rng.integers(1, 41, size=50)
    cut = full_ranks(model, histories, targets, batch_size=8)
    sampled_cut = evaluate_sampled(model, histories, targets, num_negatives=10, batch_size=8, return_ranks=True)[1]
    model.left_padding_invariant = False  # the instance attribute shadows the class's
    np.testing.assert_array_equal(cut, full_ranks(model, histories, targets, batch_size=8))
    np.testing.assert_array_equal(
        sampled_cut, evaluate_sampled(model, histories, targets, num_negatives=10, batch_size=8, return_ranks=True)[1])


def test_all_equal_scores_rank_true_item_last_among_candidates():
    num_items = 7
    model = FakeModel(np.ones(num_items + 1))  # padding ties too, and must not be counted
    assert full_ranks(model, [np.array([3])], [3], exclude_history=False).tolist() == [num_items]
    # History {2, 5} (target 3 not in it) removes two candidates.
    assert full_ranks(model, [np.array([2, 5])], [3], exclude_history=True).tolist() == [num_items - 2]


def test_padding_id_is_never_counted_even_when_it_scores_highest():
    model = FakeModel([1e9, 3.0, 2.0, 1.0])
    assert full_ranks(model, [np.array([3])], [1], exclude_history=False).tolist() == [1]
    assert full_ranks(model, [np.array([0, 0, 3])], [2], exclude_history=True).tolist() == [2]


def test_nan_scores_count_against_the_true_item():
    model = FakeModel([0.0, 1.0, np.nan, 0.5])
    assert full_ranks(model, [np.array([3])], [1], exclude_history=False).tolist() == [2]
    # A NaN target score loses to every candidate.
    assert full_ranks(model, [np.array([3])], [2], exclude_history=False).tolist() == [3]


def test_full_rank_does_not_depend_on_item_id_permutation():
    num_items, num_users = 30, 25
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=num_items + 1).astype(float)  # many ties on purpose
    model = FakeModel(scores)
    inputs, targets = random_users(num_users, num_items, seed=2)
    expected = full_ranks(model, inputs, targets)

    perm = np.concatenate([[0], rng.permutation(num_items) + 1])  # old id -> new id, 0 fixed
    permuted_scores = np.empty_like(scores)
    permuted_scores[perm] = scores
    permuted = FakeModel(permuted_scores)
    ranks = full_ranks(permuted, [perm[h] for h in inputs], perm[targets])

    np.testing.assert_array_equal(ranks, expected)


def test_full_ranks_match_a_brute_force_reference():
    model = random_model(num_items=40, seed=3)
    inputs, targets = random_users(30, 40, seed=4)
    ranks = full_ranks(model, inputs, targets)
    ranked = full_ranks(model, inputs, targets, repeated_targets="rank")

    items = model.item_embeddings().numpy()
    repeats = 0
    for history, target, rank, rank_if_ranked in zip(inputs, targets, ranks, ranked):
        query = model._queries.numpy()[history[-1]]
        scores = items @ query
        candidates = set(range(1, 41)) - (set(history.tolist()) - {target})
        expected = 1 + sum(scores[j] >= scores[target] for j in candidates if j != target)
        assert rank_if_ranked == expected
        repeats += target in history
        assert rank == (NOT_A_CANDIDATE if target in history else expected)
    assert 0 < repeats < len(targets)  # both cases occur


def test_batch_size_does_not_change_full_ranks():
    model = random_model(num_items=40, seed=5)
    inputs, targets = random_users(10, 40, seed=6)
    np.testing.assert_array_equal(
        full_ranks(model, inputs, targets, batch_size=3), full_ranks(model, inputs, targets, batch_size=1024)
    )


def test_user_embedding_models_get_user_ids_and_require_them():
    # User u's query selects item u: user 1 -> target 1 ranks first; user 2 -> target 1 ranks second.
    items = np.eye(4)[:, 1:]  # row i = e_i for i >= 1, row 0 = 0
    queries = np.array([[0, 0, 0], [1.0, 0, 0], [0.2, 1.0, 0]])
    model = FakeModel(items, queries, uses_user_embedding=True)
    inputs = [np.array([3]), np.array([3])]
    assert full_ranks(model, inputs, [1, 1], user_ids=np.array([1, 2])).tolist() == [1, 2]
    with pytest.raises(ValueError, match="user_ids"):
        evaluate_full(model, inputs, np.array([1, 1]))


def test_metrics_are_ranking_metrics_of_the_ranks():
    model = random_model(num_items=40, seed=7)
    inputs, targets = random_users(15, 40, seed=8)
    metrics, ranks = evaluate_full(model, inputs, targets, ks=(1, 10), return_ranks=True)
    assert metrics == ranking_metrics(ranks, ks=(1, 10))
    assert evaluate_full(model, inputs, targets, ks=(1, 10)) == metrics


@pytest.mark.parametrize("targets", [[0], [6]])
def test_targets_outside_item_range_are_rejected(targets):
    with pytest.raises(ValueError, match="targets"):
        evaluate_full(FakeModel(HAND_SCORES), [np.array([1])], np.array(targets))


def test_mismatched_inputs_and_targets_are_rejected():
    with pytest.raises(ValueError):
        evaluate_full(FakeModel(HAND_SCORES), [np.array([1]), np.array([2])], np.array([1]))


# ------------------------------------------------------------------------------------- sampling


def test_sampled_negatives_avoid_target_history_padding_and_duplicates():
    num_items, k = 60, 20
    inputs, targets = random_users(200, num_items, seed=9, max_history=35)
    negatives = sample_negatives(inputs, targets, num_items, k, seed=0)

    assert negatives.shape == (200, k)
    assert negatives.min() >= 1 and negatives.max() <= num_items
    for history, target, row in zip(inputs, targets, negatives):
        assert len(set(row.tolist())) == k
        assert target not in row
        assert not set(row.tolist()) & set(history.tolist())


def test_sampling_succeeds_when_eligible_items_barely_suffice():
    num_items, k = 30, 10
    history = np.arange(1, 20)  # excludes 1..19; the target 30 too: eligible items are 20..29
    for sampling, counts in [("uniform", None), ("popularity", np.arange(num_items + 1))]:
        negatives = sample_negatives([history] * 5, [30] * 5, num_items, k, sampling=sampling, item_counts=counts)
        for row in negatives:
            assert sorted(row.tolist()) == list(range(20, 30))


def test_sampling_rejects_users_with_too_few_eligible_items():
    with pytest.raises(ValueError, match="eligible"):
        sample_negatives([np.arange(1, 25)], [30], 30, 10)


def test_same_seed_gives_same_negatives_and_other_seeds_differ():
    inputs, targets = random_users(50, 100, seed=10)
    first = sample_negatives(inputs, targets, 100, 10, seed=123)
    np.testing.assert_array_equal(first, sample_negatives(inputs, targets, 100, 10, seed=123))
    assert not np.array_equal(first, sample_negatives(inputs, targets, 100, 10, seed=124))


def test_popularity_sampling_follows_counts_and_skips_zero_counts():
    counts = np.array([50, 0, 1, 2, 3, 100])  # padding count ignored; item 1 never drawn
    n = 20_000
    negatives = sample_negatives([np.zeros(0, np.int64)] * n, [5] * n, 5, 1, sampling="popularity", item_counts=counts)
    frequencies = np.bincount(negatives[:, 0], minlength=6) / n
    assert frequencies[0] == 0 and frequencies[1] == 0 and frequencies[5] == 0
    # Target 5 is excluded, so items 2, 3, 4 are drawn with probability 1/6, 2/6, 3/6 (sd < 0.004).
    np.testing.assert_allclose(frequencies[2:5], [1 / 6, 2 / 6, 3 / 6], atol=0.02)


def test_uniform_sampling_covers_eligible_items_evenly():
    n = 20_000
    negatives = sample_negatives([np.array([1])] * n, [2] * n, 6, 1, seed=1)
    frequencies = np.bincount(negatives[:, 0], minlength=7) / n
    np.testing.assert_allclose(frequencies[3:], [0.25] * 4, atol=0.02)
    assert frequencies[:3].sum() == 0


def test_training_item_counts_counts_training_interactions():
    counts = training_item_counts([np.array([1, 2, 2]), np.array([3, 2])], 4)
    assert counts.tolist() == [0, 1, 3, 1, 0]


# ------------------------------------------------------------------------------------- sampled protocol


def test_sampled_rank_is_one_plus_negatives_scoring_at_least_the_target():
    num_items, k = 50, 8
    model = random_model(num_items=num_items, seed=11)
    inputs, targets = random_users(20, num_items, seed=12)
    _, ranks = evaluate_sampled(model, inputs, targets, num_negatives=k, seed=5, return_ranks=True)

    negatives = sample_negatives(inputs, targets, num_items, k, seed=5)  # same seed, same negatives
    items, queries = model.item_embeddings().numpy(), model._queries.numpy()
    for history, target, row, rank in zip(inputs, targets, negatives, ranks):
        scores = items @ queries[history[-1]]
        assert rank == 1 + np.sum(scores[row] >= scores[target])


def test_sampled_all_equal_scores_rank_true_item_last():
    model = FakeModel(np.ones(31))
    inputs, targets = random_users(6, 30, seed=13, max_history=5)
    _, ranks = evaluate_sampled(model, inputs, targets, num_negatives=10, return_ranks=True)
    assert ranks.tolist() == [11] * 6


def test_sampled_is_reproducible_per_seed():
    model = random_model(num_items=200, seed=14)
    inputs, targets = random_users(40, 200, seed=15)
    first = evaluate_sampled(model, inputs, targets, num_negatives=20, seed=3, return_ranks=True)[1]
    again = evaluate_sampled(model, inputs, targets, num_negatives=20, seed=3, return_ranks=True)[1]
    other = evaluate_sampled(model, inputs, targets, num_negatives=20, seed=4, return_ranks=True)[1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_max_users_evaluates_a_seeded_subset():
    model = random_model(num_items=80, seed=16)
    inputs, targets = random_users(30, 80, seed=17)
    metrics, ranks = evaluate_sampled(model, inputs, targets, num_negatives=10, max_users=7, seed=2, return_ranks=True)
    assert np.count_nonzero(ranks) == 7  # users left out get rank 0
    assert metrics == ranking_metrics(ranks[ranks > 0])
    again = evaluate_sampled(model, inputs, targets, num_negatives=10, max_users=7, seed=2, return_ranks=True)[1]
    np.testing.assert_array_equal(ranks, again)


def test_batch_size_does_not_change_sampled_ranks():
    model = random_model(num_items=80, seed=18)
    inputs, targets = random_users(10, 80, seed=19)
    small = evaluate_sampled(model, inputs, targets, num_negatives=15, batch_size=3, return_ranks=True)[1]
    large = evaluate_sampled(model, inputs, targets, num_negatives=15, batch_size=1024, return_ranks=True)[1]
    np.testing.assert_array_equal(small, large)


# ------------------------------------------------------------------------------------- evaluate(split)


def make_split(num_users=12, num_items=40, seed=20):
    inputs, targets = random_users(num_users, num_items, seed=seed)
    test_inputs = [np.append(h, t) for h, t in zip(inputs, targets)]
    test_targets = np.random.default_rng(seed + 1).integers(1, num_items + 1, size=num_users)
    return SimpleNamespace(
        train=inputs,
        valid_inputs=inputs,
        valid_targets=targets,
        valid_users=np.arange(num_users),
        test_inputs=test_inputs,
        test_targets=test_targets,
        test_users=np.arange(num_users),
        num_items=num_items,
    )


def test_evaluate_split_runs_each_protocol_on_the_chosen_stage():
    model = random_model(num_items=40, seed=21)
    split = make_split()
    results = evaluate(model, split, stage="test", num_negatives=10, ks=(5,))
    assert set(results) == {"full", "sampled"}
    assert results["full"] == evaluate_full(model, split.test_inputs, split.test_targets, ks=(5,))
    assert results["sampled"] == evaluate_sampled(
        model, split.test_inputs, split.test_targets, num_negatives=10, ks=(5,)
    )
    only_full = evaluate(model, split, protocols=("full",), ks=(5,))
    assert list(only_full) == ["full"]


def test_evaluate_split_passes_user_ids_shifted_by_one_and_training_popularity():
    model = random_model(num_items=40, seed=22, uses_user_embedding=True, num_users=12)
    split = make_split()
    results = evaluate(model, split, sampling="popularity", num_negatives=5, ks=(5,))
    counts = training_item_counts(split.train, 40)
    user_ids = split.valid_users + 1
    assert results["full"] == evaluate_full(model, split.valid_inputs, split.valid_targets, user_ids=user_ids, ks=(5,))
    assert results["sampled"] == evaluate_sampled(
        model, split.valid_inputs, split.valid_targets, user_ids=user_ids, num_negatives=5,
        sampling="popularity", item_counts=counts, ks=(5,),
    )


# ------------------------------------------------------------------------------------- real model


def test_evaluation_runs_on_an_untrained_sasrec():
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.model import SASRec

    num_items = 50
    model = SASRec(SASRecConfig(max_len=6, hidden_units=8, num_blocks=1, dropout_rate=0.2), num_items=num_items)
    inputs, targets = random_users(9, num_items, seed=23)

    metrics, ranks = evaluate_full(model, inputs, targets, batch_size=4, ks=(10,), return_ranks=True)
    assert set(metrics) == {"hr@10", "ndcg@10", "mrr"}
    ranked = ranks[ranks != NOT_A_CANDIDATE]  # targets repeated from the history are misses
    assert ranked.size and ranked.min() >= 1 and ranked.max() <= num_items
    # Inference mode: no dropout, so batching and repetition do not change anything.
    np.testing.assert_array_equal(ranks, evaluate_full(model, inputs, targets, batch_size=64, return_ranks=True)[1])
    # The interface's query equals the model's own last-position output.
    padded = np.zeros((1, 6), np.int32)
    padded[0, -len(inputs[0][-6:]):] = inputs[0][-6:]
    items = model.item_embeddings().numpy()
    scores = items[1:] @ model(padded, training=False).numpy()[0, -1]
    candidates = np.setdiff1d(np.arange(1, num_items + 1), np.setdiff1d(inputs[0], [targets[0]]))
    assert ranks[0] == np.sum(scores[candidates - 1] >= scores[targets[0] - 1])

    sampled, sampled_ranks = evaluate_sampled(model, inputs, targets, num_negatives=10, return_ranks=True)
    assert sampled_ranks.min() >= 1 and sampled_ranks.max() <= 11


def test_evaluate_runs_on_a_real_split_and_sasrec_with_user_embedding():
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data.sequences import build_sequences, leave_one_out
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.model import SASRec

    log = generate_interactions(num_users=30, num_items=100, mean_length=10, max_length=25, seed=0)
    data = build_sequences(log)
    split = leave_one_out(data)
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, use_user_embedding=True)
    model = SASRec(config, num_items=data.num_items, num_users=data.num_users)

    results = evaluate(model, split, stage="test", sampling="popularity", num_negatives=10, ks=(10,))

    assert set(results) == {"full", "sampled"}
    for metrics in results.values():
        assert set(metrics) == {"hr@10", "ndcg@10", "mrr"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_progress_reports_every_batch_and_ends_at_the_total():
    from sasrec_tf.evaluation import FullRanking

    class Model:
        uses_user_embedding = False
        num_items, max_len = 9, 3

        def query_embeddings(self, item_ids, user_ids=None):
            return tf.ones((tf.shape(item_ids)[0], 2))

        def item_embeddings(self):
            return tf.reshape(tf.range(20, dtype=tf.float32), (10, 2))

    calls = []
    histories = [np.array([1, 2]), np.array([3]), np.array([4, 5, 6]), np.array([7]), np.array([8])]
    ranks = FullRanking(Model(), histories, [9, 9, 9, 9, 9], batch_size=2).ranks(lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert (ranks == 1).all()  # item 9 scores highest; history excluded
    seen = []
    evaluate_sampled(Model(), histories, [9] * 5, num_negatives=2, batch_size=4,
                     progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 5), (5, 5)]
