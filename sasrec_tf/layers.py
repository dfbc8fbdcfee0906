"""Keras layers of SASRec: positional embedding, causal self-attention block, encoder stack.

Shapes: ``B`` batch, ``T`` sequence width (``T <= max_len``), ``d`` hidden units. Sequences are
left-padded; ``padding_mask`` is ``True`` at real items.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.config import LAYER_NORM_PLACEMENTS

_PACKAGE = "sasrec_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PositionalEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position, counted from the right end of the sequence.

    The most recent item gets position 0, the one before it position 1, and so on. With left
    padding this is the reference implementation's absolute positions read backwards when
    ``T == max_len``, and it makes the output independent of how much padding precedes the items:
    a batch may be cut to its longest sequence without changing any result.

    Input ``[B, T, d]`` with ``T <= max_len``; output ``[B, T, d]``.
    """

    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = int(max_len)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_len, int(input_shape[-1])),
            initializer=keras.initializers.GlorotUniform(),
        )
        super().build(input_shape)

    def call(self, inputs):
        width = tf.shape(inputs)[1]
        tf.debugging.assert_less_equal(
            width, self.max_len, message="sequence width exceeds the positional embedding's max_len"
        )
        positions = tf.reverse(self.embeddings[:width], axis=[0])
        return inputs + tf.cast(positions, inputs.dtype)[tf.newaxis]

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PointWiseFeedForward(keras.layers.Layer):
    """Two position-wise dense layers with dropout: ``d -> inner_units -> d``.

    The paper's FFN is ``inner_units = d`` (the default) with ReLU between.
    """

    def __init__(self, hidden_units: int, dropout_rate: float = 0.0, activation="relu", inner_units=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.inner_units = int(inner_units) if inner_units is not None else self.hidden_units
        self.dropout_rate = float(dropout_rate)
        self.activation = keras.activations.get(activation)
        self.inner = keras.layers.Dense(self.inner_units, activation=self.activation, name="inner")
        self.outer = keras.layers.Dense(self.hidden_units, name="outer")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def call(self, inputs, training=None):
        hidden = self.dropout(self.inner(inputs), training=training)
        return self.dropout(self.outer(hidden), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "inner_units": self.inner_units,
            "dropout_rate": self.dropout_rate,
            "activation": keras.activations.serialize(self.activation),
        }


def lowpass_kernel_matrix(max_len: int, cutoff: int) -> np.ndarray:
    """``[max_len, max_len]`` lower-triangular Toeplitz matrix ``K[t, s] = k[t - s]``, where ``k[j]``
    is the weight of the item ``j`` steps back in BSARec's low-pass value at the last position of a
    ``max_len`` window: an rFFT along the window keeping its ``cutoff // 2 + 1`` lowest
    frequencies, then the inverse rFFT."""
    kept = int(cutoff) // 2 + 1
    spectrum = np.fft.rfft(np.eye(max_len), axis=0)  # column s: the spectrum of an item at s alone
    spectrum[kept:] = 0
    last_row = np.fft.irfft(spectrum, n=max_len, axis=0)[max_len - 1]  # weights of items 0..max_len-1
    kernel = last_row[::-1]  # kernel[j]: the item j steps before the last
    lags = np.arange(max_len)[:, None] - np.arange(max_len)[None, :]
    return np.where(lags >= 0, kernel[np.clip(lags, 0, None)], 0.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CausalFrequencyFilter(keras.layers.Layer):
    """BSARec's frequency filter (Shin et al., AAAI 2024), made causal.

    BSARec splits a window of ``max_len`` positions into the low frequencies of its rFFT (the
    ``cutoff // 2 + 1`` lowest: a slow trend of the user's taste) and the rest, and rescales the
    rest by a learned ``beta^2`` per unit: ``low + beta^2 * (x - low)``. Its rFFT spans the whole
    window, so every position but the last reads the future; BSARec trains and predicts at the last
    position only, each prefix of a history as its own right-aligned window. Here position ``t``
    gets what BSARec computes at the last position of the window ending at ``t`` (zero before the
    first item): a fixed causal convolution (:func:`lowpass_kernel_matrix`). So every position
    trains as one of BSARec's prefix samples, outputs never depend on later items or on the amount
    of padding, and at the last position of a window it is BSARec's filter.

    Call with ``inputs [B, T, d]`` (``T <= max_len``, zero at padded positions) and, with
    ``last_only``, get the ``[B, 1, d]`` output of the last position only.
    """

    def __init__(self, max_len: int, cutoff: int = 5, **kwargs):
        super().__init__(**kwargs)
        if cutoff < 1:
            raise ValueError(f"cutoff must be >= 1, got {cutoff}")
        self.max_len = int(max_len)
        self.cutoff = int(cutoff)
        self._kernel = lowpass_kernel_matrix(self.max_len, self.cutoff).astype(np.float32)

    def build(self, input_shape):
        # BSARec initialises sqrt(beta) from a standard normal.
        self.sqrt_beta = self.add_weight(name="sqrt_beta", shape=(int(input_shape[-1]),),
                                         initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, inputs, last_only=False):
        width = tf.shape(inputs)[1]
        # Rows for the window's last `width` positions: the weights depend on lags only.
        kernel = tf.constant(self._kernel, inputs.dtype)[:width, :width]
        values = inputs
        if last_only:
            kernel, values = kernel[-1:], inputs[:, -1:, :]
        low = tf.einsum("ts,bsd->btd", kernel, inputs)
        return low + tf.square(tf.cast(self.sqrt_beta, inputs.dtype)) * (values - low)

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "cutoff": self.cutoff}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CausalSelfAttentionBlock(keras.layers.Layer):
    """One SASRec block: causal multi-head self-attention then a point-wise feed-forward network.

    Dropout acts on the attention weights and on both FFN layers' outputs (the paper's code; no
    dropout on the attention output). Each sub-layer has an optional residual connection and
    LayerNorm placed according to ``layer_norm`` (see :class:`sasrec_tf.SASRecConfig`). Outputs
    at padded positions are zeroed.

    Call with ``inputs [B, T, d]``, ``attention_mask [B, T, T]`` (bool, ``True`` where query ``i``
    may attend to key ``j``; build it with :func:`causal_attention_mask`) and ``padding_mask
    [B, T]``. Returns ``[B, T, d]``.

    With ``frequency_mixing`` ``alpha > 0`` (BSARec), the attention sub-layer's output is
    ``alpha * dropout(filter(v)) + (1 - alpha) * attention(q, v)``, where ``filter`` is a
    :class:`CausalFrequencyFilter` (``frequency_cutoff``, ``max_len``) of the sequence ``v`` the
    attention reads its keys and values from (zeroed at padded positions: under ``pre`` and
    ``ligr`` it is ``LN(x)``, not zero there); the residual and LayerNorm follow as usual.
    (BSARec mixes after each branch's own residual and LayerNorm; one shared residual here keeps
    every ``layer_norm`` placement.)
    """

    def __init__(
        self,
        hidden_units: int,
        num_heads: int = 1,
        dropout_rate: float = 0.0,
        layer_norm: str = "original",
        use_residual: bool = True,
        layer_norm_epsilon: float = 1e-8,
        ffn_units: int | None = None,
        ffn_activation: str = "relu",
        frequency_mixing: float = 0.0,
        frequency_cutoff: int = 5,
        max_len: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if layer_norm not in LAYER_NORM_PLACEMENTS:
            raise ValueError(f"layer_norm must be one of {LAYER_NORM_PLACEMENTS}, got {layer_norm!r}")
        if hidden_units % num_heads:
            raise ValueError(f"hidden_units ({hidden_units}) must be divisible by num_heads ({num_heads})")
        self.hidden_units = int(hidden_units)
        self.num_heads = int(num_heads)
        self.dropout_rate = float(dropout_rate)
        self.layer_norm = layer_norm
        self.use_residual = bool(use_residual)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.ffn_units = int(ffn_units) if ffn_units is not None else None
        self.ffn_activation = ffn_activation
        self.frequency_mixing = float(frequency_mixing)
        self.frequency_cutoff = int(frequency_cutoff)
        self.max_len = int(max_len) if max_len is not None else None
        if not 0.0 <= self.frequency_mixing <= 1.0:
            raise ValueError(f"frequency_mixing must be in [0, 1], got {frequency_mixing!r}")
        if self.frequency_mixing > 0 and self.max_len is None:
            raise ValueError("frequency_mixing needs max_len (the longest prefix the filter sees)")
        self.frequency_filter = (
            CausalFrequencyFilter(self.max_len, self.frequency_cutoff, name="frequency_filter")
            if self.frequency_mixing > 0 else None
        )
        self.filter_dropout = keras.layers.Dropout(self.dropout_rate) if self.frequency_mixing > 0 else None

        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self.hidden_units // self.num_heads,
            dropout=self.dropout_rate,
            name="attention",
        )
        self.feed_forward = PointWiseFeedForward(
            self.hidden_units, self.dropout_rate, activation=self.ffn_activation, inner_units=self.ffn_units,
            name="feed_forward",
        )
        self.attention_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="attention_norm")
        self.feed_forward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feed_forward_norm"
        )
        if self.layer_norm == "ligr":
            # LiGR (Linear + Gating + Residual; eSASRec): each sub-layer's output, dropped out, is
            # let into the residual stream through a sigmoid gate computed from the stream itself.
            self.attention_gate = keras.layers.Dense(self.hidden_units, activation="sigmoid", name="attention_gate")
            self.feed_forward_gate = keras.layers.Dense(self.hidden_units, activation="sigmoid",
                                                        name="feed_forward_gate")
            self.gated_dropout = keras.layers.Dropout(self.dropout_rate)

    def _residual(self, inputs, outputs):
        return inputs + outputs if self.use_residual else outputs

    def call(self, inputs, attention_mask, padding_mask, training=None, return_attention_scores=False,
             last_only=False):
        """With ``last_only``, only the last position is computed (queries ``[B, 1, d]`` against all
        keys): the output is ``[B, 1, d]``, equal to the last row of the full output."""
        full_padding_mask = padding_mask
        if last_only:
            queries = inputs[:, -1:, :]
            attention_mask, padding_mask = attention_mask[:, -1:, :], padding_mask[:, -1:]
        else:
            queries = inputs

        def attend(query, value):
            # Dropout acts on the attention weights only (inside MultiHeadAttention), as in the
            # paper's code and the PyTorch port; a second dropout on the attention output cost
            # ~8% NDCG@10 per epoch (benchmarks/README.md, "Paper parity").
            attended, scores = self.attention(
                query, value, attention_mask=attention_mask, training=training, return_attention_scores=True
            )
            if self.frequency_filter is None:
                return attended, scores
            real = tf.cast(full_padding_mask, value.dtype)[..., tf.newaxis]
            filtered = self.frequency_filter(value * real, last_only=last_only)
            alpha = self.frequency_mixing
            return alpha * self.filter_dropout(filtered, training=training) + (1.0 - alpha) * attended, scores

        if self.layer_norm == "original":
            # Reference code: Q = LN(x); keys/values = x; residual adds the normalised query.
            query = self.attention_norm(queries)
            attended, scores = attend(query, inputs)
            hidden = self._residual(query, attended)
            hidden = self.feed_forward_norm(hidden)
            outputs = self._residual(hidden, self.feed_forward(hidden, training=training))
        elif self.layer_norm == "pre":
            normed = self.attention_norm(inputs)
            attended, scores = attend(normed[:, -1:, :] if last_only else normed, normed)
            hidden = self._residual(queries, attended)
            outputs = self._residual(hidden, self.feed_forward(self.feed_forward_norm(hidden), training=training))
        elif self.layer_norm == "ligr":
            normed = self.attention_norm(inputs)
            attended, scores = attend(normed[:, -1:, :] if last_only else normed, normed)
            hidden = self._residual(
                queries, self.attention_gate(queries) * self.gated_dropout(attended, training=training))
            update = self.feed_forward(self.feed_forward_norm(hidden), training=training)
            outputs = self._residual(
                hidden, self.feed_forward_gate(hidden) * self.gated_dropout(update, training=training))
        else:  # post
            attended, scores = attend(queries, inputs)
            hidden = self.attention_norm(self._residual(queries, attended))
            outputs = self.feed_forward_norm(self._residual(hidden, self.feed_forward(hidden, training=training)))

        outputs = outputs * tf.cast(padding_mask, outputs.dtype)[..., tf.newaxis]
        if return_attention_scores:
            return outputs, scores
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "num_heads": self.num_heads,
            "dropout_rate": self.dropout_rate,
            "layer_norm": self.layer_norm,
            "use_residual": self.use_residual,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "ffn_units": self.ffn_units,
            "ffn_activation": self.ffn_activation,
            "frequency_mixing": self.frequency_mixing,
            "frequency_cutoff": self.frequency_cutoff,
            "max_len": self.max_len,
        }


def causal_attention_mask(padding_mask: tf.Tensor) -> tf.Tensor:
    """``[B, T]`` real-item mask → ``[B, T, T]`` mask: query ``i`` sees keys ``j <= i`` that are real."""
    width = tf.shape(padding_mask)[1]
    causal = tf.linalg.band_part(tf.ones((width, width), dtype=tf.bool), -1, 0)
    return tf.logical_and(causal[tf.newaxis], padding_mask[:, tf.newaxis, :])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SASRecEncoder(keras.layers.Layer):
    """Embedded item sequence → sequence representations: positions, dropout, 0..n blocks, LayerNorm.

    Call with ``inputs [B, T, d]`` (item embeddings, already scaled) and ``padding_mask [B, T]``.
    Returns ``[B, T, d]``, zero at padded positions. The final LayerNorm is applied for the
    ``original`` and ``pre`` placements (Post-LN blocks already end normalised), and also with
    zero blocks under ``post`` so that every configuration outputs normalised features.
    """

    def __init__(
        self,
        max_len: int,
        hidden_units: int,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout_rate: float = 0.0,
        layer_norm: str = "original",
        use_residual: bool = True,
        use_positional_embedding: bool = True,
        layer_norm_epsilon: float = 1e-8,
        ffn_units: int | None = None,
        ffn_activation: str = "relu",
        frequency_mixing: float = 0.0,
        frequency_cutoff: int = 5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
        self.max_len = int(max_len)
        self.hidden_units = int(hidden_units)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout_rate = float(dropout_rate)
        self.layer_norm = layer_norm
        self.use_residual = bool(use_residual)
        self.use_positional_embedding = bool(use_positional_embedding)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.ffn_units = int(ffn_units) if ffn_units is not None else None
        self.ffn_activation = ffn_activation
        self.frequency_mixing = float(frequency_mixing)
        self.frequency_cutoff = int(frequency_cutoff)

        self.positional_embedding = (
            PositionalEmbedding(self.max_len, name="positional_embedding") if self.use_positional_embedding else None
        )
        self.embedding_dropout = keras.layers.Dropout(self.dropout_rate)
        self.blocks = [
            CausalSelfAttentionBlock(
                self.hidden_units,
                num_heads=self.num_heads,
                dropout_rate=self.dropout_rate,
                layer_norm=self.layer_norm,
                use_residual=self.use_residual,
                layer_norm_epsilon=self.layer_norm_epsilon,
                ffn_units=self.ffn_units,
                ffn_activation=self.ffn_activation,
                frequency_mixing=self.frequency_mixing,
                frequency_cutoff=self.frequency_cutoff,
                max_len=self.max_len,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]
        final_norm = self.layer_norm != "post" or self.num_blocks == 0
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="final_norm") if final_norm else None
        )

    def call(self, inputs, padding_mask, training=None, return_attention_scores=False, last_only=False):
        """``[B, T, d]`` representations, or with ``last_only`` only the last position's ``[B, 1, d]``
        (the query that scores the next item): earlier blocks still see every position, the last
        block and the final LayerNorm compute one row, about a third less work for 2 blocks."""
        if last_only and return_attention_scores:
            raise ValueError("return_attention_scores needs every position; it cannot be combined with last_only")
        mask = tf.cast(padding_mask, inputs.dtype)[..., tf.newaxis]
        hidden = inputs
        if self.positional_embedding is not None:
            hidden = self.positional_embedding(hidden)
        hidden = self.embedding_dropout(hidden, training=training) * mask
        attention_mask = causal_attention_mask(padding_mask)
        all_scores = []
        for index, block in enumerate(self.blocks):
            if return_attention_scores:
                hidden, scores = block(
                    hidden, attention_mask, padding_mask, training=training, return_attention_scores=True
                )
                all_scores.append(scores)
            else:
                last = last_only and index == len(self.blocks) - 1
                hidden = block(hidden, attention_mask, padding_mask, training=training, last_only=last)
        if last_only:
            hidden, mask = hidden[:, -1:, :], mask[:, -1:, :]  # no-op after a last-only block
        if self.final_norm is not None:
            hidden = self.final_norm(hidden) * mask
        if return_attention_scores:
            return hidden, all_scores
        return hidden

    def get_config(self):
        return {
            **super().get_config(),
            "max_len": self.max_len,
            "hidden_units": self.hidden_units,
            "num_blocks": self.num_blocks,
            "num_heads": self.num_heads,
            "dropout_rate": self.dropout_rate,
            "layer_norm": self.layer_norm,
            "use_residual": self.use_residual,
            "use_positional_embedding": self.use_positional_embedding,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "ffn_units": self.ffn_units,
            "ffn_activation": self.ffn_activation,
            "frequency_mixing": self.frequency_mixing,
            "frequency_cutoff": self.frequency_cutoff,
        }
