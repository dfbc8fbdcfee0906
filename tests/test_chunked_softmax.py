"""Chunked full softmax (``softmax_chunk_size``): the same loss and gradients as the materialised
``[M, N + 1]`` logits, by hand on a 3-item catalogue and against the materialised form, in the
model's training step too, and no tensor of the step larger than ``[M, chunk]`` besides the table."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRecConfig, losses
from sasrec_tf.testing.models import small_sasrec


def _loss_and_grads(fn, queries, table, labels):
    queries, table = tf.constant(queries), tf.Variable(table)
    with tf.GradientTape() as tape:
        tape.watch(queries)
        loss = fn(queries, table, tf.constant(labels))
    return [loss.numpy()] + [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [queries, table])]


def _materialised(queries, table, labels, mask=None):
    return losses.full_softmax_crossentropy(tf.matmul(queries, table, transpose_b=True), labels, mask)


def test_three_item_case_by_hand_for_every_chunk_size():
    queries = np.array([[1.0, 0.0], [0.5, -1.0]])
    table = np.array([[9.0, 9.0],  # the padding row: never a candidate, gets no gradient
                      [1.0, 2.0], [0.0, 1.0], [-1.0, 0.5]])
    labels = np.array([1, 3])
    logits = queries @ table[1:].T  # [[1, 0, -1], [-1.5, -1, -1]]
    np.testing.assert_allclose(logits, [[1.0, 0.0, -1.0], [-1.5, -1.0, -1.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected_loss = np.mean(-np.log(softmax[[0, 1], labels - 1]))
    one_hot = np.eye(3)[labels - 1]
    grad_logits = (softmax - one_hot) / 2  # the mean over M = 2 rows
    expected_grad_queries = grad_logits @ table[1:]
    expected_grad_table = np.vstack([np.zeros((1, 2)), grad_logits.T @ queries])
    for chunk in (1, 2, 3, 4, 100):
        loss, grad_queries, grad_table = _loss_and_grads(
            lambda q, t, y: losses.chunked_full_softmax_crossentropy(q, t, y, chunk), queries, table, labels)
        assert loss == pytest.approx(expected_loss, abs=1e-12)
        np.testing.assert_allclose(grad_queries, expected_grad_queries, atol=1e-12)
        np.testing.assert_allclose(grad_table, expected_grad_table, atol=1e-12)
    materialised = _loss_and_grads(_materialised, queries, table, labels)
    np.testing.assert_allclose(materialised[0], expected_loss, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 5, 8, 64])
def test_equals_the_materialised_loss_and_gradients_in_float32(chunk):
    rng = np.random.default_rng(chunk)
    num_items, rows, d = 37, 9, 6  # 38 rows: no chunk size here divides it
    queries = rng.normal(size=(rows, d)).astype(np.float32)
    table = rng.normal(size=(num_items + 1, d)).astype(np.float32)
    table[0] = 50.0  # a padding row that would dominate any softmax it entered
    labels = rng.integers(1, num_items + 1, size=rows)
    labels[:3] = 7  # repeated targets: their gradients add up in one row
    mask = tf.constant(rng.random(rows) < 0.7)
    got = _loss_and_grads(lambda q, t, y: losses.chunked_full_softmax_crossentropy(q, t, y, chunk, mask),
                          queries, table, labels)
    expected = _loss_and_grads(lambda q, t, y: _materialised(q, t, y, mask), queries, table, labels)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)
    assert not got[2][0].any()


def _largest_tensors(graph, found=None):
    """Element counts of every statically shaped tensor of ``graph`` and its loops' bodies."""
    found = [] if found is None else found
    for op in graph.get_operations():
        for output in op.outputs:
            if output.shape.is_fully_defined():
                found.append((output.shape.num_elements(), op.type, tuple(output.shape)))
        for attr in ("_body_graph", "_cond_graph"):
            if getattr(op, attr, None) is not None:
                _largest_tensors(getattr(op, attr), found)
    return found


def _traced_step(fn, rows, num_items, d):
    queries = tf.Variable(tf.zeros((rows, d)))
    table = tf.Variable(tf.zeros((num_items + 1, d)))
    labels = tf.ones((rows,), tf.int64)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = fn(queries, table, labels)
        return tape.gradient(loss, [queries, table])

    return _largest_tensors(step.get_concrete_function().graph)


def test_no_tensor_of_a_training_step_is_larger_than_rows_times_chunk_besides_the_table():
    rows, num_items, d, chunk = 6, 1000, 2, 16
    table_size = (num_items + 1 + chunk) * d  # the table, padded to whole chunks, and its gradient
    chunked = _traced_step(lambda q, t, y: losses.chunked_full_softmax_crossentropy(q, t, y, chunk), rows, num_items, d)
    assert max(n for n, *_ in chunked) <= table_size
    assert any(shape == (rows, chunk) for *_, shape in chunked)  # the loops' tensors are seen
    materialised = _traced_step(_materialised, rows, num_items, d)
    assert max(n for n, *_ in materialised) == rows * (num_items + 1) > table_size


def test_the_models_training_step_is_unchanged_by_chunking():
    batch = {"item_ids": tf.constant([[0, 0, 3, 4, 5, 1], [0, 7, 7, 3, 2, 9]]),
             "positives": tf.constant([[0, 0, 4, 5, 1, 8], [0, 7, 3, 2, 9, 4]]),
             "negatives": tf.fill((2, 6, 1), 11)}
    results = []
    for chunk in (None, 4):
        model = small_sasrec(30, max_len=6, hidden_units=8, num_blocks=1, dropout_rate=0.0, loss="full_softmax",
                             softmax_chunk_size=chunk)
        with tf.GradientTape() as tape:
            loss, _ = model._forward_loss(batch, training=True)
        grads = tape.gradient(loss, model.trainable_weights)
        results.append([loss.numpy()] + [tf.convert_to_tensor(g).numpy() for g in grads])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_softmax_chunk_size_is_validated_and_round_trips():
    config = SASRecConfig(loss="full_softmax", softmax_chunk_size=8192)
    assert SASRecConfig.from_json(config.to_json()) == config
    assert SASRecConfig().softmax_chunk_size is None
    for bad in (dict(loss="full_softmax", softmax_chunk_size=0), dict(loss="full_softmax", softmax_chunk_size=2.5),
                dict(loss="bce", softmax_chunk_size=16)):
        with pytest.raises(ValueError, match="softmax_chunk_size"):
            SASRecConfig(**bad)
    with pytest.raises(ValueError, match="chunk_size"):
        losses.chunked_full_softmax_crossentropy(tf.zeros((1, 2)), tf.zeros((3, 2)), tf.ones(1, tf.int32), 0)
