"""Training objectives on sampled negatives.

All take logits of the positive ``[B, T]`` and of the negatives ``[B, T, K]`` plus a mask
``[B, T]`` (``True`` where a target exists) and return a scalar averaged over real positions.
"""

from __future__ import annotations

import tensorflow as tf


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true (0 when there are none)."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def sampled_binary_crossentropy(positive_logits, negative_logits, mask) -> tf.Tensor:
    """The paper's loss: ``-log σ(r_pos) - Σ_k log(1 - σ(r_neg_k))`` per position, masked mean.

    With one negative per position this is exactly Kang & McAuley's Eq. (6).
    """
    positive = tf.nn.softplus(-positive_logits)  # -log σ(x)
    negative = tf.reduce_sum(tf.nn.softplus(negative_logits), axis=-1)  # -log(1 - σ(x))
    return masked_mean(positive + negative, mask)


def pairwise_accuracy(positive_logits, negative_logits, mask) -> tf.Tensor:
    """Fraction of (position, negative) pairs where the positive scores higher: a sampled AUC."""
    wins = tf.reduce_mean(tf.cast(positive_logits[..., tf.newaxis] > negative_logits, tf.float32), axis=-1)
    return masked_mean(wins, mask)
