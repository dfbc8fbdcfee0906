"""Table formats: delimited text with a header row (csv, tsv) and Parquet, columns named by
:class:`ReadOptions`; and what every format's reader is, :data:`Reader`.

A format is a reader ``(path, options) -> frame`` in :mod:`sasrec_tf.data.ingest`' schema and one
entry in :data:`sasrec_tf.data.ingest.READERS`. The line formats of public datasets are in
:mod:`~sasrec_tf.data.ingest.line_formats`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest.normalize import Location, normalize_columns, quote, resolve_columns

__all__ = ["ReadOptions", "Reader", "delimited", "read_csv", "read_parquet"]

# A child of the ``sasrec_tf.data.ingest`` logger: setting that one's level covers every reading step.
logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ReadOptions:
    """The options of :func:`~sasrec_tf.data.ingest.read_interactions` handed to a format's reader;
    each reader uses the ones it needs (a line format needs none)."""

    user_col: str = "user"
    item_col: str = "item"
    time_col: str = "timestamp"
    rating_col: str | None = None
    sep: str | None = None


# A format's reader: (path, options) -> a frame in read_interactions' schema.
Reader = Callable[[Path, ReadOptions], pd.DataFrame]


def read_csv(
    path: Path,
    sep: str,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
) -> pd.DataFrame:
    """Read delimited text with a header row naming the columns, every field as text.

    Blank lines are skipped; a row with more fields than the header is an error.

    Raises:
        DataError: an empty file, invalid UTF-8, a malformed line, a missing column or a bad value.
    """
    where = Location(path=str(path), kind="csv")
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty (no header row)", path=path) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        raise _csv_error(path, err) from None
    rating_col = resolve_columns(
        list(header.columns), user_col, item_col, time_col, rating_col, where
    )
    wanted = [user_col, item_col, time_col] + ([rating_col] if rating_col is not None else [])
    try:
        raw = pd.read_csv(  # all columns (not usecols): so a row with extra fields is an error
            path,
            sep=sep,
            dtype=str,  # every field as text: ids keep leading zeros, and we own number parsing
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,  # keeps row index == line - 2, so errors name the right line
            encoding="utf-8-sig",
        )
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as err:
        raise _csv_error(path, err) from None
    blank = (raw[user_col] == "").to_numpy()
    if blank.any():  # blank lines: every field empty
        blank = blank & (raw == "").all(axis=1).to_numpy()
        if blank.any():
            logger.info("%s: skipped %d blank lines", path, int(blank.sum()))
            raw = raw.loc[~blank]
    raw = raw[wanted]
    return normalize_columns(raw, user_col, item_col, time_col, rating_col, where)


def _csv_error(path: Path, err: Exception) -> DataError:
    if isinstance(err, UnicodeDecodeError):
        return DataError(f"not valid UTF-8 text ({err.reason} at byte {err.start})", path=path)
    match = re.search(r"line (\d+)", str(err))
    if match:
        line = int(match.group(1))
        detail = str(err).split("C error: ")[-1]
        return DataError(
            f"malformed line ({detail}): {quote(_line_text(path, line))}", path=path, line=line
        )
    return DataError(f"cannot parse as CSV: {err}", path=path)


def _line_text(path: Path, line: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, 1):
            if number == line:
                return text.rstrip("\r\n")
    return ""


def delimited(default_sep: str) -> Reader:
    """The reader of delimited text with a header row, separated by ``sep`` or ``default_sep``."""

    def read(path: Path, options: ReadOptions) -> pd.DataFrame:
        sep = default_sep if options.sep is None else options.sep
        return read_csv(
            path, sep, options.user_col, options.item_col, options.time_col, options.rating_col
        )

    return read


def read_parquet(path: Path, options: ReadOptions) -> pd.DataFrame:
    """Read the named columns of a Parquet file or dataset directory."""
    import pyarrow.dataset as pads

    user_col, item_col, time_col = options.user_col, options.item_col, options.time_col
    rating_col = options.rating_col
    where = Location(path=str(path), kind="file")
    try:
        columns = pads.dataset(str(path), format="parquet").schema.names
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise DataError(f"not a readable Parquet file or dataset ({err})", path=path) from None
    rating_col = resolve_columns(columns, user_col, item_col, time_col, rating_col, where)
    wanted = [user_col, item_col, time_col] + ([rating_col] if rating_col is not None else [])
    frame = pd.read_parquet(path, columns=wanted)
    return normalize_columns(frame, user_col, item_col, time_col, rating_col, where)

