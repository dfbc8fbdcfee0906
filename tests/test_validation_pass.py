"""One encoder pass for both leave-one-out protocols (issue 31, item 3).

``evaluate`` with the full and the sampled protocol (and the validation callback with both) must
give exactly the ranks and metrics of ``evaluate_full`` and ``evaluate_sampled`` run alone, while
encoding each batch of histories once instead of twice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.evaluation import (JointRanking, RankingMetricsCallback, evaluate, evaluate_full, evaluate_sampled,
                                  target_group_metrics, training_item_counts)
from sasrec_tf.ranking import kernel
from sasrec_tf.testing.models import small_sasrec

NUM_NEGATIVES = 10
BATCH = 8  # several batches of users, the last one padded


@pytest.fixture(scope="module")
def split():
    log = generate_interactions(num_users=37, num_items=60, mean_length=9, max_length=30, seed=3)
    return leave_one_out(build_sequences(log))


@pytest.fixture(scope="module")
def models(split):
    num_items, num_users = split.num_items, len(split.valid_targets)
    return {
        False: small_sasrec(num_items, init_seed=1, max_len=8, hidden_units=8, num_blocks=1),
        True: small_sasrec(num_items, num_users=num_users, init_seed=2, max_len=8, hidden_units=8, num_blocks=1,
                           use_user_embedding=True),
    }


class CountingModel:
    """A model's evaluation interface whose query encoder counts, in the graph, every time it runs
    (``calls``) and the rows it encodes (``rows``)."""

    def __init__(self, model):
        self.model = model
        self.max_len, self.num_items = model.max_len, model.num_items
        self.uses_user_embedding = model.uses_user_embedding
        self.left_padding_invariant = model.left_padding_invariant
        self.calls = tf.Variable(0, dtype=tf.int64)
        self.rows = tf.Variable(0, dtype=tf.int64)

    def item_embeddings(self):
        return self.model.item_embeddings()

    def query_embeddings(self, item_ids, user_ids=None):
        self.calls.assign_add(1)
        self.rows.assign_add(tf.cast(tf.shape(item_ids)[0], tf.int64))
        return self.model.query_embeddings(item_ids, user_ids)

    def counts(self) -> tuple[int, int]:
        return int(self.calls.numpy()), int(self.rows.numpy())


@pytest.mark.parametrize("exclude_history, max_users, user_embedding, sampling", [
    (True, None, False, "uniform"),
    (False, 13, False, "uniform"),
    (True, 13, True, "popularity"),
])
def test_one_pass_ranks_exactly_as_the_two_protocols_run_alone(split, models, exclude_history, max_users,
                                                               user_embedding, sampling):
    model = models[user_embedding]
    inputs, targets = split.valid_inputs, split.valid_targets
    user_ids = np.asarray(split.valid_users) + 1
    counts = training_item_counts(split.train, split.num_items) if sampling == "popularity" else None
    common = dict(user_ids=user_ids, batch_size=BATCH, ks=(1, 5, 10), return_ranks=True)
    full, full_ranks = evaluate_full(model, inputs, targets, exclude_history=exclude_history, **common)
    sampled, sampled_ranks = evaluate_sampled(model, inputs, targets, num_negatives=NUM_NEGATIVES, sampling=sampling,
                                              item_counts=counts, max_users=max_users, seed=5, **common)

    joint_full, joint_sampled = JointRanking(
        model, inputs, targets, user_ids=user_ids, exclude_history=exclude_history, num_negatives=NUM_NEGATIVES,
        sampling=sampling, item_counts=counts, sampled_max_users=max_users, seed=5, batch_size=BATCH).ranks()
    np.testing.assert_array_equal(joint_full, full_ranks)
    np.testing.assert_array_equal(joint_sampled, sampled_ranks)  # 0 for the users max_users leaves out
    if max_users is not None:
        assert (sampled_ranks > 0).sum() == max_users < len(targets)

    cold_items = np.arange(1, split.num_items + 1, 3)  # every third item counts as cold
    results = evaluate(model, split, exclude_history=exclude_history, num_negatives=NUM_NEGATIVES, sampling=sampling,
                       max_users=max_users, seed=5, batch_size=BATCH, ks=(1, 5, 10), cold_items=cold_items)
    groups = target_group_metrics(full_ranks, targets, cold_items, (1, 5, 10))
    assert results == {"full": full, "sampled": sampled, **groups}
    assert groups["cold"]["targets"] > 0 and groups["warm"]["targets"] > 0


def test_evaluate_encodes_each_batch_once_for_both_protocols(split, models):
    model = CountingModel(models[False])
    users = len(split.valid_targets)
    batches = math.ceil(users / BATCH)
    evaluate(model, split, num_negatives=NUM_NEGATIVES, max_users=13, batch_size=BATCH)
    assert model.counts() == (batches, batches * BATCH)  # one pass over every user, the last batch padded

    # What the protocols cost run one after the other: the full pass, then the sampled one's.
    model.calls.assign(0), model.rows.assign(0)
    evaluate_full(model, split.valid_inputs, split.valid_targets, batch_size=BATCH)
    evaluate_sampled(model, split.valid_inputs, split.valid_targets, num_negatives=NUM_NEGATIVES, max_users=13,
                     batch_size=BATCH)
    assert model.counts() == (batches + 2, (batches + 2) * BATCH)  # 13 sampled users: 2 more batches


def test_progress_reports_the_full_pass_per_batch_and_the_sampled_protocol_when_it_ends(split, models):
    seen = []
    evaluate(models[False], split, num_negatives=NUM_NEGATIVES, max_users=13, batch_size=BATCH,
             progress=lambda protocol, done, total: seen.append((protocol, done, total)))
    users = len(split.valid_targets)
    full = [("full", min(stop, users), users) for stop in range(BATCH, users + BATCH, BATCH)]
    assert seen == full + [("sampled", 13, 13)]


def test_joint_ranking_refuses_sampled_users_outside_the_full_ones(split, models):
    with pytest.raises(ValueError, match="full_max_users"):
        JointRanking(models[False], split.valid_inputs, split.valid_targets, num_negatives=NUM_NEGATIVES,
                     full_max_users=10, sampled_max_users=None)
    with pytest.raises(TypeError, match="seed"):
        JointRanking(models[False], split.valid_inputs, split.valid_targets, seed=np.random.default_rng(0))


def callback(split, **kwargs):
    return RankingMetricsCallback(split.valid_inputs, split.valid_targets, user_ids=np.asarray(split.valid_users) + 1,
                                  ks=(1, 10), num_negatives=NUM_NEGATIVES, seed=4, batch_size=BATCH, verbose=0,
                                  **kwargs)


@pytest.mark.parametrize("max_users", [None, 13])
def test_the_callback_validates_both_protocols_from_one_encoder_pass(split, models, max_users):
    model = CountingModel(models[True])
    alone = {}
    for protocol in ("full", "sampled"):
        single = callback(split, protocol=protocol, max_users=max_users)
        single.set_model(model)
        alone[protocol] = single.compute_metrics()
    model.calls.assign(0), model.rows.assign(0)
    both = callback(split, protocol=("full", "sampled"), max_users=max_users)
    both.set_model(model)

    metrics = both.compute_metrics()
    # The full protocol's keys as with protocol="full"; the sampled one's with "sampled_" (same users, negatives).
    assert metrics == {**alone["full"], **{f"val_sampled_{k[4:]}": v for k, v in alone["sampled"].items()}}
    users = len(split.valid_targets) if max_users is None else max_users
    assert model.counts()[0] == math.ceil(users / BATCH)  # one encoder call per batch of users
    assert both.compute_metrics() == metrics  # the same users and negatives every epoch


def test_the_callback_refuses_unknown_or_repeated_protocols(split):
    for protocol in [(), ("full", "full"), ("full", "approximate")]:
        with pytest.raises(ValueError, match="protocol"):
            callback(split, protocol=protocol)


def test_the_rank_count_keeps_pessimistic_ties_nan_and_the_padding_column_rules():
    inf, nan = np.inf, np.nan
    scores = tf.constant([  # column 0 is padding, never a candidate, whether it scores below, above or NaN
        [-5.0, 1.0, 2.0, 1.0, -inf],  # target 1: item 2 beats it, item 3 ties it -> 3
        [nan, inf, 0.0, nan, 0.5],  # target 4: +inf and a NaN beat it -> 3
        [0.0, 1.0, 2.0, nan, 3.0],  # target 3 scores NaN: every candidate beats it -> 4
        [-inf, -inf, -inf, 0.0, 1.0],  # target 2 at -inf: item 1 ties it, 3 and 4 beat it -> 4
        [7.0, 0.0, 9.0, 1.0, 2.0],  # target 4: item 2 beats it -> 2
    ], tf.float32)
    ranks = kernel.target_ranks(scores, tf.constant([1, 4, 3, 2, 4]))
    np.testing.assert_array_equal(ranks.numpy(), [3, 3, 4, 4, 2])

    # On a large random table with ties and NaNs: 1 + #candidates that beat the target (kernel.beats).
    rng = np.random.default_rng(0)
    table = rng.integers(0, 20, size=(64, 301)).astype(np.float32)  # many ties
    table[rng.random(table.shape) < 0.02] = nan
    targets = rng.integers(1, 301, size=64)
    beaten = kernel.beats(tf.constant(table[:, 1:]), tf.constant(table[np.arange(64), targets][:, None]))
    expected = tf.reduce_sum(tf.cast(beaten, tf.int32), axis=1).numpy()  # the target counts itself: the 1 +
    np.testing.assert_array_equal(kernel.target_ranks(tf.constant(table), tf.constant(targets)).numpy(), expected)
