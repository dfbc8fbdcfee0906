"""Checks of the layers' constructor arguments, one per kind of argument.

Every layer checks each of its ``__init__`` arguments with these before building anything, so a
bad value fails where it is given, with a message naming the layer, the argument and the value,
not later inside TensorFlow. Each check returns the normalised value (``int``, ``float``,
``bool``) that the layer stores and its ``get_config`` returns.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from sasrec_tf.choices import FFN_ACTIVATIONS, LAYER_NORM_PLACEMENTS

# The package under which the layers are registered with Keras (``sasrec_tf>ClassName``): saved
# configs name the layers by it, so it must not change.
KERAS_PACKAGE = "sasrec_tf"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(layer: str, name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` as an ``int`` ``>= minimum`` (or ``None`` when ``optional``).

    Raises:
      TypeError: ``value`` is not an integer (a boolean or ``2.0`` is not one).
      ValueError: ``value < minimum``.
    """
    if value is None and optional:
        return None
    bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    bound += " or None" if optional else ""
    if not _is_integer(value):
        raise TypeError(f"{layer}: {name} must be {bound}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be {bound}, got {value!r}")
    return int(value)


def _check_number(layer: str, name: str, value: Any, expected: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: {name} must be {expected}, got {value!r}")
    return float(value)


def check_rate(layer: str, name: str, value: Any, *, include_one: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1)`` (``[0, 1]`` with ``include_one``); NaN fails.

    Raises:
      TypeError: ``value`` is not a number.
      ValueError: ``value`` is out of the range.
    """
    expected = f"a number in [0, 1{']' if include_one else ')'}"
    rate = _check_number(layer, name, value, expected)
    if not (0.0 <= rate <= 1.0 if include_one else 0.0 <= rate < 1.0):
        raise ValueError(f"{layer}: {name} must be {expected}, got {value!r}")
    return rate


def check_positive_float(layer: str, name: str, value: Any) -> float:
    """``value`` as a finite ``float > 0``.

    Raises:
      TypeError: ``value`` is not a number.
      ValueError: ``value`` is not finite or not positive.
    """
    expected = "a finite number > 0"
    number = _check_number(layer, name, value, expected)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{layer}: {name} must be {expected}, got {value!r}")
    return number


def check_bool(layer: str, name: str, value: Any) -> bool:
    """``value`` as a ``bool``; ``0``/``1`` or strings are not taken for one.

    Raises:
      TypeError: ``value`` is not a boolean.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{layer}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(layer: str, name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value``, one of the strings ``allowed``.

    Raises:
      TypeError: ``value`` is not a string.
      ValueError: ``value`` is not one of ``allowed``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{layer}: {name} must be one of {tuple(allowed)}, got {value!r}")
    if value not in allowed:
        raise ValueError(f"{layer}: {name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_block_arguments(layer: str, *, hidden_units: Any, num_heads: Any, dropout_rate: Any, layer_norm: Any,
                          use_residual: Any, layer_norm_epsilon: Any, ffn_units: Any, ffn_activation: Any,
                          frequency_mixing: Any, frequency_cutoff: Any) -> dict[str, Any]:
    """The arguments a self-attention block takes (and an encoder passes on to its blocks), checked.

    Returns:
      The same names with their checked values (``int``, ``float``, ``bool``, ``str``, or None).

    Raises:
      TypeError, ValueError: as the ``check_*`` functions; also ``hidden_units`` not divisible by
        ``num_heads``.
    """
    checked = {"hidden_units": check_int(layer, "hidden_units", hidden_units),
               "num_heads": check_int(layer, "num_heads", num_heads)}
    if checked["hidden_units"] % checked["num_heads"]:
        raise ValueError(f"{layer}: hidden_units ({hidden_units}) must be divisible by num_heads ({num_heads})")
    return {
        **checked,
        "dropout_rate": check_rate(layer, "dropout_rate", dropout_rate),
        "layer_norm": check_choice(layer, "layer_norm", layer_norm, LAYER_NORM_PLACEMENTS),
        "use_residual": check_bool(layer, "use_residual", use_residual),
        "layer_norm_epsilon": check_positive_float(layer, "layer_norm_epsilon", layer_norm_epsilon),
        "ffn_units": check_int(layer, "ffn_units", ffn_units, optional=True),
        "ffn_activation": check_choice(layer, "ffn_activation", ffn_activation, FFN_ACTIVATIONS),
        "frequency_mixing": check_rate(layer, "frequency_mixing", frequency_mixing, include_one=True),
        "frequency_cutoff": check_int(layer, "frequency_cutoff", frequency_cutoff),
    }
