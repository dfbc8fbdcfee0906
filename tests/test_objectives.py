"""Objectives as tasks over tensors: they compute from a batch's tensors and an item frequency,
without a model; the item frequency is a view over the model's saved ``target_counts``."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRec, SASRecConfig, losses, objectives
from sasrec_tf._compat import keras
from sasrec_tf.item_frequency import ItemFrequency

NUM_ITEMS = 9
D = 4


def _batch(table, *, training=False, step=None):
    rng = np.random.default_rng(3)
    table = tf.constant(table)
    return objectives.TrainingBatch(
        hidden=tf.constant(rng.normal(size=(2, 3, D)), tf.float32),
        positives=tf.constant([[0, 2, 5], [0, 0, 7]]),
        negatives=tf.constant([[[1, 3], [4, 6], [8, 9]], [[1, 1], [2, 2], [3, 4]]]),
        item_embeddings=lambda ids: tf.gather(table, ids),
        score_items=lambda queries, ids: tf.einsum("...d,...kd->...k", queries, tf.gather(table, ids)),
        item_matrix=lambda: table,
        num_items=NUM_ITEMS, training=training, step=step)


def _table():
    return np.random.default_rng(4).normal(size=(NUM_ITEMS + 1, D)).astype(np.float32)


def test_an_objective_computes_from_tensors_alone():
    table = _table()
    batch = _batch(table)
    config = SASRecConfig(loss="full_softmax")
    loss, accuracy = objectives.get("full_softmax").compute(batch, config, None)
    hidden, positives = batch.hidden.numpy().astype(np.float64), batch.positives.numpy()
    queries, targets = hidden[positives != 0], positives[positives != 0]
    logits = queries @ table[1:].T.astype(np.float64)  # items 1..N; padding takes no part
    expected = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(len(targets)), targets - 1])
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= accuracy.numpy() <= 1.0


def test_log_q_correction_reads_the_item_frequency_it_is_given():
    table = _table()
    counts = tf.Variable(tf.ones(NUM_ITEMS + 1))
    frequency = ItemFrequency(counts, seed=1)
    frequency.set_counts(np.arange(NUM_ITEMS + 1, dtype=np.float32))
    config = SASRecConfig(loss="inbatch_softmax", logq_correction=True)
    loss, _ = objectives.get("inbatch_softmax").compute(_batch(table), config, frequency)
    batch = _batch(table)
    mask = batch.positives.numpy() != 0
    queries, targets = tf.constant(batch.hidden.numpy()[mask]), tf.constant(batch.positives.numpy()[mask])
    probability = tf.exp(tf.gather(frequency.log_sampling_probabilities(), targets))
    expected = losses.inbatch_softmax_crossentropy(queries, tf.gather(table, targets), targets, probability)
    assert loss.numpy() == expected.numpy()


def test_a_training_batch_counts_its_targets_and_draws_popularity_negatives_by_step():
    counts = tf.Variable(tf.ones(NUM_ITEMS + 1))
    frequency = ItemFrequency(counts, seed=1)
    config = SASRecConfig(loss="bce", num_negatives=2, negative_sampling="popularity")
    step = tf.Variable(0, dtype=tf.int64)
    objectives.get("bce").compute(_batch(_table(), training=True, step=step), config, frequency)
    expected = np.ones(NUM_ITEMS + 1)
    expected[[2, 5, 7]] += 1
    np.testing.assert_array_equal(counts.numpy(), expected)
    objectives.get("bce").compute(_batch(_table(), training=False), config, frequency)  # not counted
    np.testing.assert_array_equal(counts.numpy(), expected)
    targets = tf.range(1, 200)
    first = frequency.sample_negatives(targets, 3, step).numpy()
    np.testing.assert_array_equal(frequency.sample_negatives(targets, 3, step).numpy(), first)  # seeded
    step.assign(1)
    assert (frequency.sample_negatives(targets, 3, step).numpy() != first).any()  # a new step draws anew
    assert (first >= 1).all() and (first <= NUM_ITEMS).all()


def test_the_models_item_frequency_is_a_view_over_its_saved_target_counts(tmp_path):
    config = SASRecConfig(max_len=6, hidden_units=8, num_blocks=1, loss="sampled_softmax", num_negatives=2,
                          negative_sampling="popularity")
    model = SASRec(config, num_items=NUM_ITEMS).build_weights()
    assert model.item_frequency.counts is model.target_counts
    assert [w.name for w in model.weights if w is model.target_counts] == ["target_counts:0"]  # tracked once
    model.set_item_counts(np.arange(NUM_ITEMS + 1))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(restored.item_frequency.counts.numpy(), np.arange(NUM_ITEMS + 1) + 1.0)
    assert SASRec(SASRecConfig(max_len=6), num_items=NUM_ITEMS).item_frequency is None
