"""Names a package exports but imports on first use (PEP 562), so that importing the package stays
cheap: ``import sasrec_tf`` and the TensorFlow-free parts of a subpackage do not load TensorFlow.

A package writes its table ``{public name: defining module}`` and::

    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any],
                 table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for the names of ``table``.

    A name is imported from its module the first time it is read and then kept in ``namespace``
    (the package's ``globals()``), so later reads are ordinary attribute lookups.
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *table])

    return __getattr__, __dir__
