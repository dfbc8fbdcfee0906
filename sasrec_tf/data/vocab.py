"""``ItemVocabulary``: the mapping between raw item ids (strings) and dense ids (0 = padding).

The model only sees dense ids ``1..N``; ``0`` is the padding position, which is why the empty
string, the padding token at the serving boundary, can never be an item. The vocabulary is saved
next to every model and export as a plain text file that TensorFlow reads directly, so the
mapping used in training is the one used in serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError
from sasrec_tf.files import atomic_write_text

__all__ = ["PAD_ID", "PAD_TOKEN", "ItemVocabulary"]

PAD_ID = 0
PAD_TOKEN = ""
_FORBIDDEN = {"\n": "newline", "\r": "carriage return", "\t": "tab"}


class ItemVocabulary:
    """Raw item id (str) ↔ dense id (int64): ``ids[i]`` has dense id ``i + 1``, ``0`` is padding.

    ``len(vocab)`` is the number of real items ``N``; :attr:`size` is ``N + 1``, the number of
    embedding rows including padding. Instances are immutable and compare equal when they map the
    same ids in the same order.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        """Build from raw ids in dense order.

        Raises:
            DataError: an id is not a string, is empty (the padding token), contains a newline,
                carriage return or tab (it could not round-trip through the vocabulary file), or
                occurs twice.
        """
        ids = list(ids)
        bad = _invalid_positions(ids)
        if len(bad):
            position = int(bad[0])
            raw = ids[position]
            raise DataError(
                f"item id {raw!r} (dense id {position + 1}) {_id_problem(raw)}"
                + (f"; {len(bad) - 1} more invalid ids" if len(bad) > 1 else "")
            )
        index = pd.Index(ids, dtype=object)
        if not index.is_unique:
            repeated = index[index.duplicated()].unique()[:5].tolist()
            raise DataError(f"item ids must be unique; repeated: {repeated}")
        self._index = index
        self._table = np.array([PAD_TOKEN, *ids], dtype=object)  # dense id -> raw id
        self._table.flags.writeable = False

    @classmethod
    def from_interactions(cls, df: pd.DataFrame) -> ItemVocabulary:
        """Build from an interaction log's ``item`` column, most frequent item first.

        Dense ids are assigned by descending interaction count, ties broken by first appearance
        in ``df``'s row order, so the same log always gives the same vocabulary (and frequent items
        get small ids, which suits frequency-sorted negative samplers).
        """
        if "item" not in df.columns:
            raise DataError(f"no 'item' column in the interactions frame: {list(df.columns)}")
        if df["item"].isna().any():
            raise DataError("the 'item' column has missing ids; read it with read_interactions()")
        codes, uniques = pd.factorize(df["item"])  # uniques in order of first appearance
        counts = np.bincount(codes, minlength=len(uniques))
        order = np.argsort(-counts, kind="stable")
        return cls(np.asarray(uniques, dtype=object)[order].tolist())

    # ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    @property
    def size(self) -> int:
        """Embedding rows needed: the ``N`` items plus the padding row."""
        return len(self._index) + 1

    @property
    def ids(self) -> list[str]:
        """The raw ids in dense order (``ids[i]`` has dense id ``i + 1``)."""
        return self._index.tolist()

    def __contains__(self, raw_id: object) -> bool:
        return isinstance(raw_id, str) and raw_id in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemVocabulary):
            return NotImplemented
        return self._index.equals(other._index)

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __repr__(self) -> str:
        head = ", ".join(repr(i) for i in self._index[:3].tolist())
        more = ", ..." if len(self) > 3 else ""
        return f"ItemVocabulary({len(self)} items: [{head}{more}])"

    # ---------------------------------------------------------------------------------------------

    def encode(
        self, raw_ids: Iterable[str] | str, unknown: Literal["error", "zero"] = "error"
    ) -> np.ndarray:
        """Raw ids → dense ids (int64, same shape as the input).

        The padding token ``""`` always encodes to ``0``, so ``encode(decode(x)) == x``. Other ids
        not in the vocabulary raise with ``unknown="error"``, or become ``0`` (padding, ignored by
        the model) with ``unknown="zero"``.

        Raises:
            KeyError: unknown ids with ``unknown="error"`` (the message counts them and shows some).
            TypeError: numeric input (ids are strings; convert with ``.astype(str)``).
        """
        if unknown not in ("error", "zero"):
            raise ValueError(f"unknown must be 'error' or 'zero', got {unknown!r}")
        if isinstance(raw_ids, (pd.Series, pd.Index)):
            values, shape = raw_ids, (len(raw_ids),)  # keep pandas' (fast) string storage
        else:
            values = np.asarray(raw_ids)
            shape = values.shape
        if values.size and values.dtype.kind in "biuf":
            raise TypeError(
                f"item ids are strings, got {values.dtype} values; convert with .astype(str)"
            )
        if isinstance(values, np.ndarray):
            values = values.astype(object, copy=False).ravel()
        # Look up each distinct id once: logs repeat ids many times.
        codes, uniques = pd.factorize(values)  # nulls get code -1
        uniques = np.asarray(uniques, dtype=object)
        dense_uniques = self._index.get_indexer(uniques).astype(np.int64) + 1  # missing -> 0
        if unknown == "error":
            unknown_uniques = (dense_uniques == PAD_ID) & (uniques != PAD_TOKEN)
            # Appending one entry makes code -1 (a null) select it: nulls are unknown too.
            is_unknown = np.append(unknown_uniques, True)[codes]
            if is_unknown.any():
                has_null = bool((codes < 0).any())
                examples = ([None] if has_null else []) + uniques[unknown_uniques][:5].tolist()
                raise KeyError(
                    f"{int(is_unknown.sum())} item ids are not in the vocabulary "
                    f"({int(unknown_uniques.sum()) + has_null} distinct), e.g. {examples[:5]}; "
                    "pass unknown='zero' to map them to padding"
                )
        return np.append(dense_uniques, PAD_ID)[codes].reshape(shape)

    def decode(self, dense_ids: Iterable[int] | int) -> np.ndarray:
        """Dense ids → raw ids (object array of str, same shape); ``0`` decodes to ``""``.

        Raises:
            IndexError: an id outside ``0..N``.
        """
        values = np.asarray(dense_ids)
        if values.dtype.kind not in "iu":
            if values.size == 0:
                values = values.astype(np.int64)
            else:
                raise TypeError(f"dense ids must be integers, got {values.dtype}")
        bad = (values < 0) | (values >= self.size)
        if bad.any():
            raise IndexError(
                f"dense id {int(values[bad].flat[0])} is out of range 0..{len(self)} "
                f"({int(bad.sum())} such ids)"
            )
        return self._table[values]

    # ---------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ids one per line (UTF-8, ``\\n`` endings): line ``i`` is dense id ``i``.

        TensorFlow reads the file as is: ``StringLookup(vocabulary=path, num_oov_indices=1,
        mask_token=None)`` maps each id to its dense id and unknown ids to 0, and a
        ``tf.lookup.TextFileInitializer`` with ``key_index=WHOLE_LINE`` and
        ``value_index=LINE_NUMBER`` gives the dense id minus one. The write is atomic
        (:func:`sasrec_tf.files.atomic_write_text`: a reader never sees a half-written file) and
        the file gets mode 0644, since workers and serving containers may run as another user.
        """
        atomic_write_text(path, "".join(raw + "\n" for raw in self._index))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ItemVocabulary:
        """Read a file written by :meth:`save`.

        Raises:
            DataError: missing file, invalid UTF-8, or an empty or repeated id (with its line).
        """
        path = Path(os.fspath(path))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError("vocabulary file not found", path=path) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise DataError(f"not valid UTF-8 text ({err.reason})", path=path, line=line) from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        ids = [line[:-1] if line.endswith("\r") else line for line in lines]  # tolerate CRLF
        seen: dict[str, int] = {}
        for number, raw in enumerate(ids, 1):
            if raw == PAD_TOKEN:
                raise DataError("empty item id (blank line)", path=path, line=number)
            if raw in seen:
                raise DataError(
                    f"item id {raw!r} repeats line {seen[raw]}", path=path, line=number
                )
            seen[raw] = number
        try:
            return cls(ids)
        except DataError as err:
            raise DataError(err.reason, path=path) from None


def _invalid_positions(ids: list) -> np.ndarray:
    """Positions of ids that :func:`_id_problem` rejects (vectorized: vocabularies get large)."""
    values = pd.Series(ids, dtype=object)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    is_str = values.map(type).isin([str, np.str_]).to_numpy()
    if not is_str.all():
        return np.flatnonzero(~is_str)
    bad = (values == PAD_TOKEN) | values.str.contains("[\n\r\t]", regex=True)
    return np.flatnonzero(bad.to_numpy())


def _id_problem(raw: object) -> str | None:
    """Why ``raw`` cannot be an item id, or None."""
    if not isinstance(raw, str):
        return f"is a {type(raw).__name__}, not a string (convert ids with str())"
    if raw == PAD_TOKEN:
        return "is empty; the empty string is the padding token"
    for char, name in _FORBIDDEN.items():
        if char in raw:
            return f"contains a {name}, which the one-id-per-line vocabulary file cannot store"
    return None
