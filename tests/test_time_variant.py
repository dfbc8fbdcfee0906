"""TV-Rec's time-variant filter made causal (``time_variant_mixing``): the layer's arithmetic by
hand, its config, how the block mixes it, and a model with it causal, padding invariant, equal to
the history cut at each position, saved and reloaded, exported and served."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.layers import CausalSelfAttentionBlock, CausalTimeVariantFilter, SASRecEncoder, causal_attention_mask
from sasrec_tf.testing.models import make_trained, small_sasrec
from sasrec_tf.testing.properties import (assert_causal_and_padding_invariant, assert_export_serves_offline_top_k,
                                          assert_history_cut_at_every_position, assert_saves_and_reloads)

NUM_ITEMS = 40

# max_len 4, 2 taps, a full table: row p weighs (lag 0, lag 1) of the item with p items before it.
W = np.array([[1.0, 9.0], [2.0, -1.0], [0.5, 3.0], [7.0, 7.0]], np.float32)
# d = 2. Row 0 is one padded slot (its value must be ignored) then 3 items; row 1 is 4 items, the
# first 3 the same as row 0's.
X = np.array([[[5.0, 5.0], [1.0, 10.0], [2.0, 0.0], [4.0, -2.0]],
              [[1.0, 10.0], [2.0, 0.0], [4.0, -2.0], [3.0, 1.0]]], np.float32)
PADDING = np.array([[False, True, True, True], [True, True, True, True]])
# By hand, y[t] = W[p, 0] x[t] + W[p, 1] x[t - 1] (nothing before the first item):
#   first item  (p 0): 1 * (1, 10)                    = (1, 10)
#   second item (p 1): 2 * (2, 0) - 1 * (1, 10)       = (3, -10)
#   third item  (p 2): 0.5 * (4, -2) + 3 * (2, 0)     = (8, -1)
#   fourth item (p 3): 7 * (3, 1) + 7 * (4, -2)       = (49, -7)
EXPECTED = np.array([[[0.0, 0.0], [1.0, 10.0], [3.0, -10.0], [8.0, -1.0]],
                     [[1.0, 10.0], [3.0, -10.0], [8.0, -1.0], [49.0, -7.0]]], np.float32)


def _full_table_filter():
    layer = CausalTimeVariantFilter(4, taps=2, bases=0)
    layer(tf.zeros((1, 4, 2)), tf.ones((1, 4), tf.bool))
    layer.coefficients.assign(W)
    return layer


def test_the_filter_equals_the_hand_computation_and_is_zero_at_padding():
    layer = _full_table_filter()
    got = layer(tf.constant(X), tf.constant(PADDING)).numpy()
    np.testing.assert_allclose(got, EXPECTED, rtol=1e-6)
    # The last position alone is the last row of the full output.
    last = layer(tf.constant(X), tf.constant(PADDING), last_only=True).numpy()
    np.testing.assert_allclose(last, EXPECTED[:, -1:], rtol=1e-6)
    # A batch cut to 3 columns (row 0 without its padding) gives row 0's items the same outputs.
    cut = layer(tf.constant(X[:1, 1:]), tf.ones((1, 3), tf.bool)).numpy()
    np.testing.assert_allclose(cut[0], EXPECTED[0, 1:], rtol=1e-6)


def test_low_rank_weights_are_coefficients_times_unit_norm_bases():
    layer = CausalTimeVariantFilter(4, taps=2, bases=2)
    layer(tf.zeros((1, 4, 2)), tf.ones((1, 4), tf.bool))
    assert [w.shape.as_list() for w in layer.trainable_weights] == [[4, 2], [2, 2]]
    layer.coefficients.assign([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    layer.basis.assign([[3.0, 4.0], [0.0, 2.0]])  # unit rows (0.6, 0.8) and (0, 1)
    weights = np.array([[0.6, 0.8], [0.0, 1.0], [1.2, 2.6], [0.6, 1.8]], np.float32)
    np.testing.assert_allclose(layer.tap_weights().numpy(), weights, rtol=1e-6)
    # Second item of row 1, p 1: 0 * (2, 0) + 1 * (1, 10).
    got = layer(tf.constant(X), tf.constant(PADDING)).numpy()
    np.testing.assert_allclose(got[1, 1], [1.0, 10.0], rtol=1e-6)
    reference = _full_table_filter()
    reference.coefficients.assign(weights)
    np.testing.assert_allclose(got, reference(tf.constant(X), tf.constant(PADDING)).numpy(), rtol=1e-6)


def test_every_lag_by_default_and_the_output_at_t_is_the_history_cut_at_t():
    rng = np.random.default_rng(0)
    layer = CausalTimeVariantFilter(6, bases=3)
    assert layer.num_taps == 6
    x = tf.constant(rng.normal(size=(1, 6, 3)), tf.float32)
    layer(x, tf.ones((1, 6), tf.bool))
    layer.coefficients.assign(rng.normal(size=(6, 3)))
    full = layer(x, tf.ones((1, 6), tf.bool)).numpy()
    for t in range(6):
        # The first t + 1 items, left-padded to the full width: their last position is y[t].
        cut = tf.concat([tf.zeros((1, 5 - t, 3)), x[:, : t + 1]], axis=1)
        padding = tf.constant([[False] * (5 - t) + [True] * (t + 1)])
        np.testing.assert_allclose(layer(cut, padding).numpy()[0, -1], full[0, t], rtol=1e-5, atol=1e-6)


def test_the_filter_config_round_trips_and_bad_arguments_are_named():
    layer = _full_table_filter()
    config = layer.get_config()
    assert {k: config[k] for k in ("max_len", "taps", "bases")} == {"max_len": 4, "taps": 2, "bases": 0}
    clone = CausalTimeVariantFilter.from_config(config)
    clone(tf.constant(X), tf.constant(PADDING))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(tf.constant(X), tf.constant(PADDING)).numpy(),
                                  layer(tf.constant(X), tf.constant(PADDING)).numpy())
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == config
    for kwargs, error, name in [(dict(taps=5), ValueError, "taps"), (dict(taps=0), ValueError, "taps"),
                                (dict(bases=-1), ValueError, "bases"), (dict(taps=2.0), TypeError, "taps")]:
        with pytest.raises(error, match=name):
            CausalTimeVariantFilter(4, **kwargs)


def test_the_block_mixes_the_filter_in_after_the_frequency_filter():
    inputs = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 8)), tf.float32)
    padding = tf.constant([[False, True, True, True, True], [True] * 5])
    mask = causal_attention_mask(padding)
    block = CausalSelfAttentionBlock(8, 2, layer_norm="post", frequency_mixing=0.6, frequency_cutoff=3, max_len=5,
                                     time_variant_mixing=0.25, time_variant_taps=3, time_variant_bases=0)
    block(inputs, mask, padding)  # builds the weights
    block.time_variant_filter.coefficients.assign(np.random.default_rng(4).normal(size=(5, 3)))
    got = block(inputs, mask, padding).numpy()
    real = tf.cast(padding, tf.float32)[..., None]
    attended = block.attention(inputs, inputs, attention_mask=mask)
    frequency = block.frequency_filter(inputs * real)
    time_variant = block.time_variant_filter(inputs * real, padding)
    mixed = 0.25 * time_variant + 0.75 * (0.6 * frequency + 0.4 * attended)
    hidden = block.attention_norm(inputs + mixed)
    expected = block.feed_forward_norm(hidden + block.feed_forward(hidden)) * real
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert block.get_config()["time_variant_mixing"] == 0.25
    with pytest.raises(ValueError, match="time_variant_mixing=0.5 needs max_len"):
        CausalSelfAttentionBlock(8, 2, time_variant_mixing=0.5)


def test_the_default_config_builds_no_filter_and_bad_fields_are_named():
    model = small_sasrec(NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=1)
    assert not [w.name for w in model.weights if "time_variant" in w.name]
    for bad, field in [(dict(time_variant_mixing=1.5), "time_variant_mixing"),
                       (dict(time_variant_taps=7, max_len=6), "time_variant_taps"),
                       (dict(time_variant_taps=0), "time_variant_taps"),
                       (dict(time_variant_bases=-1), "time_variant_bases")]:
        with pytest.raises(ValueError, match=field):
            SASRecConfig(**bad)
    with pytest.raises(ValueError, match="time_variant_taps must be <= max_len"):
        SASRecEncoder(4, 8, time_variant_taps=5)


def _model_with_a_filter_that_matters(**config):
    model = small_sasrec(NUM_ITEMS, max_len=12, hidden_units=8, num_blocks=2, dropout_rate=0.0, **config)
    rng = np.random.default_rng(5)
    for block in model.encoder.blocks:  # the initial 1e-3 coefficients would hide a wrong filter
        block.time_variant_filter.coefficients.assign(rng.normal(size=block.time_variant_filter.coefficients.shape))
    return model


@pytest.mark.parametrize("config", [dict(time_variant_mixing=0.5, frequency_mixing=0.7),
                                    dict(time_variant_mixing=1.0, time_variant_taps=5, time_variant_bases=0,
                                         layer_norm="pre")],
                         ids=["with-frequency", "filter-alone"])
def test_a_model_with_the_filter_is_causal_and_padding_invariant(config):
    model = _model_with_a_filter_that_matters(**config)
    assert SASRecConfig.from_json(model.config.to_json()).time_variant_mixing == config["time_variant_mixing"]
    assert_causal_and_padding_invariant(model, NUM_ITEMS)


def test_without_positions_each_training_position_is_the_history_cut_there():
    # SASRec's positional embedding counts from the most recent item; without it, the filter's
    # count from the first item makes position t exactly the served query of the first t + 1 items.
    model = _model_with_a_filter_that_matters(time_variant_mixing=1.0, use_positional_embedding=False)
    assert_history_cut_at_every_position(model, [5, 9, 1, 33, 7, 12, 3], cuts=(1, 3, 6))


def test_a_model_with_the_filter_saves_and_reloads(tmp_path):
    model = small_sasrec(NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=1, time_variant_mixing=0.5,
                         time_variant_bases=4)
    assert_saves_and_reloads(model, tmp_path / "model.keras", [[0, 0, 3, 1, 4, 1]])


def test_a_model_with_the_filter_exports_and_serves_its_own_top_k(tmp_path):
    trained = make_trained(seed=3, time_variant_mixing=0.5, time_variant_bases=4)
    for block in trained.model.encoder.blocks:
        block.time_variant_filter.coefficients.assign(np.random.default_rng(6).normal(size=(10, 4)))
    assert_export_serves_offline_top_k(trained, tmp_path)
