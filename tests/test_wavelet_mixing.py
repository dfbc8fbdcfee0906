"""WEARec's wavelet-enhanced adaptive frequency filter made causal (``wavelet_mixing``): the layer's
arithmetic by hand and against WEARec's rFFT / Haar definition, its config, how the block mixes
it, and a model with it causal, padding invariant, equal to the history cut at each position,
trained, saved and reloaded, exported and served."""

import math

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.data import training_dataset
from sasrec_tf.layers import CausalSelfAttentionBlock, CausalWaveletFilter, SASRecEncoder, causal_attention_mask
from sasrec_tf.testing.models import make_trained, small_sasrec
from sasrec_tf.testing.properties import (assert_causal_and_padding_invariant, assert_export_serves_offline_top_k,
                                          assert_history_cut_at_every_position, assert_saves_and_reloads)

NUM_ITEMS = 40

# d = 2, max_len 4. Row 0 is one padded slot (its value must be ignored) then 3 items; row 1 is 4
# items, the first 3 the same as row 0's.
X = np.array([[[5.0, 5.0], [1.0, 10.0], [2.0, 0.0], [4.0, -2.0]],
              [[1.0, 10.0], [2.0, 0.0], [4.0, -2.0], [3.0, 1.0]]], np.float32)
PADDING = np.array([[False, True, True, True], [True, True, True, True]])


def _built(**kwargs):
    layer = CausalWaveletFilter(4, **kwargs)
    layer(tf.constant(X), tf.constant(PADDING))
    return layer


def _both_rows(first_three_and_fourth):
    """Row 0 (padded slot, then the first 3 outputs) and row 1 (all 4)."""
    outputs = np.array(first_three_and_fourth, np.float32)
    return np.stack([np.concatenate([[[0.0, 0.0]], outputs[:3]]), outputs])


def test_the_haar_part_equals_the_hand_computation_and_is_zero_at_padding():
    layer = _built(frequency_weight=0.0)
    assert [w.name.split("/")[-1] for w in layer.weights] == ["detail_weight:0"]
    # One level: y[t] = (x[t] + x[t-1]) / 2 + w (x[t] - x[t-1]) / 2 (nothing before the first item).
    # w = (0.5, -1): channel 0 is 0.75 x[t] + 0.25 x[t-1], channel 1 is x[t-1].
    layer.detail_weight.assign([[0.5, -1.0]])
    expected = _both_rows([[0.75, 0.0],  # 0.75 * 1, then the (missing) item before the first
                           [1.75, 10.0],  # 0.75 * 2 + 0.25 * 1, 10
                           [3.5, 0.0],  # 0.75 * 4 + 0.25 * 2, 0
                           [3.25, -2.0]])  # 0.75 * 3 + 0.25 * 4, -2
    got = layer(tf.constant(X), tf.constant(PADDING)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    last = layer(tf.constant(X), tf.constant(PADDING), last_only=True).numpy()
    np.testing.assert_allclose(last, expected[:, -1:], rtol=1e-6)
    # A batch cut to 3 columns (row 0 without its padding) gives row 0's items the same outputs.
    cut = layer(tf.constant(X[:1, 1:]), tf.ones((1, 3), tf.bool)).numpy()
    np.testing.assert_allclose(cut[0], expected[0, 1:], rtol=1e-6)


def test_two_haar_levels_by_hand_and_unit_detail_weights_reconstruct_the_input():
    layer = _built(frequency_weight=0.0, levels=2)
    # y = A2 x + w1 (x - A1 x) + w2 (A1 x - A2 x); at row 1's last item A1 x = (3.5, -0.5) (its 2
    # items), A2 x = (2.5, 2.25) (its 4). w1 = (1, 0), w2 = (0, 2):
    # (2.5 + (3 - 3.5), 2.25 + 2 * (-0.5 - 2.25)) = (2.0, -3.25).
    layer.detail_weight.assign([[1.0, 0.0], [0.0, 2.0]])
    got = layer(tf.constant(X), tf.constant(PADDING)).numpy()
    np.testing.assert_allclose(got[1, 3], [2.0, -3.25], rtol=1e-6)
    layer.detail_weight.assign(np.ones((2, 2)))  # every detail kept: the Haar transform inverts
    np.testing.assert_allclose(layer(tf.constant(X), tf.constant(PADDING)).numpy(), X * PADDING[..., None],
                               rtol=1e-6, atol=1e-6)


def test_the_frequency_part_equals_the_hand_computation():
    layer = _built(frequency_weight=1.0)
    assert layer.detail_weight is None
    layer.modulation_kernel.assign(tf.zeros_like(layer.modulation_kernel))  # no context: f, b are the base ones
    layer.modulation_bias.assign(tf.zeros_like(layer.modulation_bias))
    # All frequencies passed, no offset: the identity.
    np.testing.assert_allclose(layer(tf.constant(X), tf.constant(PADDING)).numpy(), X * PADDING[..., None],
                               rtol=1e-5, atol=1e-6)
    # Only the zero frequency (bins 0, 1, 2 of a 4-wide window): every lag weighs 1 / 4; an offset
    # 0.4 on it adds 0.4 / sqrt(4) = 0.2. y[t] = (sum of the items up to t) / 4 + 0.2.
    layer.base_filter.assign([[1.0, 0.0, 0.0]])
    layer.base_bias.assign([[0.4, 0.0, 0.0]])
    expected = _both_rows([[0.45, 2.7],  # (1, 10) / 4 + 0.2
                           [0.95, 2.7],  # (3, 10) / 4 + 0.2
                           [1.95, 2.2],  # (7, 8) / 4 + 0.2
                           [2.7, 2.45]])  # (10, 9) / 4 + 0.2
    np.testing.assert_allclose(layer(tf.constant(X), tf.constant(PADDING)).numpy(), expected, rtol=1e-5)


def _gelu(values):
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in values])


def _wearec_last_position(window, context, weights, heads, alpha):
    """WEARec's layer (before its dropout, residual and LayerNorm) at the last slot of ``window``
    ``[N, d]``, N even, from its definition: the Haar pair of the last two slots, the rFFT filter."""
    n, d = window.shape
    bins = n // 2 + 1
    even, odd = window[-2], window[-1]
    wavelet = 0.5 * (even + odd) - 0.5 * (even - odd) * weights["detail_weight"][0]  # the odd slot's reconstruction
    hidden = _gelu(context @ weights["context_kernel"] + weights["context_bias"])
    modulation = (hidden @ weights["modulation_kernel"] + weights["modulation_bias"]).reshape(heads, bins, 2)
    gains = weights["base_filter"] * (1.0 + modulation[..., 0])
    biases = weights["base_bias"] + modulation[..., 1]
    grouped = window.reshape(n, heads, d // heads).transpose(1, 0, 2)  # [heads, N, d / heads]
    spectrum = np.fft.rfft(grouped, axis=1, norm="ortho") * gains[..., None] + biases[..., None]
    filtered = np.fft.irfft(spectrum, n=n, axis=1, norm="ortho")[:, -1].reshape(d)
    return (1.0 - alpha) * wavelet + alpha * filtered


def test_every_position_is_wearec_at_the_last_slot_of_the_window_ending_there():
    rng = np.random.default_rng(0)
    n, d, heads, alpha = 6, 4, 2, 0.3
    layer = CausalWaveletFilter(n, heads=heads, frequency_weight=alpha)
    x = rng.normal(size=(1, n, d)).astype(np.float32)
    layer(tf.constant(x), tf.ones((1, n), tf.bool))
    for weight in layer.weights:  # WEARec's initial values would hide a wrong filter
        weight.assign(rng.normal(size=weight.shape) * 0.5)
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy().astype(np.float64) for w in layer.weights}
    got = layer(tf.constant(x), tf.ones((1, n), tf.bool)).numpy()[0]
    for t in range(n):
        # The first t + 1 items right-aligned in WEARec's zero-padded window; the context is their mean.
        window = np.concatenate([np.zeros((n - t - 1, d)), x[0, : t + 1]])
        expected = _wearec_last_position(window, x[0, : t + 1].mean(axis=0), weights, heads, alpha)
        np.testing.assert_allclose(got[t], expected, rtol=1e-4, atol=1e-5)


def test_the_filter_config_round_trips_and_bad_arguments_are_named():
    layer = _built(heads=2, levels=2, frequency_weight=0.4)
    config = layer.get_config()
    assert {k: config[k] for k in ("max_len", "heads", "levels", "frequency_weight")} == {
        "max_len": 4, "heads": 2, "levels": 2, "frequency_weight": 0.4}
    clone = CausalWaveletFilter.from_config(config)
    clone(tf.constant(X), tf.constant(PADDING))
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(tf.constant(X), tf.constant(PADDING)).numpy(),
                                  layer(tf.constant(X), tf.constant(PADDING)).numpy())
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == config
    for kwargs, error, name in [(dict(levels=3), ValueError, "levels"), (dict(levels=0), ValueError, "levels"),
                                (dict(heads=0), ValueError, "heads"), (dict(heads=2.0), TypeError, "heads"),
                                (dict(frequency_weight=1.5), ValueError, "frequency_weight")]:
        with pytest.raises(error, match=name):
            CausalWaveletFilter(4, **kwargs)
    with pytest.raises(ValueError, match="heads"):
        CausalWaveletFilter(4, heads=3)(tf.constant(X), tf.constant(PADDING))


def test_the_block_mixes_the_filter_in_last():
    inputs = tf.constant(np.random.default_rng(3).normal(size=(2, 6, 8)), tf.float32)
    padding = tf.constant([[False, True, True, True, True, True], [True] * 6])
    mask = causal_attention_mask(padding)
    block = CausalSelfAttentionBlock(8, 2, layer_norm="post", frequency_mixing=0.6, frequency_cutoff=3, max_len=6,
                                     time_variant_mixing=0.25, time_variant_bases=0, wavelet_mixing=0.4,
                                     wavelet_heads=2, wavelet_frequency_weight=0.3)
    block(inputs, mask, padding)  # builds the weights
    got = block(inputs, mask, padding).numpy()
    real = tf.cast(padding, tf.float32)[..., None]
    attended = block.attention(inputs, inputs, attention_mask=mask)
    frequency = block.frequency_filter(inputs * real)
    time_variant = block.time_variant_filter(inputs * real, padding)
    wavelet = block.wavelet_filter(inputs * real, padding)
    mixed = 0.4 * wavelet + 0.6 * (0.25 * time_variant + 0.75 * (0.6 * frequency + 0.4 * attended))
    hidden = block.attention_norm(inputs + mixed)
    expected = block.feed_forward_norm(hidden + block.feed_forward(hidden)) * real
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    config = block.get_config()
    assert (config["wavelet_mixing"], config["wavelet_heads"], config["wavelet_frequency_weight"]) == (0.4, 2, 0.3)
    with pytest.raises(ValueError, match="wavelet_mixing=0.5 needs max_len"):
        CausalSelfAttentionBlock(8, 2, wavelet_mixing=0.5)
    with pytest.raises(ValueError, match="wavelet_heads"):
        CausalSelfAttentionBlock(8, 2, wavelet_mixing=0.5, wavelet_heads=3, max_len=6)


def test_the_default_config_builds_no_filter_and_bad_fields_are_named():
    model = small_sasrec(NUM_ITEMS, max_len=6, hidden_units=8, num_blocks=1)
    assert not [w.name for w in model.weights if "wavelet" in w.name]
    for bad, field in [(dict(wavelet_mixing=1.5), "wavelet_mixing"), (dict(wavelet_mixing=-0.1), "wavelet_mixing"),
                       (dict(wavelet_frequency_weight=2.0), "wavelet_frequency_weight"),
                       (dict(wavelet_heads=0), "wavelet_heads"),
                       (dict(wavelet_mixing=0.5, hidden_units=50, wavelet_heads=8), "wavelet_heads"),
                       (dict(wavelet_levels=0), "wavelet_levels"),
                       (dict(wavelet_levels=3, max_len=6), "wavelet_levels")]:
        with pytest.raises(ValueError, match=field):
            SASRecConfig(**bad)
    with pytest.raises(ValueError, match="wavelet_levels must have"):
        SASRecEncoder(4, 8, wavelet_levels=3)


def _model_with_a_filter_that_matters(**config):
    model = small_sasrec(NUM_ITEMS, max_len=12, hidden_units=8, num_blocks=2, dropout_rate=0.0, **config)
    rng = np.random.default_rng(5)
    for block in model.encoder.blocks:  # WEARec's 0.02 initial weights would hide a wrong filter
        for weight in block.wavelet_filter.weights:
            weight.assign(rng.normal(size=weight.shape) * 0.5)
    return model


@pytest.mark.parametrize("config", [dict(wavelet_mixing=0.5, wavelet_heads=2, frequency_mixing=0.7),
                                    dict(wavelet_mixing=1.0, wavelet_levels=2, wavelet_frequency_weight=0.5,
                                         layer_norm="pre")],
                         ids=["with-attention", "filter-alone"])
def test_a_model_with_the_filter_is_causal_and_padding_invariant(config):
    model = _model_with_a_filter_that_matters(**config)
    assert SASRecConfig.from_json(model.config.to_json()).wavelet_mixing == config["wavelet_mixing"]
    assert_causal_and_padding_invariant(model, NUM_ITEMS)


def test_without_positions_each_training_position_is_the_history_cut_there():
    model = _model_with_a_filter_that_matters(wavelet_mixing=1.0, wavelet_heads=4, use_positional_embedding=False)
    assert_history_cut_at_every_position(model, [5, 9, 1, 33, 7, 12, 3], cuts=(1, 2, 4, 7))


def test_a_model_with_the_filter_trains_on_a_small_log_and_its_weights_move():
    model = small_sasrec(NUM_ITEMS, init_seed=1, max_len=8, hidden_units=16, num_blocks=1, batch_size=4,
                         wavelet_mixing=0.5, wavelet_heads=2, wavelet_levels=2)
    config = model.config
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=n) for n in (3, 5, 9, 12, 2, 7, 4, 6)]
    data = training_dataset(sequences, NUM_ITEMS, config.max_len, config.batch_size,
                            num_negatives=config.num_negatives)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    wavelet = model.encoder.blocks[0].wavelet_filter
    before = [w.numpy().copy() for w in wavelet.weights]
    history = model.fit(data, epochs=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(before, wavelet.weights))


def test_a_model_with_the_filter_saves_and_reloads(tmp_path):
    model = _model_with_a_filter_that_matters(wavelet_mixing=0.5, wavelet_heads=2, wavelet_levels=2)
    assert_saves_and_reloads(model, tmp_path / "model.keras", [[0, 0, 3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])


def test_a_model_with_the_filter_exports_and_serves_its_own_top_k(tmp_path):
    trained = make_trained(seed=3, wavelet_mixing=0.5, wavelet_heads=2)
    rng = np.random.default_rng(6)
    for block in trained.model.encoder.blocks:
        for weight in block.wavelet_filter.weights:
            weight.assign(rng.normal(size=weight.shape) * 0.5)
    assert_export_serves_offline_top_k(trained, tmp_path)
