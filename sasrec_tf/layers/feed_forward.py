"""The point-wise feed-forward network of a SASRec block: ReLU/GELU (two dense layers) or SwiGLU
(a gated inner layer, three dense layers)."""

from __future__ import annotations

from sasrec_tf._compat import keras
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_int, check_rate

# The gated linear unit with a swish gate (Shazeer, "GLU Variants Improve Transformer", 2020).
SWIGLU = "swiglu"


def _check_activation(layer: str, activation):
    """``activation`` as Keras' activation function (``"swiglu"`` kept as its name), or an error
    naming the argument."""
    if isinstance(activation, str) and activation == SWIGLU:
        return SWIGLU
    try:
        return keras.activations.get(activation)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{layer}: activation must be the name of a Keras activation (such as 'relu' or "
                        f"'gelu') or a callable, got {activation!r}") from err


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class PointWiseFeedForward(keras.layers.Layer):
    """Position-wise dense layers with dropout: ``d -> inner_units -> d``.

    The same two dense layers apply at every position, independently (a ``1 x 1`` convolution in
    the paper's code). The paper's FFN is ``inner_units = d`` (the default) with ReLU between;
    later models (BERT4Rec, gSASRec) use ``4d`` with GELU. Dropout follows each dense layer, as in
    the paper's code.

    ``activation="swiglu"`` makes the inner layer a gated linear unit with a swish gate (Shazeer
    2020; LLaMA's FFN): ``inner = swish(x W_gate + b_gate) * (x W_up + b_up)``, then
    ``W_down``, with dropout after the inner and the outer layer as for the other activations.
    It has three weight matrices instead of two (the inner width is still ``inner_units``).

    Args:
      hidden_units: positive integer ``d``, the width of the input and the output.
      dropout_rate: float in ``[0, 1)``, dropout after each dense layer (in training only).
      activation: the inner layer's activation: the name of a Keras activation (the model uses
        the names in :data:`sasrec_tf.config.FFN_ACTIVATIONS`), ``"swiglu"``, or a callable.
      inner_units: positive integer, the inner width; ``None`` (the default) means
        ``hidden_units``. ``get_config`` returns the resolved width.
      **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
      inputs: ``[..., d]`` float tensor.
      training: Python boolean, whether dropout is active; ``None`` follows Keras' learning phase.

    Returns:
      ``[..., d]`` tensor of the input's dtype.

    Raises:
      TypeError: an argument has the wrong type (an integer that is a float, an activation that
        is neither a string nor a callable).
      ValueError: an argument is out of its range, or ``activation`` names no Keras activation.
    """

    def __init__(self, hidden_units: int, dropout_rate: float = 0.0, activation="relu", inner_units=None,
                 **kwargs):
        super().__init__(**kwargs)
        layer = type(self).__name__
        self.hidden_units = check_int(layer, "hidden_units", hidden_units)
        inner_units = check_int(layer, "inner_units", inner_units, optional=True)
        self.inner_units = inner_units if inner_units is not None else self.hidden_units
        self.dropout_rate = check_rate(layer, "dropout_rate", dropout_rate)
        self.activation = _check_activation(layer, activation)
        self.gated = self.activation == SWIGLU
        if self.gated:
            # "inner" is the linear up-projection, "gate" its swish gate; "outer" is W_down.
            self.gate = keras.layers.Dense(self.inner_units, activation="swish", name="gate")
            self.inner = keras.layers.Dense(self.inner_units, name="inner")
        else:
            self.inner = keras.layers.Dense(self.inner_units, activation=self.activation, name="inner")
        self.outer = keras.layers.Dense(self.hidden_units, name="outer")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def call(self, inputs, training=None):
        hidden = self.inner(inputs)
        if self.gated:
            hidden = self.gate(inputs) * hidden
        hidden = self.dropout(hidden, training=training)
        return self.dropout(self.outer(hidden), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "inner_units": self.inner_units,
            "dropout_rate": self.dropout_rate,
            "activation": SWIGLU if self.gated else keras.activations.serialize(self.activation),
        }
