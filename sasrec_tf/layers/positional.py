"""The learned positional embedding of SASRec, counted from the right end of the sequence."""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_int


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class PositionalEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position, counted from the right end of the sequence.

    The most recent item gets position 0, the one before it position 1, and so on. With left
    padding this is the reference implementation's absolute positions read backwards when
    ``T == max_len``, and it makes the output independent of how much padding precedes the items:
    a batch may be cut to its longest sequence without changing any result.

    The table, ``[max_len, d]`` (Glorot-uniform), is created on the first call, ``d`` being the
    last dimension of the input.

    Args:
      max_len: positive integer, the widest sequence the layer accepts (the rows of the table).
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[B, T, d]`` float tensor, the embedded sequence, ``T <= max_len`` (checked when
        the layer runs: ``tf.errors.InvalidArgumentError`` otherwise).

    Returns:
      ``[B, T, d]`` tensor of the input's dtype: ``inputs`` plus the embedding of each position.

    Raises:
      TypeError: ``max_len`` is not an integer.
      ValueError: ``max_len < 1``.
    """

    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        self.max_len = check_int(type(self).__name__, "max_len", max_len)

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
