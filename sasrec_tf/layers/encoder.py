"""The SASRec encoder: embedded item sequence in, one representation per position out."""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_block_arguments, check_bool, check_int, check_rate
from sasrec_tf.layers.positional import PositionalEmbedding
from sasrec_tf.layers.self_attention import CausalSelfAttentionBlock, causal_attention_mask


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class SASRecEncoder(keras.layers.Layer):
    """Embedded item sequence → sequence representations: positions, dropout, 0..n blocks, LayerNorm.

    The encoder of :class:`sasrec_tf.SASRec` (its ``encoder`` attribute), without the item
    embedding: the input is the already embedded and scaled sequence. The positional embedding
    (:class:`PositionalEmbedding`) is added, dropout applied, padded positions zeroed, then
    ``num_blocks`` :class:`CausalSelfAttentionBlock` run under :func:`causal_attention_mask`. The
    final LayerNorm is applied for the ``original``, ``pre`` and ``ligr`` placements (Post-LN
    blocks already end normalised), and also with zero blocks under ``post`` so that every
    configuration outputs normalised features. The arguments are :class:`sasrec_tf.SASRecConfig`'s
    fields of the same names, with the same ranges.

    Args:
      max_len: positive integer, the widest sequence (the positional table and the filter's
        window).
      hidden_units: positive integer ``d``, the width of the input and the output; a multiple of
        ``num_heads``.
      num_blocks: integer ``>= 0``, the number of blocks (0: positions, dropout and LayerNorm only).
      num_heads: positive integer, attention heads per block.
      dropout_rate: float in ``[0, 1)``, dropout on the embedded sequence and inside each block.
      layer_norm: where LayerNorm goes, one of :data:`sasrec_tf.choices.LAYER_NORM_PLACEMENTS`.
      use_residual: boolean, whether the blocks' sub-layers add their input back.
      use_positional_embedding: boolean, whether to add the positional embedding.
      layer_norm_epsilon: finite float ``> 0``, every LayerNorm's epsilon.
      ffn_units: positive integer, the FFN's inner width; ``None`` means ``hidden_units``.
      ffn_activation: the FFN's activation, one of :data:`sasrec_tf.choices.FFN_ACTIVATIONS`.
      frequency_mixing: float in ``[0, 1]``, BSARec's ``alpha`` in every block; 0: no filter.
      frequency_cutoff: positive integer, BSARec's ``c``.
      fused_attention: boolean, the blocks compute attention with plain matmuls on
        ``MultiHeadAttention``'s weights (:class:`CausalSelfAttentionBlock`); same outputs.
      time_variant_mixing: float in ``[0, 1]``, the weight of TV-Rec's filter in every block
        (mixed in after the frequency filter); 0: no filter.
      time_variant_taps: positive integer ``<= max_len``, the filter's lags; ``None``: ``max_len``.
      time_variant_bases: integer ``>= 0``, TV-Rec's ``M`` (:class:`CausalTimeVariantFilter`).
      wavelet_mixing: float in ``[0, 1]``, the weight of WEARec's layer in every block (mixed in
        last); 0: none.
      wavelet_frequency_weight: float in ``[0, 1]``, WEARec's ``alpha`` (:class:`CausalWaveletFilter`).
      wavelet_heads: positive integer dividing ``hidden_units``, WEARec's ``num_heads``.
      wavelet_levels: positive integer, ``2 ** wavelet_levels <= max_len``, the Haar levels.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, the item embeddings (already scaled), ``T <= max_len``.
      padding_mask: ``[B, T]`` bool tensor, ``True`` at real items.
      training: Python boolean, whether dropout is active; ``None`` follows Keras' learning phase.
      return_attention_scores: Python boolean, whether to return every block's attention weights.
      last_only: Python boolean; ``True`` returns the last position only (the query that scores
        the next item). Not with ``return_attention_scores``.

    Returns:
      ``[B, T, d]`` tensor of the input's dtype, zero at padded positions (``[B, 1, d]`` with
      ``last_only``, equal to the last row of the full output). With
      ``return_attention_scores``, the pair ``(outputs, scores)``, ``scores`` being a list of
      ``num_blocks`` tensors ``[B, num_heads, T, T]``.

    Raises:
      TypeError: an argument has the wrong type (a float for an integer, a string for a boolean).
      ValueError: an argument is out of its range or not one of its choices, or ``hidden_units``
        is not a multiple of ``num_heads``; when called, ``last_only`` with
        ``return_attention_scores``.
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
        self.max_len = check_int(layer, "max_len", max_len)
        self.num_blocks = check_int(layer, "num_blocks", num_blocks, minimum=0)
        for name, value in check_block_arguments(
                layer, hidden_units=hidden_units, num_heads=num_heads, dropout_rate=dropout_rate, layer_norm=layer_norm,
                use_residual=use_residual, layer_norm_epsilon=layer_norm_epsilon, ffn_units=ffn_units,
                ffn_activation=ffn_activation, frequency_mixing=frequency_mixing,
                frequency_cutoff=frequency_cutoff).items():
            setattr(self, name, value)
        self.use_positional_embedding = check_bool(layer, "use_positional_embedding", use_positional_embedding)
        self.fused_attention = check_bool(layer, "fused_attention", fused_attention)
        self.time_variant_mixing = check_rate(layer, "time_variant_mixing", time_variant_mixing, include_one=True)
        self.time_variant_taps = check_int(layer, "time_variant_taps", time_variant_taps, optional=True)
        if self.time_variant_taps is not None and self.time_variant_taps > self.max_len:
            raise ValueError(f"{layer}: time_variant_taps must be <= max_len ({self.max_len}), "
                             f"got {time_variant_taps!r}")
        self.time_variant_bases = check_int(layer, "time_variant_bases", time_variant_bases, minimum=0)
        self.wavelet_mixing = check_rate(layer, "wavelet_mixing", wavelet_mixing, include_one=True)
        self.wavelet_frequency_weight = check_rate(layer, "wavelet_frequency_weight", wavelet_frequency_weight,
                                                   include_one=True)
        self.wavelet_heads = check_int(layer, "wavelet_heads", wavelet_heads)
        self.wavelet_levels = check_int(layer, "wavelet_levels", wavelet_levels)
        if self.wavelet_levels > self.max_len.bit_length() - 1:  # 2 ** levels > max_len
            raise ValueError(f"{layer}: wavelet_levels must have 2 ** wavelet_levels <= max_len ({self.max_len}), "
                             f"got {wavelet_levels!r}")

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
                fused_attention=self.fused_attention,
                time_variant_mixing=self.time_variant_mixing,
                time_variant_taps=self.time_variant_taps,
                time_variant_bases=self.time_variant_bases,
                wavelet_mixing=self.wavelet_mixing,
                wavelet_frequency_weight=self.wavelet_frequency_weight,
                wavelet_heads=self.wavelet_heads,
                wavelet_levels=self.wavelet_levels,
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
            "fused_attention": self.fused_attention,
            "time_variant_mixing": self.time_variant_mixing,
            "time_variant_taps": self.time_variant_taps,
            "time_variant_bases": self.time_variant_bases,
            "wavelet_mixing": self.wavelet_mixing,
            "wavelet_frequency_weight": self.wavelet_frequency_weight,
            "wavelet_heads": self.wavelet_heads,
            "wavelet_levels": self.wavelet_levels,
        }
