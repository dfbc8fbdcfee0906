"""The fused attention path computes what MultiHeadAttention computes, on the same weights.

``CausalSelfAttentionBlock(fused_attention=True)`` must give the MultiHeadAttention path's outputs
and attention weights (masking, fully padded rows, ``last_only`` included), keep causality and
padding invariance, and read and write the same variables, so that checkpoints and ``model.keras``
files of either path load into the other.
"""

import numpy as np
import pytest
import tensorflow as tf

import sasrec_tf  # noqa: F401  (selects Keras 2 before tf_keras is used)
from sasrec_tf._compat import keras
from sasrec_tf.layers import CausalSelfAttentionBlock, causal_attention_mask
from sasrec_tf.testing.models import small_sasrec

D, T = 8, 6
# Rows: left padding, no padding, one real item, fully padded (every query row masked).
PADDING = np.array([[0, 0, 1, 1, 1, 1], [1] * 6, [0] * 5 + [1], [0] * 6], dtype=bool)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(len(PADDING), T, D)).astype(np.float32))
    padding = tf.constant(PADDING)
    return x, causal_attention_mask(padding), padding


def _pair(num_heads, layer_norm, seed=0):
    """An MHA block with random weights (biases and LayerNorm too) and a fused block holding them."""
    x, mask, padding = _inputs(seed)
    reference = CausalSelfAttentionBlock(D, num_heads=num_heads, layer_norm=layer_norm, name="block")
    fused = CausalSelfAttentionBlock(D, num_heads=num_heads, layer_norm=layer_norm, fused_attention=True,
                                     name="block")
    reference(x, mask, padding)
    fused(x, mask, padding)
    rng = np.random.default_rng(seed + 1)
    for weight in reference.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    fused.set_weights(reference.get_weights())
    return reference, fused, (x, mask, padding)


@pytest.mark.parametrize("num_heads", [1, 2])
@pytest.mark.parametrize("layer_norm", ["original", "pre", "post", "ligr"])
def test_fused_attention_equals_multi_head_attention(num_heads, layer_norm):
    reference, fused, (x, mask, padding) = _pair(num_heads, layer_norm)
    expected, expected_scores = reference(x, mask, padding, return_attention_scores=True)
    outputs, scores = fused(x, mask, padding, return_attention_scores=True)
    assert scores.shape == (len(PADDING), num_heads, T, T)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    last, last_scores = fused(x, mask, padding, last_only=True, return_attention_scores=True)
    expected_last, expected_last_scores = reference(x, mask, padding, last_only=True, return_attention_scores=True)
    assert last.shape == (len(PADDING), 1, D) and last_scores.shape == (len(PADDING), num_heads, 1, T)
    np.testing.assert_allclose(last, expected_last, atol=1e-5)
    np.testing.assert_allclose(last_scores, expected_last_scores, atol=1e-5)
    np.testing.assert_allclose(last, outputs[:, -1:], atol=1e-5)
    assert np.all(outputs.numpy()[~PADDING] == 0)  # padded positions, the fully padded row too


def test_fused_attention_masks_padding_and_the_future_in_its_weights():
    _, fused, (x, mask, padding) = _pair(2, "original")
    _, scores = fused(x, mask, padding, return_attention_scores=True)
    scores = scores.numpy()
    visible = np.broadcast_to(mask.numpy()[:, None], scores.shape)
    assert np.all(scores[~visible & np.any(visible, axis=-1, keepdims=True)] < 1e-6)  # masked keys get nothing
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores[3], 1.0 / T, atol=1e-6)  # fully masked rows: uniform, as Keras does


@pytest.mark.parametrize("layer_norm", ["original", "pre"])
def test_fused_attention_is_causal(layer_norm):
    _, fused, (x, mask, padding) = _pair(2, layer_norm)
    before = fused(x, mask, padding).numpy()
    changed = x.numpy().copy()
    changed[:, 4:] += 3.0  # the future of positions 0..3
    after = fused(tf.constant(changed), mask, padding).numpy()
    np.testing.assert_allclose(after[:, :4], before[:, :4], atol=1e-6)
    assert not np.allclose(after[1, 4:], before[1, 4:])


@pytest.mark.parametrize("layer_norm", ["original", "pre"])
def test_fused_attention_ignores_what_padding_holds_and_how_much_there_is(layer_norm):
    _, fused, (x, _, _) = _pair(1, layer_norm)
    real = x[1:2, 2:]  # four real items
    short_padding = tf.ones((1, 4), tf.bool)
    expected = fused(real, causal_attention_mask(short_padding), short_padding).numpy()
    junk = tf.constant(np.random.default_rng(5).normal(size=(1, 3, D)).astype(np.float32)) * 10.0
    long_padding = tf.constant([[False] * 3 + [True] * 4])
    padded = fused(tf.concat([junk, real], axis=1), causal_attention_mask(long_padding), long_padding).numpy()
    np.testing.assert_allclose(padded[:, 3:], expected, atol=1e-5)


def _outputs(model, ids):
    return model(ids, training=False).numpy()


IDS = tf.constant([[0, 0, 3, 5, 7, 2], [1, 2, 3, 4, 5, 6]], tf.int32)


@pytest.mark.parametrize("saved_fused", [False, True])
def test_weights_saved_under_one_path_load_into_the_other(tmp_path, saved_fused):
    config = dict(max_len=T, hidden_units=D, num_heads=2, dropout_rate=0.0)
    saved = small_sasrec(20, init_seed=1, fused_attention=saved_fused, **config)
    loaded = small_sasrec(20, init_seed=2, fused_attention=not saved_fused, **config)
    assert [w.name for w in saved.weights] == [w.name for w in loaded.weights]
    assert [w.shape for w in saved.weights] == [w.shape for w in loaded.weights]
    assert not np.allclose(_outputs(saved, IDS), _outputs(loaded, IDS))
    saved.save_weights(str(tmp_path / "checkpoint"))  # a TensorFlow checkpoint
    loaded.load_weights(str(tmp_path / "checkpoint")).assert_existing_objects_matched()
    np.testing.assert_allclose(_outputs(loaded, IDS), _outputs(saved, IDS), atol=1e-5)

    saved.save(tmp_path / "model.keras")  # the model file of a run
    other = small_sasrec(20, init_seed=3, fused_attention=not saved_fused, **config)
    other.load_weights(tmp_path / "model.keras")
    np.testing.assert_allclose(_outputs(other, IDS), _outputs(saved, IDS), atol=1e-5)
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.config.fused_attention is saved_fused
    np.testing.assert_allclose(_outputs(restored, IDS), _outputs(saved, IDS), atol=1e-5)


def test_models_fuse_attention_by_default_and_the_layer_keeps_multi_head_attention():
    # The model default went on after the parity benchmark; a block built alone (and an older
    # layer config without the key) is still Keras' MultiHeadAttention call.
    assert sasrec_tf.SASRecConfig().fused_attention is True
    assert small_sasrec(20, max_len=T, hidden_units=D).encoder.fused_attention is True
    assert CausalSelfAttentionBlock(D).fused_attention is False
    block = CausalSelfAttentionBlock(D, fused_attention=True)
    assert block.get_config()["fused_attention"] is True
    assert CausalSelfAttentionBlock.from_config(block.get_config()).fused_attention is True
    with pytest.raises(TypeError, match="fused_attention"):
        CausalSelfAttentionBlock(D, fused_attention=1)
    with pytest.raises(ValueError, match="fused_attention"):
        sasrec_tf.SASRecConfig(fused_attention="yes")
