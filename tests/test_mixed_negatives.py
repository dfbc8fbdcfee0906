"""Mixed negatives (``loss="mixed_softmax"``): in-batch positives plus ``k`` sampled items shared by
the batch, by hand with and without log-q, accidental hits masked, and in the model."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRec, SASRecConfig, losses, objectives
from sasrec_tf._compat import keras
from sasrec_tf.data import training_dataset
from sasrec_tf.item_frequency import ItemFrequency
from sasrec_tf.testing.models import small_sasrec


def _by_hand(queries, table, positive_ids, negative_ids, log_q=None, negative_log_q=None):
    """Each query's softmax over every other row's positive (same-item rows removed, its own kept)
    and the sampled items (copies of its own positive removed), logits less their log q."""
    queries, table = np.asarray(queries, np.float64), np.asarray(table, np.float64)
    log_q = np.zeros(len(table)) if log_q is None else np.asarray(log_q, np.float64)
    negative_log_q = log_q[negative_ids] if negative_log_q is None else np.asarray(negative_log_q, np.float64)
    losses_ = []
    for i, q in enumerate(queries):
        own = q @ table[positive_ids[i]] - log_q[positive_ids[i]]
        candidates = [q @ table[p] - log_q[p] for j, p in enumerate(positive_ids) if j == i or p != positive_ids[i]]
        candidates += [q @ table[n] - nq for n, nq in zip(negative_ids, negative_log_q) if n != positive_ids[i]]
        losses_.append(np.log(np.exp(candidates).sum()) - own)
    return np.mean(losses_)


TABLE = np.array([[0.0, 0.0], [1.0, 0.5], [0.0, 1.0], [2.0, 0.0], [-1.0, 1.0], [0.5, 0.5], [1.0, -1.0]], np.float32)
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
POSITIVES = np.array([3, 2, 3])  # rows 0 and 2 share their positive: not each other's negative
NEGATIVES = np.array([3, 6])  # 3 is rows 0 and 2's positive (an accidental hit there), row 1's negative


def _mixed(log_q=None, negative_log_q=None, negatives=NEGATIVES):
    positive_log_q = None if log_q is None else tf.constant(log_q[POSITIVES], tf.float32)
    if negative_log_q is None and log_q is not None:
        negative_log_q = log_q[negatives]
    return losses.mixed_softmax_crossentropy(
        tf.constant(QUERIES), tf.constant(TABLE[POSITIVES]), tf.constant(POSITIVES), tf.constant(TABLE[negatives]),
        tf.constant(negatives), positive_log_q,
        None if negative_log_q is None else tf.constant(negative_log_q, tf.float32)).numpy()


def test_mixed_softmax_equals_the_hand_computation():
    # Row 0: own 2; other candidates: row 1's item 2 (0), sampled 6 (1); sampled 3 is its own: masked.
    row0 = np.log(np.exp(2.0) + np.exp(0.0) + np.exp(1.0)) - 2.0
    # Row 1: own 1; rows 0, 2's item 3 twice (0, 0), sampled 3 (0) and 6 (-1).
    row1 = np.log(np.exp(1.0) + 3 * np.exp(0.0) + np.exp(-1.0)) - 1.0
    # Row 2: own 2; item 2 (1), sampled 6 (0).
    row2 = np.log(np.exp(2.0) + np.exp(1.0) + np.exp(0.0)) - 2.0
    expected = np.mean([row0, row1, row2])
    assert _by_hand(QUERIES, TABLE, POSITIVES, NEGATIVES) == pytest.approx(expected, rel=1e-12)
    assert _mixed() == pytest.approx(expected, rel=1e-6)


def test_log_q_correction_subtracts_each_candidates_own_log_q():
    log_q = np.log(np.array([1e-9, 0.1, 0.02, 0.8, 0.02, 0.02, 0.04]))  # in-batch: by popularity
    sampled_log_q = np.log([0.2, 0.5])  # the sampler's probabilities of items 3 and 6, not their in-batch ones
    expected = _by_hand(QUERIES, TABLE, POSITIVES, NEGATIVES, log_q, sampled_log_q)
    assert _mixed(log_q, sampled_log_q) == pytest.approx(expected, rel=1e-6)
    assert abs(expected - _by_hand(QUERIES, TABLE, POSITIVES, NEGATIVES)) > 0.5  # the correction matters
    assert abs(expected - _by_hand(QUERIES, TABLE, POSITIVES, NEGATIVES, log_q)) > 0.1  # and is the sampler's


def test_a_sampled_copy_of_the_positive_is_masked_and_only_for_its_own_rows():
    without_three = _by_hand(QUERIES, TABLE, POSITIVES, np.array([6]))
    with_three = _mixed()
    # Rows 0 and 2 see the same candidates either way; row 1 gains the sampled 3 as a negative.
    row1_gain = (np.log(np.exp(1.0) + 3 * np.exp(0.0) + np.exp(-1.0)) - np.log(np.exp(1.0) + 2 + np.exp(-1.0))) / 3
    assert with_three == pytest.approx(without_three + row1_gain, rel=1e-6)
    # Every sampled item a copy of its row's positive: the in-batch softmax remains.
    only_hits = losses.mixed_softmax_crossentropy(
        tf.constant(QUERIES[[0, 2]]), tf.constant(TABLE[[3, 3]]), tf.constant([3, 3]), tf.constant(TABLE[[3, 3]]),
        tf.constant([3, 3])).numpy()
    assert only_hits == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------------- the objective
NUM_ITEMS, D = 9, 4


def _batch(table, step=None):
    rng = np.random.default_rng(3)
    table = tf.constant(table)
    return objectives.TrainingBatch(
        hidden=tf.constant(rng.normal(size=(2, 3, D)), tf.float32),
        positives=tf.constant([[0, 2, 5], [0, 0, 2]]),
        negatives=tf.constant([[[9, 9], [4, 6], [8, 1]], [[1, 1], [2, 2], [3, 4]]]),
        item_embeddings=lambda ids: tf.gather(table, ids),
        score_items=lambda queries, ids: tf.einsum("...d,...kd->...k", queries, tf.gather(table, ids)),
        item_matrix=lambda: table, num_items=NUM_ITEMS, step=step)


@pytest.mark.parametrize("logq", [False, True])
def test_the_objective_shares_the_first_targets_draws_across_the_batch(logq):
    table = np.random.default_rng(4).normal(size=(NUM_ITEMS + 1, D)).astype(np.float32)
    batch = _batch(table)
    frequency = None
    log_q = None
    if logq:
        frequency = ItemFrequency(tf.Variable(tf.ones(NUM_ITEMS + 1)), seed=1, counting=False)
        frequency.set_counts(np.arange(NUM_ITEMS + 1, dtype=np.float32))
        log_q = frequency.log_sampling_probabilities().numpy()
    config = SASRecConfig(loss="mixed_softmax", num_negatives=2, logq_correction=logq)
    loss, accuracy = objectives.get("mixed_softmax").compute(batch, config, frequency)
    mask = batch.positives.numpy() != 0
    queries, targets = batch.hidden.numpy()[mask], batch.positives.numpy()[mask]
    shared = np.array([4, 6])  # the first target position's uniform draws
    uniform_log_q = np.full(2, -np.log(NUM_ITEMS)) if logq else None
    expected = _by_hand(queries, table, targets, shared, log_q, uniform_log_q)
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= accuracy.numpy() <= 1.0


def test_popularity_draws_are_shared_and_corrected_by_their_probability():
    table = np.random.default_rng(4).normal(size=(NUM_ITEMS + 1, D)).astype(np.float32)
    frequency = ItemFrequency(tf.Variable(tf.ones(NUM_ITEMS + 1)), seed=1, counting=False)
    frequency.set_counts(np.arange(NUM_ITEMS + 1, dtype=np.float32) ** 2)
    step = tf.constant(3, tf.int64)
    config = SASRecConfig(loss="mixed_softmax", num_negatives=5, negative_sampling="popularity",
                          logq_correction=True)
    loss, _ = objectives.get("mixed_softmax").compute(_batch(table, step), config, frequency)
    batch = _batch(table, step)
    mask = batch.positives.numpy() != 0
    queries, targets = batch.hidden.numpy()[mask], batch.positives.numpy()[mask]
    shared = frequency.sample_negatives(tf.constant(targets), 5, step).numpy()[0]
    log_q = frequency.log_sampling_probabilities().numpy()
    assert loss.numpy() == pytest.approx(_by_hand(queries, table, targets, shared, log_q), rel=1e-5)


def test_mixed_softmax_is_validated_like_the_other_sampled_softmax():
    SASRecConfig(loss="mixed_softmax", num_negatives=64, negative_sampling="popularity", logq_correction=True)
    assert objectives.get("mixed_softmax").samples_negatives and objectives.get("mixed_softmax").logq_correction


# ----------------------------------------------------------------------------------- in the model
BATCH = {"item_ids": tf.constant([[0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 7, 3]]),
         "positives": tf.constant([[0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 3, 9]])}


def _model_batch(fill):
    negatives = np.full((2, 6, 3), fill, np.int32)
    negatives[0, 3] = [11, 12, 4]  # the first target position's draws; 4 is that position's positive
    return {**BATCH, "negatives": tf.constant(negatives)}


@pytest.mark.parametrize("logq", [False, True])
def test_the_models_loss_reads_only_the_first_targets_draws_and_equals_the_hand_computation(logq):
    model = small_sasrec(30, max_len=6, hidden_units=8, num_blocks=1, dropout_rate=0.0, loss="mixed_softmax",
                         num_negatives=3, logq_correction=logq)
    loss, _ = model._forward_loss(_model_batch(13), training=False)
    other, _ = model._forward_loss(_model_batch(29), training=False)  # what padded positions hold
    assert loss.numpy() == pytest.approx(other.numpy(), rel=1e-6)
    hidden = model(BATCH["item_ids"], training=False).numpy()
    mask = BATCH["positives"].numpy() != 0
    log_q = model.item_frequency.log_sampling_probabilities().numpy() if logq else None
    negative_log_q = np.full(3, -np.log(30)) if logq else None
    expected = _by_hand(hidden[mask], model.item_embeddings().numpy(), BATCH["positives"].numpy()[mask],
                        np.array([11, 12, 4]), log_q, negative_log_q)
    assert loss.numpy() == pytest.approx(expected, rel=1e-4)


def test_mixed_softmax_trains_with_fit_and_reloads(tmp_path):
    config = SASRecConfig(max_len=8, hidden_units=16, num_blocks=1, batch_size=4, loss="mixed_softmax",
                          num_negatives=4, logq_correction=True)
    keras.utils.set_random_seed(1)
    model = SASRec(config, num_items=NUM_ITEMS).build_weights()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=n) for n in (3, 5, 9, 12, 2, 7, 4, 6)]
    data = training_dataset(sequences, NUM_ITEMS, config.max_len, config.batch_size, num_negatives=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(data, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.config == model.config
    batch = tf.constant([[0, 0, 3, 1, 4, 1, 2, 2]])
    np.testing.assert_array_equal(restored(batch, training=False).numpy(), model(batch, training=False).numpy())
