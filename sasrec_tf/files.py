"""Atomic file writes: a reader sees the old file or the whole new one, never half a file.

One helper for every file the library writes (model directories, vocabularies, cards, manifests,
metrics, recommendations): the bytes go to a hidden temporary file in the target's directory
(so the final rename stays on one filesystem), are flushed and ``fsync``-ed, get mode ``0644``
(a serving container or a worker may run as another user; ``mkstemp`` would leave ``0600``), and
replace the target in one ``os.replace``. A failure at any point removes the temporary file and
leaves the target as it was. TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_path", "write_with", "FILE_MODE"]

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (pyarrow, ``np.save``,
    Keras); on a clean exit it is made ``0644``, synced and renamed to ``path``, else removed.

    Args:
        path: the file to replace.
        suffix: the temporary name's ending, for writers that insist on one (Keras: ``.keras``).

    Yields:
        The temporary path (``.NAME.*SUFFIX`` in ``path``'s directory, created empty).
    """
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as synced:
            os.fsync(synced.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(path: str | os.PathLike[str], write, mode: str, **open_kwargs) -> Path:
    target = Path(os.fspath(path))
    with atomic_path(target) as tmp:
        with open(tmp, mode, **open_kwargs) as out:
            write(out)
            out.flush()
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; returns ``path``."""
    return _write(path, lambda out: out.write(data), "wb")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically (``\\n`` line ends kept as given); returns ``path``."""
    return _write(path, lambda out: out.write(text), "w", encoding="utf-8", newline="\n")


def atomic_write_json(path: str | os.PathLike[str], value: Any, *, indent: int = 2, sort_keys: bool = True) -> Path:
    """Replace ``path`` with ``value`` as JSON (a trailing newline) atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")


def write_with(path: str | os.PathLike[str], writer, binary: bool = True) -> Path:
    """Replace ``path`` atomically with what ``writer(handle)`` writes to an open file."""
    return _write(path, writer, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"}))
