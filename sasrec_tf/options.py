"""Typed option values: the one parser of option text and JSON for every options dataclass.

Options dataclasses (:class:`~sasrec_tf.config.SASRecConfig`, the run's data and training options)
declare fields of type ``bool``, ``int``, ``float`` or ``str`` (each possibly ``| None``); flags,
``--set NAME=VALUE``, pipeline files and Python callers all go through :func:`parse_option`, so a
bad value is one :class:`OptionError` naming the field, whatever its source. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import re
import typing
from typing import Any

__all__ = ["OptionError", "option_types", "parse_option", "check_option_types"]


class OptionError(ValueError):
    """A bad value for one option (a field of :class:`SASRecConfig` or of another options
    dataclass). ``option`` names the field, so the code that read the value can say where it came
    from (a flag, ``--set``, a file's key): :meth:`at`."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option

    def at(self, source: str) -> "OptionError":
        """The same error with ``source`` (e.g. ``--set use_residual=maybe``) in front."""
        return OptionError(self.option, f"{source}: {self}")


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_INTEGER = re.compile(r"[+-]?\d+")
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@functools.cache
def option_types(cls: type) -> dict[str, tuple[type, bool]]:
    """``{field: (type, optional)}`` of an options dataclass whose fields are ``bool``, ``int``,
    ``float`` or ``str``, each possibly ``| None``."""
    hints = typing.get_type_hints(cls)
    types = {}
    for field in dataclasses.fields(cls):
        args = [a for a in typing.get_args(hints[field.name]) if a is not type(None)] or [hints[field.name]]
        optional = len(args) < len(typing.get_args(hints[field.name]))
        if len(args) != 1 or args[0] not in _EXPECTED:
            raise TypeError(f"{cls.__name__}.{field.name}: unsupported option type {hints[field.name]}")
        types[field.name] = (args[0], optional)
    return types


def parse_option(cls: type, name: str, value: Any, *, text: bool = False) -> Any:
    """``value`` for the field ``name`` of the options dataclass ``cls``, by the field's type.

    The one parser of option values, whatever their source. ``text=True`` (flags, ``--set``):
    ``value`` is a string to parse -- booleans ``true``/``false`` (or ``yes``/``no``, ``1``/``0``),
    integers, numbers, and ``null`` for ``None`` where a number may be ``None``. Otherwise (JSON,
    Python) ``value`` must already have the type: a string is never taken for a number or a
    boolean; an integer is taken for a float. Raises :class:`OptionError` (unknown name or wrong
    type); ranges are the dataclass's own validation.
    """
    types = option_types(cls)
    if name not in types:
        raise OptionError(name, f"unknown option {name!r}; known: {sorted(types)}")
    kind, optional = types[name]
    if text:
        value = _from_text(kind, optional, str(value))
    if value is None and optional:
        return None
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    expected = _EXPECTED[kind] + (" or null" if optional else "")
    raise OptionError(name, f"{cls.__name__}.{name} must be {expected}, got {value!r}")


def _from_text(kind: type, optional: bool, text: str) -> Any:
    """A flag's or ``--set``'s text as ``kind``; text that does not parse is returned unchanged
    (a string), for :func:`parse_option` to reject with the expected type named."""
    stripped = text.strip()
    if optional and kind is not str and stripped.lower() in ("null", "none"):
        return None
    if kind is bool:
        lowered = stripped.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    if kind is int:
        return int(stripped) if _INTEGER.fullmatch(stripped) else text
    if kind is float:
        try:
            return float(stripped)
        except ValueError:
            return text
    return text


def check_option_types(options: Any) -> None:
    """Check every field of an options dataclass instance by its type (:func:`parse_option`),
    storing the normalised value (an integer given for a float becomes a float)."""
    for field in dataclasses.fields(options):
        setattr(options, field.name, parse_option(type(options), field.name, getattr(options, field.name)))
