"""TV-Rec's time-variant filter, made causal: lag weights that depend on the item's place in the history."""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_int


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class CausalTimeVariantFilter(keras.layers.Layer):
    """TV-Rec's time-variant convolution (Shin et al., NeurIPS 2025), made causal.

    TV-Rec's filter is a node-variant graph filter on a directed cycle over the padded window: the
    output at window position ``i`` is ``sum_k h_i[k] x[i - k]`` (lags ``k = 0..K``, indices
    modulo the cycle), with ``h_i = Re(c_i B)`` for learned coefficients ``c [positions, M]`` and
    ``M`` unit-norm bases ``B [M, K + 1]``. It indexes ``i`` in the left-padded window, whose last
    slot is always the most recent item, so a position's weights depend on how many items come
    *after* it, and it trains on the last position only. Here the weights of the output at ``t``
    depend on the lag ``t - s`` and on ``p(t)``, the number of real items before ``t`` (0 at the
    first item): ``y[t] = sum_k w[p(t), k] x[t - k]``, ``w = c @ normalize(B)`` (real ``c``,
    ``B``; TV-Rec's real part ``c_re B_re - c_im B_im`` is a sum of such terms). So ``y[t]`` reads
    items at or before ``t`` only, equals what the history cut at ``t`` gives at its last position
    (every position trains as a prefix sample), and does not change with the amount of padding.
    Weights are shared by the ``d`` channels, as in TV-Rec.

    Weights, created on the first call: ``coefficients [max_len, bases]`` (normal, stddev
    1e-3, as TV-Rec) and ``basis [bases, taps]`` (standard normal; rows normalised when used);
    with ``bases=0``, ``coefficients [max_len, taps]`` is the full table (TV-Rec's ``M = 0``).

    Args:
      max_len: positive integer, the widest sequence the layer accepts (the rows of ``w``).
      taps: positive integer ``<= max_len``, the lags ``0..taps - 1`` the filter reads; ``None``
        means ``max_len`` (every lag, as TV-Rec's ``K = 50`` on its 50-item window).
      bases: integer ``>= 0``, TV-Rec's ``M``, the rank of ``w``; 0: a full table.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, ``T <= max_len``; padded positions are ignored.
      padding_mask: ``[B, T]`` bool tensor, ``True`` at real items.
      last_only: Python boolean; ``True`` computes the last position only.

    Returns:
      ``[B, T, d]`` tensor of the input's dtype, zero at padded positions (``[B, 1, d]`` with
      ``last_only``, equal to the last row of the full output).

    Raises:
      TypeError: an argument is not an integer.
      ValueError: ``max_len`` or ``taps < 1``, ``taps > max_len``, or ``bases < 0``.
    """

    def __init__(self, max_len: int, taps: int | None = None, bases: int = 32, **kwargs):
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.max_len = check_int(layer, "max_len", max_len)
        self.taps = check_int(layer, "taps", taps, optional=True)
        if self.taps is not None and self.taps > self.max_len:
            raise ValueError(f"{layer}: taps must be <= max_len ({self.max_len}; no lag reaches further), got {taps!r}")
        self.bases = check_int(layer, "bases", bases, minimum=0)

    @property
    def num_taps(self) -> int:
        """The lags the filter reads, ``taps`` or ``max_len``."""
        return self.max_len if self.taps is None else self.taps

    def build(self, input_shape):
        small = keras.initializers.RandomNormal(stddev=1e-3)  # TV-Rec's: the filter starts near zero
        if self.bases:
            self.coefficients = self.add_weight(name="coefficients", shape=(self.max_len, self.bases),
                                                initializer=small)
            self.basis = self.add_weight(name="basis", shape=(self.bases, self.num_taps),
                                         initializer=keras.initializers.RandomNormal(stddev=1.0))
        else:
            self.coefficients = self.add_weight(name="coefficients", shape=(self.max_len, self.num_taps),
                                                initializer=small)
            self.basis = None
        super().build(input_shape)

    def tap_weights(self) -> tf.Tensor:
        """``w [max_len, taps]``: row ``p`` weighs the lags ``0..taps - 1`` of the item with ``p``
        real items before it."""
        if self.basis is None:
            return tf.convert_to_tensor(self.coefficients)
        return tf.matmul(self.coefficients, tf.math.l2_normalize(self.basis, axis=1))

    def call(self, inputs, padding_mask, last_only=False):
        width = tf.shape(inputs)[1]
        tf.debugging.assert_less_equal(width, self.max_len, message="sequence width exceeds the filter's max_len")
        real = tf.cast(padding_mask, inputs.dtype)
        # p(t): real items before t, counted from the first one (left padding adds nothing).
        positions = tf.maximum(tf.cumsum(tf.cast(padding_mask, tf.int32), axis=1) - 1, 0)
        # Lags >= taps weigh 0; lags >= width never occur: w widened or cut to [max_len, width].
        weights = tf.cast(self.tap_weights(), inputs.dtype)
        weights = tf.pad(weights, [[0, 0], [0, tf.maximum(width - self.num_taps, 0)]])[:, :width]
        rows, query_real = tf.range(width), real
        if last_only:
            rows, positions, query_real = rows[-1:], positions[:, -1:], real[:, -1:]
        lags = rows[:, tf.newaxis] - tf.range(width)[tf.newaxis, :]  # [Tq, T]
        per_position = tf.gather(weights, positions)  # [B, Tq, width]: w[p(t), k]
        shape = tf.shape(per_position)
        lag_index = tf.broadcast_to(tf.maximum(lags, 0)[tf.newaxis], shape)
        mixing = tf.gather(per_position, lag_index, axis=2, batch_dims=2)  # [B, Tq, T]: w[p(t), t - s]
        mixing = tf.where((lags >= 0)[tf.newaxis], mixing, tf.zeros_like(mixing))
        outputs = tf.einsum("bts,bsd->btd", mixing, inputs * real[..., tf.newaxis])
        return outputs * query_real[..., tf.newaxis]

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "taps": self.taps, "bases": self.bases}
