"""The optimizers: Adam's arithmetic for repeated rows of a sparse gradient, the fused kernel, LazyAdam."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import optimizers, training
from sasrec_tf._compat import keras
from sasrec_tf.config import OptionError, SASRecConfig

LR = 1e-3


def _apply(name, gradients, initial, *, steps=1, weight_decay=0.0):
    """Apply ``gradients`` (a function of the step returning one gradient per variable) ``steps``
    times with optimizer ``name`` to fresh variables holding ``initial``; the final values."""
    variables = [tf.Variable(value, dtype=tf.float32) for value in initial]
    optimizer = optimizers.make(name, learning_rate=LR, weight_decay=weight_decay)

    @tf.function
    def step(i):
        optimizer.apply_gradients(zip(gradients(i), variables))

    for i in range(steps):
        step(tf.constant(i))
    return [v.numpy() for v in variables]


def _repeated_row_gradient(_):
    # Row 0 appears twice (two positions of a batch hold the same item), row 2 once, row 1 never.
    return [tf.IndexedSlices(tf.constant([[1.0, -1.0], [1.0, -1.0], [0.5, 2.0]]), tf.constant([0, 0, 2]),
                             dense_shape=tf.constant([3, 2]))]


def test_adam_squares_the_row_gradient_not_each_occurrence():
    # Adam's first step moves every coordinate by lr * g / |g| = lr (m_hat = g, v_hat = g^2), where g
    # is the row's gradient: the sum of its occurrences. Squaring each occurrence instead (Keras 3's
    # Adam) would give v_hat = 1 + 1 = 2 for row 0, not (1 + 1)^2 = 4, and a step of lr * sqrt(2).
    initial = [np.zeros((3, 2), np.float32)]
    for name in ("adam", "keras_adam", "lazy_adam"):
        moved, = _apply(name, _repeated_row_gradient, initial)
        np.testing.assert_allclose(moved, [[-LR, LR], [0.0, 0.0], [-LR, -LR]], rtol=1e-4, err_msg=name)


def test_adam_equals_keras_adam_on_sparse_and_dense_gradients_with_and_without_weight_decay():
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    dense = [tf.constant(rng.normal(size=(7, 5, 3)), tf.float32), tf.constant(rng.normal(size=(7, 3)), tf.float32)]
    rows = tf.constant(rng.integers(0, 5, size=(7, 6)), tf.int32)
    values = tf.constant(rng.normal(size=(7, 6, 3)), tf.float32)

    def sparse(i):
        return [tf.IndexedSlices(values[i], rows[i], dense_shape=tf.constant([5, 3])), dense[1][i]]

    def summed(i):  # the same gradients as one dense tensor
        return [tf.math.unsorted_segment_sum(values[i], rows[i], 5), dense[1][i]]

    for theirs in (_apply("keras_adam", sparse, initial, steps=7), _apply("keras_adam", summed, initial, steps=7)):
        for a, b in zip(_apply("adam", sparse, initial, steps=7), theirs):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    decayed = _apply("adam", lambda i: [dense[0][i], dense[1][i]], initial, steps=7, weight_decay=0.1)
    reference = _apply("keras_adam", lambda i: [dense[0][i], dense[1][i]], initial, steps=7, weight_decay=0.1)
    for a, b in zip(decayed, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _one_row_per_step(i):
    # Step 0: gradient 1 on row 0; step 1: gradient 1 on row 1; row 2 never.
    return [tf.IndexedSlices(tf.constant([[1.0, 1.0]]), tf.reshape(i, [1]), dense_shape=tf.constant([3, 2]))]


def test_lazy_adam_moves_only_the_rows_a_batch_holds():
    initial = [np.ones((3, 2), np.float32)]
    lazy, = _apply("lazy_adam", _one_row_per_step, initial, steps=2)
    np.testing.assert_allclose(lazy[0], 1 - LR, rtol=1e-6)  # moved by lr at step 0, not at step 1
    # Row 1's first update comes at global step 2 with the global bias correction (as TF Addons'
    # LazyAdam): m_hat = g / (1 + beta_1), v_hat = g^2 / (1 + beta_2), so it moves by
    # lr * sqrt(1 + beta_2) / (1 + beta_1).
    np.testing.assert_allclose(lazy[1], 1 - LR * np.sqrt(1.98) / 1.9, rtol=1e-6)
    np.testing.assert_array_equal(lazy[2], 1.0)
    adam, = _apply("adam", _one_row_per_step, initial, steps=2)
    assert np.all(adam[0] < 1 - 1.5 * LR)  # Adam: step 0's momentum moves row 0 again at step 1


def test_lazy_adam_is_adam_when_every_row_is_in_every_batch():
    rng = np.random.default_rng(1)
    initial = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    values = tf.constant(rng.normal(size=(5, 6, 3)), tf.float32)
    rows = tf.constant([0, 1, 2, 3, 1, 1])  # every row, row 1 three times
    dense = tf.constant(rng.normal(size=(5, 3)), tf.float32)

    def gradients(i):
        return [tf.IndexedSlices(values[i], rows, dense_shape=tf.constant([4, 3])), dense[i]]

    for a, b in zip(_apply("lazy_adam", gradients, initial, steps=5), _apply("adam", gradients, initial, steps=5)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_training_path_uses_the_configured_optimizer():
    assert isinstance(training.make_optimizer(SASRecConfig()), optimizers.Adam)
    assert isinstance(training.make_optimizer(SASRecConfig(weight_decay=0.01)), optimizers.AdamW)
    assert isinstance(training.make_optimizer(SASRecConfig(optimizer="lazy_adam")), optimizers.LazyAdam)
    assert type(training.make_optimizer(SASRecConfig(optimizer="keras_adam"))) is keras.optimizers.Adam
    with pytest.raises(OptionError, match="optimizer"):
        SASRecConfig(optimizer="sgd")
    with pytest.raises(OptionError, match="weight_decay"):
        SASRecConfig(optimizer="lazy_adam", weight_decay=0.01)


def test_the_optimizer_settings_come_from_the_config():
    default = training.make_optimizer(SASRecConfig())
    assert (default.beta_1, default.beta_2, default.epsilon) == (0.9, 0.98, 1e-7)  # the reference's beta_2
    config = SASRecConfig(beta_1=0.8, beta_2=0.9, epsilon=1e-8)
    for overrides in (dict(optimizer="adam"), dict(optimizer="lazy_adam"), dict(optimizer="keras_adam"),
                      dict(optimizer="adam", weight_decay=0.1), dict(optimizer="keras_adam", weight_decay=0.1)):
        optimizer = training.make_optimizer(config.replace(**overrides))
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.8, 0.9, 1e-8), overrides


def test_a_config_written_before_the_optimizer_settings_existed_reads_with_their_defaults():
    old = {k: v for k, v in SASRecConfig(learning_rate=0.01).to_dict().items()
           if k not in ("beta_1", "beta_2", "epsilon")}
    assert SASRecConfig.from_dict(old) == SASRecConfig(learning_rate=0.01)


@pytest.mark.parametrize("bad", [dict(beta_1=1.0), dict(beta_1=-0.1), dict(beta_2=1.5), dict(beta_2=float("nan")),
                                 dict(epsilon=0.0), dict(epsilon=float("inf")), dict(beta_1="0.9")],
                         ids=lambda bad: ",".join(f"{k}={v}" for k, v in bad.items()))
def test_invalid_optimizer_settings_are_rejected(bad):
    with pytest.raises(OptionError, match=f"SASRecConfig.{next(iter(bad))}"):
        SASRecConfig(**bad)


def test_adam_trains_under_a_mirrored_strategy():
    """The fused kernel takes each replica's variable handle inside the strategy's update."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variable = tf.Variable(np.zeros((3, 2), np.float32))
        optimizer = optimizers.make("adam", learning_rate=LR)

    @tf.function
    def step():
        def replica_step():
            optimizer.apply_gradients([(_repeated_row_gradient(0)[0], variable)])
        strategy.run(replica_step)

    step()
    np.testing.assert_allclose(variable.numpy(), [[-LR, LR], [0.0, 0.0], [-LR, -LR]], rtol=1e-4)
