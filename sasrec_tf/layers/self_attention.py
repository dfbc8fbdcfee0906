"""One SASRec block, causal self-attention then a point-wise FFN, and the mask it attends under."""

from __future__ import annotations

import math

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_block_arguments, check_bool, check_int, check_rate
from sasrec_tf.layers.feed_forward import PointWiseFeedForward
from sasrec_tf.layers.frequency import CausalFrequencyFilter
from sasrec_tf.layers.time_variant import CausalTimeVariantFilter
from sasrec_tf.layers.wavelet import CausalWaveletFilter


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class CausalSelfAttentionBlock(keras.layers.Layer):
    """One SASRec block: causal multi-head self-attention then a point-wise feed-forward network.

    Dropout acts on the attention weights and on both FFN layers' outputs (the paper's code; no
    dropout on the attention output). Each sub-layer has an optional residual connection and
    LayerNorm placed according to ``layer_norm`` (see :class:`sasrec_tf.SASRecConfig`). Outputs
    at padded positions are zeroed.

    With ``frequency_mixing`` ``alpha > 0`` (BSARec), the attention sub-layer's output is
    ``alpha * dropout(filter(v)) + (1 - alpha) * attention(q, v)``, where ``filter`` is a
    :class:`CausalFrequencyFilter` (``frequency_cutoff``, ``max_len``) of the sequence ``v`` the
    attention reads its keys and values from (zeroed at padded positions: under ``pre`` and
    ``ligr`` it is ``LN(x)``, not zero there); the residual and LayerNorm follow as usual.
    (BSARec mixes after each branch's own residual and LayerNorm; one shared residual here keeps
    every ``layer_norm`` placement.)

    With ``time_variant_mixing`` ``beta > 0`` (TV-Rec), a :class:`CausalTimeVariantFilter`
    (``time_variant_taps``, ``time_variant_bases``, ``max_len``) of the same ``v`` is mixed in
    last: ``beta * dropout(tv(v)) + (1 - beta) * m``, ``m`` being the output above (attention,
    or attention and frequency filter mixed by ``alpha``). So both filters compose: ``beta`` 1
    is TV-Rec's filter alone, and ``beta`` 0 builds nothing and computes what it did before.

    With ``wavelet_mixing`` ``gamma > 0`` (WEARec), a :class:`CausalWaveletFilter`
    (``wavelet_heads``, ``wavelet_levels``, ``wavelet_frequency_weight``, ``max_len``) of the same
    ``v`` is mixed in after both: ``gamma * dropout(wearec(v)) + (1 - gamma) * m``, ``m`` the
    output above. ``gamma`` 1 is WEARec's layer alone (WEARec has no attention; its layer's own
    residual and LayerNorm are the block's, as for BSARec's).

    With ``fused_attention``, the attention reads the same ``MultiHeadAttention`` variables
    (``attention/query``, ``key``, ``value``, ``attention_output``: names and shapes unchanged, so
    weights saved under either path load into the other) but computes with plain matmuls: one
    against the concatenated query/key/value kernels when the queries are the keys' sequence
    (``pre``, ``post``, ``ligr``), else one for the queries and one for keys and values together
    (``original``, whose query is ``LN(x)`` and keys ``x``; and ``last_only``). Same masking (a
    masked key gets ``-1e9`` before the softmax, as Keras does, so a fully masked row is uniform),
    same dropout on the weights; outputs equal the ``MultiHeadAttention`` path's to float
    rounding (dropout masks differ in training).

    Args:
      hidden_units: positive integer ``d``, the width of the input and the output; a multiple of
        ``num_heads``.
      num_heads: positive integer, attention heads, each of width ``hidden_units // num_heads``.
      dropout_rate: float in ``[0, 1)``, dropout on the attention weights, the FFN's layers (and
        the filter's output and the LiGR gates' inputs), in training only.
      layer_norm: where LayerNorm goes, one of :data:`sasrec_tf.choices.LAYER_NORM_PLACEMENTS`
        (``"original"``: the reference code; ``"pre"``, ``"post"``, ``"ligr"``: Pre-LN with gated
        residuals).
      use_residual: boolean, whether each sub-layer adds its input back (the paper's ablation).
      layer_norm_epsilon: finite float ``> 0``, LayerNorm's epsilon (the reference code's 1e-8).
      ffn_units: positive integer, the FFN's inner width; ``None`` means ``hidden_units``.
      ffn_activation: the FFN's activation, one of :data:`sasrec_tf.choices.FFN_ACTIVATIONS`.
      frequency_mixing: float in ``[0, 1]``, BSARec's ``alpha``; 0 (the default) builds no filter.
      frequency_cutoff: positive integer, BSARec's ``c`` (:class:`CausalFrequencyFilter`).
      time_variant_mixing: float in ``[0, 1]``, the weight ``beta`` of TV-Rec's filter; 0 (the
        default) builds no filter.
      time_variant_taps: positive integer ``<= max_len``, the lags the filter reads; ``None``:
        ``max_len`` (:class:`CausalTimeVariantFilter`).
      time_variant_bases: integer ``>= 0``, TV-Rec's ``M`` (rank of the filter's weights; 0: full).
      wavelet_mixing: float in ``[0, 1]``, the weight ``gamma`` of WEARec's layer; 0 (the
        default) builds none.
      wavelet_frequency_weight: float in ``[0, 1]``, WEARec's ``alpha`` (:class:`CausalWaveletFilter`).
      wavelet_heads: positive integer dividing ``hidden_units``, WEARec's ``num_heads``.
      wavelet_levels: positive integer, ``2 ** wavelet_levels <= max_len``, the Haar levels.
      max_len: positive integer, the widest sequence (the filters' window); needed when
        ``frequency_mixing``, ``time_variant_mixing`` or ``wavelet_mixing`` is ``> 0``, else may
        be ``None``.
      fused_attention: boolean, compute attention with plain matmuls on ``MultiHeadAttention``'s
        weights (above); ``False`` (the default) calls ``MultiHeadAttention``.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, the sequence after the previous block.
      attention_mask: ``[B, T, T]`` bool tensor, ``True`` where query ``i`` may attend to key
        ``j``; build it with :func:`causal_attention_mask`.
      padding_mask: ``[B, T]`` bool tensor, ``True`` at real items.
      training: Python boolean, whether dropout is active; ``None`` follows Keras' learning phase.
      return_attention_scores: Python boolean, whether to return the attention weights as well.
      last_only: Python boolean; ``True`` computes the last position only (its query against
        every key), for the representation that scores the next item.

    Returns:
      ``[B, T, d]`` tensor of the input's dtype, zero at padded positions (``[B, 1, d]`` with
      ``last_only``, equal to the last row of the full output). With
      ``return_attention_scores``, the pair ``(outputs, scores)``, ``scores`` being the attention
      weights ``[B, num_heads, T, T]`` (``[B, num_heads, 1, T]`` with ``last_only``).

    Raises:
      TypeError: an argument has the wrong type (a float for an integer, a string for a boolean).
      ValueError: an argument is out of its range or not one of its choices,
        ``hidden_units`` is not a multiple of ``num_heads`` (or of ``wavelet_heads`` with
        ``wavelet_mixing > 0``), or a filter's mixing ``> 0`` without ``max_len``.
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
        fused_attention: bool = False,
        time_variant_mixing: float = 0.0,
        time_variant_taps: int | None = None,
        time_variant_bases: int = 32,
        wavelet_mixing: float = 0.0,
        wavelet_frequency_weight: float = 0.2,
        wavelet_heads: int = 1,
        wavelet_levels: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        layer = type(self).__name__
        for name, value in check_block_arguments(
                layer, hidden_units=hidden_units, num_heads=num_heads, dropout_rate=dropout_rate, layer_norm=layer_norm,
                use_residual=use_residual, layer_norm_epsilon=layer_norm_epsilon, ffn_units=ffn_units,
                ffn_activation=ffn_activation, frequency_mixing=frequency_mixing,
                frequency_cutoff=frequency_cutoff).items():
            setattr(self, name, value)
        self.max_len = check_int(layer, "max_len", max_len, optional=True)
        self.fused_attention = check_bool(layer, "fused_attention", fused_attention)
        if self.frequency_mixing > 0 and self.max_len is None:
            raise ValueError(f"{layer}: frequency_mixing={frequency_mixing!r} needs max_len (the longest prefix "
                             "the filter sees), got max_len=None")
        self.frequency_filter = (
            CausalFrequencyFilter(self.max_len, self.frequency_cutoff, name="frequency_filter")
            if self.frequency_mixing > 0 else None
        )
        self.filter_dropout = keras.layers.Dropout(self.dropout_rate) if self.frequency_mixing > 0 else None
        self.time_variant_mixing = check_rate(layer, "time_variant_mixing", time_variant_mixing, include_one=True)
        self.time_variant_taps = check_int(layer, "time_variant_taps", time_variant_taps, optional=True)
        self.time_variant_bases = check_int(layer, "time_variant_bases", time_variant_bases, minimum=0)
        if self.time_variant_mixing > 0 and self.max_len is None:
            raise ValueError(f"{layer}: time_variant_mixing={time_variant_mixing!r} needs max_len (the rows of the "
                             "filter's weights), got max_len=None")
        self.time_variant_filter = (
            CausalTimeVariantFilter(self.max_len, self.time_variant_taps, self.time_variant_bases,
                                    name="time_variant_filter")
            if self.time_variant_mixing > 0 else None
        )
        self.time_variant_dropout = keras.layers.Dropout(self.dropout_rate) if self.time_variant_mixing > 0 else None
        self.wavelet_mixing = check_rate(layer, "wavelet_mixing", wavelet_mixing, include_one=True)
        self.wavelet_frequency_weight = check_rate(layer, "wavelet_frequency_weight", wavelet_frequency_weight,
                                                   include_one=True)
        self.wavelet_heads = check_int(layer, "wavelet_heads", wavelet_heads)
        self.wavelet_levels = check_int(layer, "wavelet_levels", wavelet_levels)
        self.wavelet_filter = None
        if self.wavelet_mixing > 0:
            if self.max_len is None:
                raise ValueError(f"{layer}: wavelet_mixing={wavelet_mixing!r} needs max_len (the filter's window), "
                                 "got max_len=None")
            if self.hidden_units % self.wavelet_heads:
                raise ValueError(f"{layer}: hidden_units ({hidden_units}) must be divisible by wavelet_heads "
                                 f"({wavelet_heads})")
            self.wavelet_filter = CausalWaveletFilter(self.max_len, self.wavelet_heads, self.wavelet_levels,
                                                      self.wavelet_frequency_weight, name="wavelet_filter")
        self.wavelet_dropout = keras.layers.Dropout(self.dropout_rate) if self.wavelet_mixing > 0 else None

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
            # ~8% NDCG@10 per epoch (docs/results.md, "Paper parity").
            if self.fused_attention:
                attended, scores = self._fused_attention(query, value, attention_mask, training)
            else:
                attended, scores = self.attention(
                    query, value, attention_mask=attention_mask, training=training, return_attention_scores=True
                )
            if self.frequency_filter is None and self.time_variant_filter is None and self.wavelet_filter is None:
                return attended, scores
            real = tf.cast(full_padding_mask, value.dtype)[..., tf.newaxis]
            if self.frequency_filter is not None:
                filtered = self.frequency_filter(value * real, last_only=last_only)
                alpha = self.frequency_mixing
                attended = alpha * self.filter_dropout(filtered, training=training) + (1.0 - alpha) * attended
            if self.time_variant_filter is not None:
                filtered = self.time_variant_filter(value * real, full_padding_mask, last_only=last_only)
                beta = self.time_variant_mixing
                attended = beta * self.time_variant_dropout(filtered, training=training) + (1.0 - beta) * attended
            if self.wavelet_filter is not None:
                filtered = self.wavelet_filter(value * real, full_padding_mask, last_only=last_only)
                gamma = self.wavelet_mixing
                attended = gamma * self.wavelet_dropout(filtered, training=training) + (1.0 - gamma) * attended
            return attended, scores

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
            "fused_attention": self.fused_attention,
            "time_variant_mixing": self.time_variant_mixing,
            "time_variant_taps": self.time_variant_taps,
            "time_variant_bases": self.time_variant_bases,
            "wavelet_mixing": self.wavelet_mixing,
            "wavelet_frequency_weight": self.wavelet_frequency_weight,
            "wavelet_heads": self.wavelet_heads,
            "wavelet_levels": self.wavelet_levels,
        }

    def _fused_attention(self, query, value, attention_mask, training):
        """``MultiHeadAttention(query, value, attention_mask)`` with plain matmuls on its own
        variables: returns ``(attended [B, Tq, d], weights [B, heads, Tq, T])``."""
        attention = self.attention
        heads, width = self.num_heads, self.hidden_units
        key_dim = width // heads
        if not attention.built:  # the variables, under the names, that calling it would create
            # From the block's width, not the inputs' static shapes: a model built in a graph (the
            # parameter-server path builds it in a throwaway tf.Graph) sees inputs of unknown rank.
            inputs = tf.TensorShape([None, None, width])
            with tf.name_scope(attention.name):
                attention._build_from_signature(inputs, inputs)
                for layer, shape in ((attention._query_dense, inputs), (attention._key_dense, inputs),
                                     (attention._value_dense, inputs),
                                     (attention._output_dense, [None, None, heads, key_dim])):
                    with tf.name_scope(layer.name):
                        layer.build(tf.TensorShape(shape))  # not _maybe_build: in graph mode it reads shapes off tensors
            attention.built = True
        dense = (attention._query_dense, attention._key_dense, attention._value_dense)
        kernels = [tf.reshape(layer.kernel, [-1, width]) for layer in dense]  # [d_in, heads * key_dim]
        biases = [tf.reshape(layer.bias, [width]) for layer in dense]

        def project(inputs, start, stop):  # inputs [B, T, d_in] -> [B, T, (stop - start) * width]
            kernel = kernels[start] if stop - start == 1 else tf.concat(kernels[start:stop], axis=1)
            bias = biases[start] if stop - start == 1 else tf.concat(biases[start:stop], axis=0)
            shape = tf.shape(inputs)
            flat = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel)
            return tf.reshape(tf.nn.bias_add(flat, bias), tf.concat([shape[:-1], [(stop - start) * width]], 0))

        if query is value:
            queries, keys, values = tf.split(project(value, 0, 3), 3, axis=-1)
        else:
            queries = project(query, 0, 1)
            keys, values = tf.split(project(value, 1, 3), 2, axis=-1)
        queries = queries * (1.0 / math.sqrt(float(key_dim)))  # where MultiHeadAttention scales

        def split_heads(tensor):  # [B, T, width] -> [B, heads, T, key_dim] (1 head: [B, T, width])
            if heads == 1:
                return tensor
            shape = tf.shape(tensor)
            return tf.transpose(tf.reshape(tensor, [shape[0], shape[1], heads, key_dim]), [0, 2, 1, 3])

        logits = tf.matmul(split_heads(queries), split_heads(keys), transpose_b=True)
        mask = attention_mask if heads == 1 else attention_mask[:, tf.newaxis]
        large_negative = tf.float16.min if logits.dtype == tf.float16 else -1e9  # Keras' Softmax
        logits += (1.0 - tf.cast(mask, logits.dtype)) * large_negative
        weights = tf.nn.softmax(logits, axis=-1)
        attended = tf.matmul(attention._dropout_layer(weights, training=training), split_heads(values))
        if heads > 1:
            shape = tf.shape(attended)
            attended = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [shape[0], shape[2], width])
        else:
            weights = weights[:, tf.newaxis]
        output = attention._output_dense
        shape = tf.shape(attended)
        flat = tf.matmul(tf.reshape(attended, [-1, width]), tf.reshape(output.kernel, [width, -1]))
        attended = tf.reshape(tf.nn.bias_add(flat, output.bias), tf.concat([shape[:-1], [-1]], 0))
        return attended, weights


def causal_attention_mask(padding_mask: tf.Tensor) -> tf.Tensor:
    """The attention mask of SASRec: query ``i`` sees the keys ``j <= i`` that are real items.

    Args:
      padding_mask: ``[B, T]`` bool tensor, ``True`` at real items.

    Returns:
      ``[B, T, T]`` bool tensor, ``True`` where query ``i`` may attend to key ``j``: the
      ``attention_mask`` of :class:`CausalSelfAttentionBlock`.
    """
    width = tf.shape(padding_mask)[1]
    causal = tf.linalg.band_part(tf.ones((width, width), dtype=tf.bool), -1, 0)
    return tf.logical_and(causal[tf.newaxis], padding_mask[:, tf.newaxis, :])
