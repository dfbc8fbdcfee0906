"""SwiGLU feed-forward (``ffn_activation="swiglu"``): the layer's arithmetic by hand, its config,
and a model with it causal, padding invariant, saved and reloaded, exported and served."""

import numpy as np
import tensorflow as tf

from sasrec_tf import SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.layers import PointWiseFeedForward
from sasrec_tf.testing.models import make_trained, small_sasrec
from sasrec_tf.testing.properties import assert_export_serves_offline_top_k, assert_saves_and_reloads

NUM_ITEMS = 40

# d = 2, inner width 3: W_gate, W_up [2, 3], W_down [3, 2], with biases.
W_GATE = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -0.5]], np.float32)
B_GATE = np.array([0.1, 0.0, -0.2], np.float32)
W_UP = np.array([[0.5, 1.0, -1.0], [1.5, 0.0, 1.0]], np.float32)
B_UP = np.array([0.0, -0.3, 0.2], np.float32)
W_DOWN = np.array([[1.0, 0.0], [-1.0, 1.0], [0.5, 2.0]], np.float32)
B_DOWN = np.array([0.05, -0.05], np.float32)


def _swiglu_layer(dropout_rate=0.0):
    layer = PointWiseFeedForward(2, dropout_rate=dropout_rate, activation="swiglu", inner_units=3)
    layer(tf.zeros((1, 1, 2)))
    layer.gate.set_weights([W_GATE, B_GATE])
    layer.inner.set_weights([W_UP, B_UP])
    layer.outer.set_weights([W_DOWN, B_DOWN])
    return layer


def test_swiglu_layer_equals_the_hand_computation():
    layer = _swiglu_layer(dropout_rate=0.5)
    x = np.array([[[1.0, 2.0], [-0.5, 0.25]]], np.float32)  # [1, 2, d]
    gate = x @ W_GATE + B_GATE
    swish = gate / (1.0 + np.exp(-gate))  # swish(z) = z sigmoid(z)
    expected = (swish * (x @ W_UP + B_UP)) @ W_DOWN + B_DOWN
    # The first position by hand: gate (1.1, 3.0, -0.7), up (3.5, 0.7, 1.2).
    np.testing.assert_allclose(gate[0, 0], [1.1, 3.0, -0.7], rtol=1e-6)
    np.testing.assert_allclose(layer(tf.constant(x), training=False).numpy(), expected, rtol=1e-5, atol=1e-6)
    # Three weight matrices and their biases: d x inner twice, inner x d once.
    assert sorted(w.shape.as_list() for w in layer.trainable_weights) == sorted(
        [[2, 3], [3], [2, 3], [3], [3, 2], [2]])
    # Dropout is active in training only (after the inner and the outer layer).
    assert not np.allclose(layer(tf.constant(x), training=True).numpy(), expected)


def test_swiglu_layer_config_round_trips_and_the_clone_computes_the_same():
    layer = _swiglu_layer()
    config = layer.get_config()
    assert config["activation"] == "swiglu" and config["inner_units"] == 3
    clone = PointWiseFeedForward.from_config(config)
    x = tf.constant([[[0.3, -1.2]]])
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == config


def test_relu_and_gelu_layers_keep_two_dense_layers():
    for activation in ("relu", "gelu"):
        layer = PointWiseFeedForward(2, activation=activation, inner_units=3)
        layer(tf.zeros((1, 1, 2)))
        assert not hasattr(layer, "gate") and len(layer.trainable_weights) == 4


def _call(model, items):
    return model(tf.constant(items), training=False).numpy()


def test_a_swiglu_model_is_causal_and_padding_invariant():
    model = small_sasrec(NUM_ITEMS, max_len=12, hidden_units=8, num_blocks=2, dropout_rate=0.0,
                         ffn_activation="swiglu", ffn_units=16)
    assert SASRecConfig.from_json(model.config.to_json()).ffn_activation == "swiglu"
    rng = np.random.default_rng(1)
    base = np.array([[0, 0, 0] + list(rng.integers(1, NUM_ITEMS + 1, size=9))])
    reference = _call(model, base)
    for t in (3, 6, 10):
        changed = base.copy()
        changed[0, t + 1:] = rng.integers(1, NUM_ITEMS + 1, size=11 - t)
        np.testing.assert_allclose(_call(model, changed)[0, : t + 1], reference[0, : t + 1], atol=1e-5)
    items = [5, 9, 1, 33, 7]
    full = _call(model, [[0] * 7 + items])[0, 7:]
    np.testing.assert_allclose(_call(model, [[0] * 2 + items])[0, 2:], full, atol=1e-5)
    np.testing.assert_allclose(_call(model, [items])[0], full, atol=1e-5)


def test_a_swiglu_model_saves_and_reloads(tmp_path):
    model = small_sasrec(NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=1, ffn_activation="swiglu")
    assert_saves_and_reloads(model, tmp_path / "model.keras", [[0, 0, 3, 1, 4, 1]])


def test_a_swiglu_model_exports_and_serves_its_own_top_k(tmp_path):
    assert_export_serves_offline_top_k(make_trained(seed=3, ffn_activation="swiglu", ffn_units=24), tmp_path)
