"""The one exception type for problems in a user's data.

A :class:`DataError` says what is wrong and where, so the user can fix the file instead of reading
a stack trace from deep inside pandas. It subclasses :class:`ValueError`, so code that already
catches ``ValueError`` keeps working.
"""

from __future__ import annotations

import os

__all__ = ["DataError"]


class DataError(ValueError):
    """A problem in the user's data, with a message the user can act on.

    The message is prefixed ``path:line:`` (or ``path:``) when the problem has a location, the
    format compilers use, so editors and terminals can jump to it.

    Attributes:
        path: the file the problem is in, or ``None`` (a DataFrame, or no single file).
        line: the 1-based line number in ``path``, or ``None``.
        reason: the message without the location prefix.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
    ) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.line = int(line) if line is not None else None
        self.reason = message
        if self.path is not None and self.line is not None:
            text = f"{self.path}:{self.line}: {message}"
        elif self.path is not None:
            text = f"{self.path}: {message}"
        elif self.line is not None:
            text = f"line {self.line}: {message}"
        else:
            text = message
        super().__init__(text)

    def __reduce__(self):
        # Keep path/line across pickling (multiprocessing, tf.data workers).
        return (_rebuild, (type(self), self.reason, self.path, self.line))


def _rebuild(cls: type[DataError], reason: str, path: str | None, line: int | None) -> DataError:
    return cls(reason, path=path, line=line)
