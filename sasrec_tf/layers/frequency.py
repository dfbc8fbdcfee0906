"""BSARec's frequency filter, made causal: a fixed low-pass convolution plus a learned rescaling."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_int


def lowpass_kernel_matrix(max_len: int, cutoff: int) -> np.ndarray:
    """The causal low-pass filter of :class:`CausalFrequencyFilter` as a matrix.

    ``K[t, s] = k[t - s]`` (lower-triangular Toeplitz), where ``k[j]`` is the weight of the item
    ``j`` steps back in BSARec's low-pass value at the last position of a ``max_len`` window: an
    rFFT along the window keeping its ``cutoff // 2 + 1`` lowest frequencies, then the inverse
    rFFT.

    Args:
      max_len: the window's width.
      cutoff: BSARec's ``c``; the ``c // 2 + 1`` lowest frequencies pass.

    Returns:
      ``[max_len, max_len]`` float64 array, zero above the diagonal.
    """
    kept = int(cutoff) // 2 + 1
    spectrum = np.fft.rfft(np.eye(max_len), axis=0)  # column s: the spectrum of an item at s alone
    spectrum[kept:] = 0
    last_row = np.fft.irfft(spectrum, n=max_len, axis=0)[max_len - 1]  # weights of items 0..max_len-1
    kernel = last_row[::-1]  # kernel[j]: the item j steps before the last
    lags = np.arange(max_len)[:, None] - np.arange(max_len)[None, :]
    return np.where(lags >= 0, kernel[np.clip(lags, 0, None)], 0.0)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
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

    The one weight, ``sqrt_beta [d]`` (standard normal, as BSARec), is created on the first call.

    Args:
      max_len: positive integer, the window's width: the widest sequence the layer accepts.
      cutoff: positive integer, BSARec's ``c``: the ``c // 2 + 1`` lowest frequencies are the
        low-pass part.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, ``T <= max_len``, zero at padded positions.
      last_only: Python boolean; ``True`` computes the last position only.

    Returns:
      ``[B, T, d]`` tensor of the input's dtype (``[B, 1, d]`` with ``last_only``, equal to the
      last row of the full output).

    Raises:
      TypeError: an argument is not an integer.
      ValueError: an argument is ``< 1``.
    """

    def __init__(self, max_len: int, cutoff: int = 5, **kwargs):
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.max_len = check_int(layer, "max_len", max_len)
        self.cutoff = check_int(layer, "cutoff", cutoff)
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
