"""Item features: raw item id → attribute tokens, read from a file, aligned to a vocabulary.

Two kinds of file:

* **S3-Rec's JSON** (``<Dataset>_item2attributes.json``): one object, item id → list of
  attribute ids (integers). A token is the id's text (``"17"``);
* **a table** (csv / tsv / parquet, read with pandas): an item column and feature columns. Each
  cell is a categorical value, or several separated by ``multi_value_sep`` (tags); a token is
  namespaced by its column (``"brand=acme"``), so equal values of two columns stay apart. Empty
  cells are no attribute.

:class:`ItemFeatures` is independent of any vocabulary; :meth:`ItemFeatures.aligned` lays it out
by dense item id (the model's attribute table) and numbers the attributes (1..A; 0 is padding).
TensorFlow-free. Problems in a file raise :class:`~sasrec_tf.data.errors.DataError` naming the
file and the line or key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError

__all__ = ["FEATURE_FORMATS", "AlignedFeatures", "ItemFeatures", "read_item_features"]

FEATURE_FORMATS = ("json", "csv", "tsv", "parquet")
_SUFFIXES = {".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_BAD_CHARACTERS = ("\n", "\r")  # an attribute name is one line of attributes.txt


@dataclasses.dataclass(frozen=True)
class AlignedFeatures:
    """Attributes by dense item id, as the model's attribute table holds them.

    Item ``i`` (0 = padding, 1..N) has attribute ids ``values[row_splits[i]:row_splits[i + 1]]``;
    attribute id ``a`` (1..A) is ``attribute_names[a - 1]``; 0 is padding.
    """

    values: np.ndarray  # int64
    row_splits: np.ndarray  # int64, length N + 2
    attribute_names: tuple[str, ...]
    items_without_features: int  # items of the vocabulary with no attribute
    unknown_attributes: int = 0  # tokens dropped: not in a fixed attribute vocabulary

    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def num_items(self) -> int:
        return len(self.row_splits) - 2

    def max_attributes(self) -> int:
        """The most attributes one item has (at least 1: the table's width)."""
        return max(int(np.diff(self.row_splits).max(initial=0)), 1)

    def padded(self, width: int | None = None) -> np.ndarray:
        """``[N + 1, width]`` int64 attribute ids, each row's ids then zeros (row 0 all zeros)."""
        width = self.max_attributes() if width is None else int(width)
        lengths = np.diff(self.row_splits)
        if lengths.max(initial=0) > width:
            raise ValueError(f"an item has {int(lengths.max())} attributes, more than the table's {width}")
        table = np.zeros((len(lengths), width), dtype=np.int64)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        columns = np.arange(len(self.values)) - np.repeat(self.row_splits[:-1], lengths)
        table[rows, columns] = self.values
        return table


@dataclasses.dataclass(frozen=True)
class ItemFeatures:
    """Raw item id → attribute tokens (str), read from a file; independent of any vocabulary."""

    attributes: Mapping[str, tuple[str, ...]]
    source: str  # the path read

    def __len__(self) -> int:
        return len(self.attributes)

    def missing_from(self, vocab) -> int:
        """Items with features that ``vocab`` does not hold (no interactions in its log)."""
        return sum(1 for item in self.attributes if item not in vocab)

    def aligned(self, vocab, attribute_names: Sequence[str] | None = None, *, grow: bool = False) -> AlignedFeatures:
        """The attributes of ``vocab``'s items (an :class:`~sasrec_tf.data.vocab.ItemVocabulary`)
        by dense id.

        Args:
          vocab: the item vocabulary.
          attribute_names: a fixed attribute vocabulary (a trained model's): its tokens keep their
            ids, others are dropped and counted in ``unknown_attributes``; with ``grow`` they are
            appended instead (a warm start). ``None``: the attributes of ``vocab``'s items, sorted.
        """
        ids = vocab.ids
        tokens = [self.attributes.get(item, ()) for item in ids]
        if attribute_names is None:
            names = tuple(sorted({token for row in tokens for token in row}))
        else:
            names = tuple(attribute_names)
            if grow:
                known = set(names)
                names += tuple(sorted({t for row in tokens for t in row if t not in known}))
        index = {name: number for number, name in enumerate(names, 1)}
        dropped = 0
        rows: list[list[int]] = [[]]  # padding
        for row in tokens:
            found = [index[t] for t in row if t in index]
            dropped += len(row) - len(found)
            rows.append(found)
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.array([a for r in rows for a in r], dtype=np.int64)
        return AlignedFeatures(values=values, row_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                               attribute_names=names, items_without_features=int(np.count_nonzero(lengths[1:] == 0)),
                               unknown_attributes=dropped)


def guess_feature_format(path: str | os.PathLike[str]) -> str:
    """The format from the file's suffix.

    Raises:
      DataError: a suffix that names none of :data:`FEATURE_FORMATS`.
    """
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise DataError(f"cannot tell the item-features format from the name; give one of {FEATURE_FORMATS}",
                        path=path)
    return found


def read_item_features(path: str | os.PathLike[str], *, format: str | None = None, item_column: str = "item",
                       columns: Sequence[str] | None = None, multi_value_sep: str = "|",
                       sep: str | None = None) -> ItemFeatures:
    """Read an item-features file.

    Args:
      path: the file.
      format: one of :data:`FEATURE_FORMATS`; default: from the suffix.
      item_column: a table's item id column.
      columns: a table's feature columns; default: every column but the item's.
      multi_value_sep: splits a table cell into several values (``"red|blue"``).
      sep: a csv/tsv field separator (default ``,`` / tab).

    Raises:
      DataError: a missing or malformed file, naming it and the line or key.
    """
    path = Path(path)
    format = format or guess_feature_format(path)
    if format not in FEATURE_FORMATS:
        raise DataError(f"unknown item-features format {format!r}; expected one of {FEATURE_FORMATS}", path=path)
    if not path.is_file():
        raise DataError("item-features file not found", path=path)
    if format == "json":
        attributes = _read_json(path)
    else:
        attributes = _read_table(path, format, item_column, columns, multi_value_sep, sep)
    return ItemFeatures(attributes=attributes, source=str(path))


def _read_json(path: Path) -> dict[str, tuple[str, ...]]:
    """S3-Rec's ``{"item": [attribute ids]}``; a repeated key is an error (``json`` would keep the last)."""
    def pairs(items):
        seen: dict[str, tuple[str, ...]] = {}
        for key, value in items:
            if key in seen:
                raise DataError(f"item {key!r} appears twice", path=path)
            seen[key] = value
        return seen

    try:
        raw = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=pairs)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON ({err.msg}, column {err.colno})", path=path, line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason})", path=path) from None
    if not isinstance(raw, dict):
        raise DataError("expected one JSON object mapping item ids to lists of attribute ids", path=path)
    result = {}
    for item, values in raw.items():
        if item == "":
            raise DataError("an empty item id (the padding token) as a key", path=path)
        if not isinstance(values, list):
            raise DataError(f"item {item!r}: expected a list of attribute ids, got {type(values).__name__}",
                            path=path)
        bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, int)), None)
        if bad is not None:
            raise DataError(f"item {item!r}: attribute {bad!r} is not an integer id", path=path)
        result[item] = tuple(dict.fromkeys(str(v) for v in values))  # unique, in order
    return result


def _read_table(path: Path, format: str, item_column: str, columns, multi_value_sep: str,
                sep: str | None) -> dict[str, tuple[str, ...]]:
    try:
        if format == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=sep or ("\t" if format == "tsv" else ","), dtype=str,
                                keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"unreadable {format} file: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                        path=path) from None
    if item_column not in frame.columns:
        raise DataError(f"no item column {item_column!r} (columns: {list(frame.columns)}); "
                        "name it with the item-column option", path=path)
    columns = [c for c in frame.columns if c != item_column] if columns is None else list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"no feature column(s) {missing} (columns: {list(frame.columns)})", path=path)
    first_data_line = 1 if format == "parquet" else 2  # the header is line 1 of a csv / tsv
    where = (lambda row: {"line": row + first_data_line} if format != "parquet" else {})
    items = frame[item_column].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    for row in np.flatnonzero(items.to_numpy() == ""):
        raise DataError(f"empty item id in column {item_column!r}" + (f" (row {row})" if format == "parquet" else ""),
                        path=path, **where(row))
    repeated = np.flatnonzero(items.duplicated().to_numpy())
    if len(repeated):
        row = int(repeated[0])
        raise DataError(f"item {items.iloc[row]!r} appears twice" + (f" (row {row})" if format == "parquet" else ""),
                        path=path, **where(row))
    result = {}
    cells = {c: frame[c].to_numpy(dtype=object) for c in columns}
    for row, item in enumerate(items):
        tokens = []
        for column in columns:
            tokens.extend(f"{column}={value}" for value in _values(cells[column][row], multi_value_sep))
        bad = next((t for t in tokens if any(ch in t for ch in _BAD_CHARACTERS)), None)
        if bad is not None:
            raise DataError(f"item {item!r}: attribute {bad!r} holds a line break", path=path, **where(row))
        result[item] = tuple(dict.fromkeys(tokens))
    return result


def _values(cell, multi_value_sep: str) -> list[str]:
    """A cell's values: a list (parquet list columns) or text split on the separator; empty ones dropped."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in cell if v is not None and str(v).strip()]
    text = str(cell)
    parts = text.split(multi_value_sep) if multi_value_sep else [text]
    return [part.strip() for part in parts if part.strip()]
