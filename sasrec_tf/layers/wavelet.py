"""WEARec's wavelet-enhanced adaptive frequency filter, made causal: a Haar smoothing with learned
detail weights beside a context-dependent frequency filter."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_int, check_rate


def haar_average_matrices(max_len: int, levels: int) -> np.ndarray:
    """The causal Haar approximations of :class:`CausalWaveletFilter` as matrices.

    ``A_j[t, s] = 2^-j`` for ``0 <= t - s < 2^j``, else 0: row ``t`` of ``A_j`` averages the
    ``2^j`` positions ending at ``t`` (positions before the window count as zeros), the Haar
    approximation at level ``j`` of the block whose last slot is ``t``. ``A_0`` is the identity.

    Args:
      max_len: the window's width.
      levels: the deepest level ``L``.

    Returns:
      ``[L + 1, max_len, max_len]`` float64 array, zero above the diagonal.
    """
    lags = np.arange(max_len)[:, None] - np.arange(max_len)[None, :]
    return np.stack([np.where((lags >= 0) & (lags < 2**j), 2.0**-j, 0.0) for j in range(levels + 1)])


def frequency_response_basis(max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """How WEARec's per-bin filter and bias act at the last position of a ``max_len`` window.

    WEARec filters a window as ``irfft(f * rfft(x) + b)`` (both orthonormal, ``f`` and ``b`` real
    per frequency bin). At the last position that is ``sum_j h[j] x[last - j] + beta`` with
    ``h = f @ C`` and ``beta = b @ g``: ``C[k, j] = c_k cos(2 pi k j / N) / N`` and
    ``g[k] = c_k cos(2 pi k / N) / sqrt(N)``, ``c_k`` being 2 for the bins the real spectrum counts
    twice and 1 for the zero frequency (and for ``N / 2`` when ``N`` is even).

    Args:
      max_len: the window's width ``N``.

    Returns:
      ``(C, g)``: ``[N // 2 + 1, N]`` and ``[N // 2 + 1]`` float64 arrays.
    """
    bins = np.arange(max_len // 2 + 1)
    twice = np.where((bins == 0) | ((max_len % 2 == 0) & (bins == max_len // 2)), 1.0, 2.0)
    angles = 2.0 * np.pi * bins[:, None] * np.arange(max_len)[None, :] / max_len
    return twice[:, None] * np.cos(angles) / max_len, twice * np.cos(2.0 * np.pi * bins / max_len) / np.sqrt(max_len)


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class CausalWaveletFilter(keras.layers.Layer):
    """WEARec's layer (Xu et al., AAAI 2026: wavelet-enhanced adaptive frequency filter), made causal.

    WEARec replaces attention by ``(1 - alpha) * wavelet(x) + alpha * dff(x)`` over the padded
    window of ``N = max_len`` positions, both per head (``heads`` groups of the ``d`` channels):

    * ``wavelet``: a one-level Haar transform of the position pairs ``(0, 1), (2, 3), ...``:
      approximation ``(x_even + x_odd) / 2`` and detail ``(x_even - x_odd) / 2``, the detail
      scaled by a learned weight per pair and channel, then reconstructed;
    * ``dff`` (dynamic frequency filter): ``irfft(f * rfft(x) + b)`` (orthonormal) with
      ``f = base_filter * (1 + s)`` and ``b = base_bias + o`` per head and frequency bin, ``(s, o)``
      an MLP (``d -> d``, GELU, ``-> heads x bins x 2``) of the mean of the window.

    Both read the future (the even slot of a pair reads the odd one after it; the rFFT spans the
    window), the pairs sit at absolute window slots and the mean counts the padded slots, so
    WEARec trains and predicts at the last position only. Here position ``t`` gets what WEARec
    computes at the last position of the window ending at ``t`` (its pair is ``(t - 1, t)``),
    with two changes: the context is the mean of the real items up to ``t`` (not of the padded
    window), and the Haar part may go ``levels`` deep, ``y_w[t] = A_L x[t] + sum_j w_j *
    (A_{j-1} x[t] - A_j x[t])`` (:func:`haar_average_matrices`; ``levels`` 1, WEARec's, is
    ``(x[t] + x[t-1]) / 2 + w (x[t] - x[t-1]) / 2``). The DFF at ``t`` is ``sum_j h_t[j] x[t - j]
    + beta_t`` (:func:`frequency_response_basis`), per head. So outputs never depend on later
    items or on the amount of padding, every position trains as one of WEARec's prefix samples,
    and at the last position of a window with no padding it is WEARec's layer (given the same
    weights: the last pair's ``w``). Items before the window count as zeros, as in BSARec's filter.

    Weights, created on the first call: ``detail_weight [levels, d]`` (normal, stddev 0.02, as
    WEARec's), and unless ``frequency_weight`` is 0: ``base_filter [heads, bins]`` (ones) and
    ``base_bias [heads, bins]`` (-0.1), as WEARec's, and the MLP's ``context_kernel [d, d]``,
    ``context_bias [d]``, ``modulation_kernel [d, heads * bins * 2]``, ``modulation_bias``
    (normal 0.02 kernels, zero biases, WEARec's initialisation), ``bins = max_len // 2 + 1``.
    With ``frequency_weight`` 1 there is no ``detail_weight``.

    Args:
      max_len: positive integer ``N``, the window's width: the widest sequence the layer accepts.
      heads: positive integer dividing ``d``, WEARec's ``num_heads``: the groups of channels that
        share one frequency filter.
      levels: positive integer with ``2 ** levels <= max_len``, the Haar levels (WEARec: 1).
      frequency_weight: float in ``[0, 1]``, WEARec's ``alpha``, the weight of the DFF.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, ``T <= max_len``; padded positions are ignored.
      padding_mask: ``[B, T]`` bool tensor, ``True`` at real items.
      last_only: Python boolean; ``True`` computes the last position only.

    Returns:
      ``[B, T, d]`` tensor of the input's dtype, zero at padded positions (``[B, 1, d]`` with
      ``last_only``, equal to the last row of the full output).

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: an argument is out of its range, or (when called) ``heads`` does not divide ``d``.
    """

    def __init__(self, max_len: int, heads: int = 1, levels: int = 1, frequency_weight: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.max_len = check_int(layer, "max_len", max_len)
        self.heads = check_int(layer, "heads", heads)
        self.levels = check_int(layer, "levels", levels)
        if self.levels > self.max_len.bit_length() - 1:  # 2 ** levels > max_len
            raise ValueError(f"{layer}: levels must have 2 ** levels <= max_len ({self.max_len}), got {levels!r}")
        self.frequency_weight = check_rate(layer, "frequency_weight", frequency_weight, include_one=True)
        self._averages = haar_average_matrices(self.max_len, self.levels).astype(np.float32)
        basis, offsets = frequency_response_basis(self.max_len)
        lags = np.arange(self.max_len)[:, None] - np.arange(self.max_len)[None, :]
        # [bins, N, N]: entry (k, t, s) is bin k's weight of the item s at the output t (0 for s > t).
        self._bin_toeplitz = np.where(lags >= 0, basis[:, np.clip(lags, 0, None)], 0.0).astype(np.float32)
        self._bin_offsets = offsets.astype(np.float32)

    @property
    def bins(self) -> int:
        """The frequency bins of a ``max_len`` window's rFFT."""
        return self.max_len // 2 + 1

    def build(self, input_shape):
        width = int(input_shape[-1])
        if width % self.heads:
            raise ValueError(f"{type(self).__name__}: heads ({self.heads}) must divide the input's width ({width})")

        def small():  # WEARec's initializer_range; one instance per weight, so each draws its own values
            return keras.initializers.RandomNormal(stddev=0.02)

        self.detail_weight = None
        if self.frequency_weight < 1:
            self.detail_weight = self.add_weight(name="detail_weight", shape=(self.levels, width), initializer=small())
        if self.frequency_weight > 0:
            grid = (self.heads, self.bins)
            self.base_filter = self.add_weight(name="base_filter", shape=grid, initializer="ones")
            self.base_bias = self.add_weight(name="base_bias", shape=grid,
                                             initializer=keras.initializers.Constant(-0.1))
            self.context_kernel = self.add_weight(name="context_kernel", shape=(width, width), initializer=small())
            self.context_bias = self.add_weight(name="context_bias", shape=(width,), initializer="zeros")
            modulations = self.heads * self.bins * 2
            self.modulation_kernel = self.add_weight(name="modulation_kernel", shape=(width, modulations),
                                                     initializer=small())
            self.modulation_bias = self.add_weight(name="modulation_bias", shape=(modulations,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs, padding_mask, last_only=False):
        width = tf.shape(inputs)[1]
        tf.debugging.assert_less_equal(width, self.max_len, message="sequence width exceeds the filter's max_len")
        real = tf.cast(padding_mask, inputs.dtype)
        values = inputs * real[..., tf.newaxis]
        query_real = real[:, -1:] if last_only else real
        outputs = 0.0
        if self.detail_weight is not None:
            averages = tf.constant(self._averages, inputs.dtype)[:, :width, :width]  # lags only: cut to width
            if last_only:
                averages = averages[:, -1:]
            approximations = tf.einsum("lts,bsd->bltd", averages, values)  # [B, L + 1, Tq, d]
            details = approximations[:, :-1] - approximations[:, 1:]
            wavelet = approximations[:, -1] + tf.einsum("bltd,ld->btd", details,
                                                        tf.cast(self.detail_weight, inputs.dtype))
            outputs = (1.0 - self.frequency_weight) * wavelet
        if self.frequency_weight > 0:
            outputs += self.frequency_weight * self._dynamic_frequency_filter(values, real, last_only)
        return outputs * query_real[..., tf.newaxis]

    def _dynamic_frequency_filter(self, values, real, last_only):
        """WEARec's DFF at the last position of the window ending at each position: ``[B, Tq, d]``."""
        dtype = values.dtype
        width = tf.shape(values)[1]
        # The user's context at t: the mean of the real items up to t (0 before the first).
        context = tf.cumsum(values, axis=1) / tf.maximum(tf.cumsum(real, axis=1), 1.0)[..., tf.newaxis]
        toeplitz = tf.constant(self._bin_toeplitz, dtype)[:, :width, :width]
        if last_only:
            context, toeplitz = context[:, -1:], toeplitz[:, -1:]
        hidden = tf.nn.gelu(tf.einsum("btd,de->bte", context, tf.cast(self.context_kernel, dtype))
                            + tf.cast(self.context_bias, dtype), approximate=False)
        modulation = (tf.einsum("btd,dm->btm", hidden, tf.cast(self.modulation_kernel, dtype))
                      + tf.cast(self.modulation_bias, dtype))
        shape = tf.shape(modulation)
        modulation = tf.reshape(modulation, [shape[0], shape[1], self.heads, self.bins, 2])
        gains = tf.cast(self.base_filter, dtype) * (1.0 + modulation[..., 0])  # [B, Tq, heads, bins]
        biases = tf.cast(self.base_bias, dtype) + modulation[..., 1]
        mixing = tf.einsum("bthk,kts->bths", gains, toeplitz)  # [B, Tq, heads, T]: h_t[t - s]
        offsets = tf.einsum("bthk,k->bth", biases, tf.constant(self._bin_offsets, dtype))
        channels = tf.shape(values)
        depth = values.shape[-1]
        grouped = tf.reshape(values, [channels[0], channels[1], self.heads, depth // self.heads])  # [B, T, heads, c]
        filtered = tf.einsum("bths,bshc->bthc", mixing, grouped) + offsets[..., tf.newaxis]
        return tf.reshape(filtered, [shape[0], shape[1], depth])

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "heads": self.heads, "levels": self.levels,
                "frequency_weight": self.frequency_weight}
