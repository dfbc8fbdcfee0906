"""The layers at the Keras standard: every argument checked in ``__init__``, ``get_config`` mirroring
``__init__`` exactly, and configs and models saved by earlier versions still loading the same."""

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import sasrec_tf  # noqa: F401  (selects Keras 2 before tf_keras is used)
from sasrec_tf._compat import keras
from sasrec_tf.layers import (
    CausalFrequencyFilter,
    CausalSelfAttentionBlock,
    PointWiseFeedForward,
    PositionalEmbedding,
    SASRecEncoder,
    causal_attention_mask,
)

DATA = Path(__file__).resolve().parent / "data"
BASE_KEYS = {"name", "trainable", "dtype"}  # keras.layers.Layer's own get_config entries

FILTER = dict(max_len=4)
FFN = dict(hidden_units=8)
BLOCK = dict(hidden_units=8, num_heads=2)
ENCODER = dict(max_len=4, hidden_units=8, num_heads=2)

BAD_ARGUMENTS = [  # (layer, valid arguments, the bad argument, its value, the error)
    (PositionalEmbedding, {}, "max_len", 0, ValueError),
    (PositionalEmbedding, {}, "max_len", 2.5, TypeError),
    (PositionalEmbedding, {}, "max_len", True, TypeError),
    (CausalFrequencyFilter, FILTER, "max_len", 0, ValueError),
    (CausalFrequencyFilter, FILTER, "cutoff", 0, ValueError),
    (CausalFrequencyFilter, FILTER, "cutoff", "5", TypeError),
    (PointWiseFeedForward, FFN, "hidden_units", 0, ValueError),
    (PointWiseFeedForward, FFN, "hidden_units", 8.0, TypeError),
    (PointWiseFeedForward, FFN, "dropout_rate", 1.0, ValueError),
    (PointWiseFeedForward, FFN, "dropout_rate", -0.1, ValueError),
    (PointWiseFeedForward, FFN, "dropout_rate", "0.1", TypeError),
    (PointWiseFeedForward, FFN, "inner_units", 0, ValueError),
    (PointWiseFeedForward, FFN, "activation", "no_such_activation", ValueError),
    (PointWiseFeedForward, FFN, "activation", 3, TypeError),
    (CausalSelfAttentionBlock, BLOCK, "hidden_units", 0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "num_heads", 0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "num_heads", 2.0, TypeError),
    (CausalSelfAttentionBlock, BLOCK, "dropout_rate", 1.0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "dropout_rate", float("nan"), ValueError),
    (CausalSelfAttentionBlock, BLOCK, "layer_norm", "middle", ValueError),
    (CausalSelfAttentionBlock, BLOCK, "layer_norm", None, TypeError),
    (CausalSelfAttentionBlock, BLOCK, "use_residual", "yes", TypeError),
    (CausalSelfAttentionBlock, BLOCK, "use_residual", 1, TypeError),
    (CausalSelfAttentionBlock, BLOCK, "layer_norm_epsilon", 0.0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "layer_norm_epsilon", float("inf"), ValueError),
    (CausalSelfAttentionBlock, BLOCK, "ffn_units", 0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "ffn_activation", "swish", ValueError),
    (CausalSelfAttentionBlock, {**BLOCK, "max_len": 4}, "frequency_mixing", 1.5, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "frequency_cutoff", 0, ValueError),
    (CausalSelfAttentionBlock, BLOCK, "max_len", 0, ValueError),
    (SASRecEncoder, ENCODER, "max_len", 0, ValueError),
    (SASRecEncoder, ENCODER, "hidden_units", -1, ValueError),
    (SASRecEncoder, ENCODER, "num_blocks", -1, ValueError),
    (SASRecEncoder, ENCODER, "num_blocks", 1.5, TypeError),
    (SASRecEncoder, ENCODER, "num_heads", 0, ValueError),
    (SASRecEncoder, ENCODER, "dropout_rate", 1.0, ValueError),
    (SASRecEncoder, ENCODER, "layer_norm", "middle", ValueError),
    (SASRecEncoder, ENCODER, "use_residual", "true", TypeError),
    (SASRecEncoder, ENCODER, "use_positional_embedding", 0, TypeError),
    (SASRecEncoder, ENCODER, "layer_norm_epsilon", -1.0, ValueError),
    (SASRecEncoder, ENCODER, "ffn_units", 0, ValueError),
    (SASRecEncoder, ENCODER, "ffn_activation", "tanh", ValueError),
    (SASRecEncoder, ENCODER, "frequency_mixing", -0.1, ValueError),
    (SASRecEncoder, ENCODER, "frequency_cutoff", 0, ValueError),
]


@pytest.mark.parametrize("cls, valid, name, value, error", BAD_ARGUMENTS,
                         ids=[f"{c[0].__name__}-{c[2]}={c[3]!r}" for c in BAD_ARGUMENTS])
def test_a_bad_argument_raises_naming_the_layer_the_argument_and_the_value(cls, valid, name, value, error):
    with pytest.raises(error, match=rf"{cls.__name__}: {re.escape(name)} .*{re.escape(repr(value))}"):
        cls(**{**valid, name: value})


@pytest.mark.parametrize("cls", [CausalSelfAttentionBlock, SASRecEncoder])
def test_hidden_units_not_a_multiple_of_num_heads_is_refused(cls):
    kwargs = {**(BLOCK if cls is CausalSelfAttentionBlock else ENCODER), "hidden_units": 10, "num_heads": 4}
    with pytest.raises(ValueError, match=r"hidden_units \(10\) must be divisible by num_heads \(4\)"):
        cls(**kwargs)


def test_frequency_mixing_without_max_len_is_refused():
    with pytest.raises(ValueError, match="frequency_mixing=0.5 needs max_len"):
        CausalSelfAttentionBlock(**BLOCK, frequency_mixing=0.5)


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    block = CausalSelfAttentionBlock(np.int64(8), num_heads=np.int32(2), dropout_rate=np.float32(0.25),
                                     use_residual=np.bool_(True))
    config = block.get_config()
    assert [type(config[k]) for k in ("hidden_units", "num_heads", "dropout_rate", "use_residual")] == \
        [int, int, float, bool]
    json.dumps(config)


def _inputs():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 4, 8)), tf.float32)
    padding = tf.constant([[False, True, True, True], [True, True, True, True]])
    return x, padding


def _run(layer):
    x, padding = _inputs()
    if isinstance(layer, CausalSelfAttentionBlock):
        return layer(x * tf.cast(padding, x.dtype)[..., None], causal_attention_mask(padding), padding)
    if isinstance(layer, SASRecEncoder):
        return layer(x, padding)
    return layer(x)


LAYERS = [
    lambda: PositionalEmbedding(4, name="positions"),
    lambda: CausalFrequencyFilter(4, cutoff=3),
    lambda: PointWiseFeedForward(8, dropout_rate=0.1, activation="gelu", inner_units=16),
    lambda: PointWiseFeedForward(8),
    lambda: CausalSelfAttentionBlock(8, num_heads=2, dropout_rate=0.1, layer_norm="post"),
    lambda: CausalSelfAttentionBlock(8, 2, layer_norm="ligr", use_residual=False, layer_norm_epsilon=1e-6,
                                     ffn_units=16, ffn_activation="gelu", frequency_mixing=0.7,
                                     frequency_cutoff=3, max_len=4),
    lambda: SASRecEncoder(4, 8, num_blocks=0, layer_norm="post", use_positional_embedding=False),
    lambda: SASRecEncoder(4, 8, num_blocks=2, num_heads=2, dropout_rate=0.2, layer_norm="pre",
                          ffn_units=16, ffn_activation="gelu", frequency_mixing=0.7, frequency_cutoff=3),
]


@pytest.mark.parametrize("make", LAYERS, ids=lambda make: repr(make().get_config()))
def test_from_config_rebuilds_an_equal_layer_that_computes_the_same(make):
    layer = make()
    outputs = _run(layer)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    json.dumps(config)  # a Keras config is JSON
    _run(clone)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_run(clone).numpy(), outputs.numpy())


@pytest.mark.parametrize("make", LAYERS[::2], ids=lambda make: type(make()).__name__)
def test_get_config_holds_every_init_argument_and_nothing_else(make):
    layer = make()
    arguments = {name for name, p in inspect.signature(type(layer).__init__).parameters.items()
                 if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert set(layer.get_config()) - BASE_KEYS == arguments


# get_config() of layers built by the code before the layers became a package (keys and values as
# it wrote them): configs saved then must load into the same layer.
EARLIER_CONFIGS = [
    ("SASRecEncoder", {"dropout_rate": 0.2, "dtype": "float32", "ffn_activation": "gelu", "ffn_units": 16,
                       "frequency_cutoff": 3, "frequency_mixing": 0.7, "hidden_units": 8, "layer_norm": "ligr",
                       "layer_norm_epsilon": 1e-08, "max_len": 6, "name": "encoder", "num_blocks": 2,
                       "num_heads": 2, "trainable": True, "use_positional_embedding": True, "use_residual": True}),
    ("CausalSelfAttentionBlock", {"dropout_rate": 0.2, "dtype": "float32", "ffn_activation": "gelu",
                                  "ffn_units": 16, "frequency_cutoff": 3, "frequency_mixing": 0.7,
                                  "hidden_units": 8, "layer_norm": "ligr", "layer_norm_epsilon": 1e-08,
                                  "max_len": 6, "name": "block_0", "num_heads": 2, "trainable": True,
                                  "use_residual": True}),
    ("PointWiseFeedForward", {"activation": "gelu", "dropout_rate": 0.2, "dtype": "float32", "hidden_units": 8,
                              "inner_units": 16, "name": "feed_forward", "trainable": True}),
    ("PositionalEmbedding", {"dtype": "float32", "max_len": 6, "name": "positional_embedding", "trainable": True}),
    ("CausalFrequencyFilter", {"cutoff": 3, "dtype": "float32", "max_len": 6, "name": "frequency_filter",
                               "trainable": True}),
]
# Arguments added since, with the defaults an earlier config loads with.
_TIME_VARIANT = {"time_variant_mixing": 0.0, "time_variant_taps": None, "time_variant_bases": 32}
_WAVELET = {"wavelet_mixing": 0.0, "wavelet_frequency_weight": 0.2, "wavelet_heads": 1, "wavelet_levels": 1}
ADDED_SINCE = {"SASRecEncoder": {"fused_attention": False, **_TIME_VARIANT, **_WAVELET},
               "CausalSelfAttentionBlock": {"fused_attention": False, **_TIME_VARIANT, **_WAVELET}}


@pytest.mark.parametrize("class_name, config", EARLIER_CONFIGS, ids=[c for c, _ in EARLIER_CONFIGS])
def test_configs_written_by_earlier_versions_load_by_their_registered_name_and_old_module(class_name, config):
    # The layers lived in the module sasrec_tf.layers; Keras finds them by "sasrec_tf>ClassName".
    serialized = {"module": "sasrec_tf.layers", "class_name": class_name, "config": dict(config),
                  "registered_name": f"sasrec_tf>{class_name}"}
    layer = keras.saving.deserialize_keras_object(serialized)
    assert type(layer).__name__ == class_name
    assert layer.get_config() == {**config, **ADDED_SINCE.get(class_name, {})}
    assert keras.saving.get_registered_name(type(layer)) == f"sasrec_tf>{class_name}"


def test_a_model_saved_before_the_layers_became_a_package_loads_and_computes_the_same():
    # Saved by that code: LiGR blocks with the frequency filter, a wider GELU FFN, two heads, every
    # weight moved off its initial value (a silently re-initialised layer would not match).
    expected = np.load(DATA / "saved_before_layers_package.npz")
    model = keras.models.load_model(DATA / "saved_before_layers_package.keras", compile=False)
    ids = tf.constant(expected["item_ids"])
    np.testing.assert_allclose(model.query_embeddings(ids).numpy(), expected["query_embeddings"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model(ids, training=False).numpy(), expected["outputs"], rtol=1e-6, atol=1e-6)
