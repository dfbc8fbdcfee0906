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
