"""Reading interaction logs into one normalized pandas DataFrame, and filtering them.

Every reader returns the same schema, whatever the source, so the rest of the library never looks
at file formats:

- ``user`` (str) and ``item`` (str): raw ids, always strings (``"007"`` stays ``"007"``), because
  ids are labels, not numbers, and the vocabulary file and the serving signature speak strings;
- ``timestamp`` (int64 or float64): anything that orders one user's interactions; datetimes become
  int64 nanoseconds since the epoch (UTC);
- ``rating`` (numeric), only when the source has ratings.

Problems in the data raise :class:`~sasrec_tf.data.errors.DataError` naming the file and, where
there is one, the 1-based line, so the user can go and fix it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError

__all__ = ["FORMATS", "READERS", "DUPLICATE_POLICIES", "read_interactions", "filter_interactions"]

logger = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("keep", "first", "last")

_COLUMNS = ["user", "item", "timestamp"]
_SHOW_CHARS = 80  # how much of an offending line or value an error message quotes

Source = str | os.PathLike[str] | pd.DataFrame


@dataclass(frozen=True)
class _ReadOptions:
    """The options of :func:`read_interactions` handed to a format's reader; each reader uses the
    ones it needs (a line format needs none)."""

    user_col: str = "user"
    item_col: str = "item"
    time_col: str = "timestamp"
    rating_col: str | None = None
    sep: str | None = None


# A format's reader: (path, options) -> a frame in read_interactions' schema. The registry of
# formats, READERS (and FORMATS, its names), follows the readers at the end of the module.
_Reader = Callable[[Path, _ReadOptions], pd.DataFrame]


def read_interactions(
    source: Source,
    format: str = "csv",
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str = "timestamp",
    rating_col: str | None = None,
    min_rating: float | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """Read an interaction log into a DataFrame with columns ``user, item, timestamp[, rating]``.

    Args:
        source: a path (str or ``os.PathLike``) or a pandas DataFrame (``format`` is then ignored).
        format: one of :data:`FORMATS`:

            - ``"csv"`` / ``"tsv"``: a header row naming the columns; ``sep`` defaults to ``","``
              (``"\\t"`` for tsv). Blank lines are skipped; a row with more fields than the
              header is an error.
            - ``"parquet"``: a Parquet file or dataset directory.
            - ``"sasrec"``: the SASRec paper's files, ``user item`` per line, whitespace separated,
              already in time order; the timestamp is the line number.
            - ``"s3rec"``: S3-Rec / ICLRec files, ``user item item ...`` per line in time order;
              the timestamp is the item's ordinal in the file (line by line, left to right), which
              orders each line's items and keeps a user repeated on a later line after the first.
            - ``"movielens"``: ML-100K ``u.data`` (tab separated), ML-1M/10M ``ratings.dat``
              (``::`` separated) or ML-20M+ ``ratings.csv``, detected from name and content.
        user_col, item_col, time_col: column names in a csv/parquet file or DataFrame.
        rating_col: the rating column; ``None`` uses a column named ``"rating"`` if there is one.
        min_rating: keep only rows with ``rating >= min_rating`` (explicit ratings turned into
            implicit feedback); requires a rating column.
        sep: field separator for csv (default ``","``) or tsv (default tab).

    Returns:
        A new DataFrame with a fresh RangeIndex, rows in file order.

    Raises:
        DataError: missing or unreadable file, missing column, malformed line, null or empty id,
            non-numeric timestamp or rating, or no rows left (the message says why).
        ValueError: an unknown ``format``.
    """
    if isinstance(source, pd.DataFrame):
        where = _Where(path=None, kind="frame")
        df = _normalize(source, user_col, item_col, time_col, rating_col, where)
    else:
        path = Path(os.fspath(source))
        fmt = str(format).lower()
        if fmt not in READERS:
            raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        _check_exists(path, allow_dir=fmt in _DIRECTORY_FORMATS)
        where = _Where(path=str(path), kind="file")
        options = _ReadOptions(user_col=user_col, item_col=item_col, time_col=time_col,
                               rating_col=rating_col, sep=sep)
        df = READERS[fmt](path, options)
    if len(df) == 0:
        raise where.error("the interaction log is empty (no rows)")
    if min_rating is not None:
        df = _apply_min_rating(df, float(min_rating), where)
    return df.reset_index(drop=True)


def filter_interactions(
    df: pd.DataFrame,
    *,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    duplicates: Literal["keep", "first", "last"] = "keep",
) -> pd.DataFrame:
    """Drop repeated (user, item) pairs, then apply the iterative k-core filter until stable.

    Args:
        df: a frame in :func:`read_interactions`' schema.
        min_user_interactions: users with fewer interactions are removed.
        min_item_interactions: items with fewer interactions are removed.
        duplicates: what to do with a (user, item) pair that occurs more than once: ``"keep"``
            all of them, or keep only the ``"first"`` / ``"last"`` in chronological order
            (timestamp ties broken by row order).

    Removing users can push items below their threshold and the other way round, so both filters
    are repeated until no row is removed: every user and item left meets its threshold. Rows keep
    their input order. What was removed is logged at INFO level.

    Returns:
        A new DataFrame with a fresh RangeIndex.

    Raises:
        DataError: nothing is left after filtering (the message says which step emptied it).
        ValueError: an unknown ``duplicates`` policy or a negative threshold.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(
            f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}"
        )
    for name, value in (
        ("min_user_interactions", min_user_interactions),
        ("min_item_interactions", min_item_interactions),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing} in the interactions frame; it has {list(df.columns)}. "
            "Read it with read_interactions() first."
        )
    if len(df) == 0:
        raise DataError("the interaction log is empty (no rows)")

    users, _ = pd.factorize(df["user"])
    items, item_ids = pd.factorize(df["item"])
    keep = np.ones(len(df), dtype=bool)
    if duplicates != "keep":
        order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
        pairs = users[order].astype(np.int64) * len(item_ids) + items[order]
        repeated = pd.Series(pairs).duplicated(keep=duplicates).to_numpy()
        keep[order] = ~repeated
        n_dropped = int(repeated.sum())
        if n_dropped:
            logger.info(
                "duplicates=%r: removed %d repeated (user, item) interactions of %d",
                duplicates, n_dropped, len(df),
            )

    if min_user_interactions > 1 or min_item_interactions > 1:
        keep = _k_core(users, items, keep, int(min_user_interactions), int(min_item_interactions))

    if not keep.any():
        raise DataError(
            f"no interactions left after filtering {len(df)} rows with "
            f"min_user_interactions={min_user_interactions}, "
            f"min_item_interactions={min_item_interactions}; lower the thresholds"
        )
    return df.loc[keep].reset_index(drop=True)


def _k_core(
    users: np.ndarray, items: np.ndarray, keep: np.ndarray, min_user: int, min_item: int
) -> np.ndarray:
    """Iterate the user and item count filters to their fixed point; returns the new row mask.

    ``users`` and ``items`` are factorized codes per row; ``keep`` the rows still in.
    """
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1

    def present(codes: np.ndarray, size: int, mask: np.ndarray) -> int:
        return int(np.count_nonzero(np.bincount(codes[mask], minlength=size)))

    start_rows = int(keep.sum())
    start_users, start_items = present(users, n_users, keep), present(items, n_items, keep)
    passes = 0
    while True:
        passes += 1
        user_counts = np.bincount(users[keep], minlength=n_users)
        item_counts = np.bincount(items[keep], minlength=n_items)
        new_keep = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        removed = int(keep.sum() - new_keep.sum())
        logger.debug("k-core pass %d removed %d interactions", passes, removed)
        keep = new_keep
        if removed == 0:
            break
    end_rows = int(keep.sum())
    if end_rows < start_rows:
        logger.info(
            "k-core filter (min_user_interactions=%d, min_item_interactions=%d) stable after %d "
            "passes: removed %d of %d interactions, %d of %d users, %d of %d items",
            min_user, min_item, passes, start_rows - end_rows, start_rows,
            start_users - present(users, n_users, keep), start_users,
            start_items - present(items, n_items, keep), start_items,
        )
    return keep


# --------------------------------------------------------------------------------------------------
# Locating problems


class _Where:
    """Turns a row label into a location for an error message.

    ``kind`` is ``"csv"`` (label = row index, line = label + 2: header + 1-based),
    ``"lines"`` (label = line number), ``"file"`` (row position in a parquet file) or
    ``"frame"`` (index label in a DataFrame).
    """

    def __init__(self, path: str | None, kind: str) -> None:
        self.path = path
        self.kind = kind

    def error(self, message: str, label: object = None) -> DataError:
        if label is None:
            return DataError(message, path=self.path)
        if self.kind == "csv":
            return DataError(message, path=self.path, line=int(label) + 2)
        if self.kind == "lines":
            return DataError(message, path=self.path, line=int(label))
        if self.kind == "file":
            return DataError(f"{message} (row {label}, counting from 0)", path=self.path)
        return DataError(f"{message} (row with index label {label!r})", path=self.path)


def _show(value: object) -> str:
    text = str(value)
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "..."
    return repr(text)


def _check_exists(path: Path, *, allow_dir: bool) -> None:
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir() and not allow_dir:
        raise DataError("is a directory; expected an interaction log file", path=path)


# --------------------------------------------------------------------------------------------------
# Column normalization (shared by every table source)


def _normalize(
    frame: pd.DataFrame,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
    where: _Where,
) -> pd.DataFrame:
    """Select, rename and type-check the columns of a table source."""
    columns = list(frame.columns)
    rating_col = _resolve_columns(columns, user_col, item_col, time_col, rating_col, where)
    out = pd.DataFrame(index=frame.index)
    out["user"] = _string_ids(frame[user_col], "user id", where)
    out["item"] = _string_ids(frame[item_col], "item id", where)
    out["timestamp"] = _timestamps(frame[time_col], where)
    if rating_col is not None:
        out["rating"] = _ratings(frame[rating_col], where)
    return out


def _resolve_columns(
    columns: list,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
    where: _Where,
) -> str | None:
    """Check the named columns exist; returns the rating column to use (or None)."""
    wanted = [user_col, item_col, time_col] + ([rating_col] if rating_col is not None else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        hint = ""
        if len(columns) == 1:
            only = str(columns[0])
            for name, char in (("tab", "\t"), ("semicolon", ";"), ("comma", ","), ("space", " ")):
                if char in only:
                    hint = f" The header looks {name}-separated: pass sep={char!r}."
                    break
        raise where.error(
            f"missing column(s) {missing}; the columns are {[str(c) for c in columns]}. "
            f"Name them with user_col=, item_col=, time_col=, rating_col=.{hint}"
        )
    if rating_col is None and "rating" in columns:
        return "rating"
    return rating_col


def _string_ids(values: pd.Series, what: str, where: _Where) -> pd.Series:
    """Ids as pandas strings, whatever their type; null or empty ids raise :class:`DataError`.

    Integers become their decimal text, integral floats lose the ``.0`` (a column of integer ids
    with a null read as float), bytes are decoded as UTF-8.
    """
    null = values.isna().to_numpy()
    if null.any():
        raise where.error(f"missing {what}", values.index[int(np.argmax(null))])
    dtype = values.dtype
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        out = values
    elif pd.api.types.is_bool_dtype(dtype):
        out = values.astype(str)
    elif pd.api.types.is_integer_dtype(dtype):
        out = values.astype("int64" if dtype.kind == "i" else dtype).astype(str)
    elif pd.api.types.is_float_dtype(dtype):
        floats = values.to_numpy(dtype="float64")
        if np.all(np.isfinite(floats)) and np.all(floats == np.round(floats)):
            out = pd.Series(floats.astype(np.int64), index=values.index).astype(str)
        else:
            out = values.astype(str)
    else:
        out = values.map(_one_id).astype(str)
    empty = (out == "").to_numpy()
    if empty.any():
        raise where.error(f"empty {what}", values.index[int(np.argmax(empty))])
    return out


def _one_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _timestamps(values: pd.Series, where: _Where) -> pd.Series:
    """Timestamps as int64 or float64; datetimes become int64 nanoseconds since the epoch (UTC)."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return _datetimes_to_ns(values, values, where)
    if pd.api.types.is_bool_dtype(dtype):
        raise where.error(f"timestamps must be numbers or datetimes, got booleans ({dtype})")
    if pd.api.types.is_numeric_dtype(dtype):
        numbers = values
        bad = values.isna().to_numpy()
        if bad.any():
            raise where.error("missing timestamp", values.index[int(np.argmax(bad))])
    else:
        text = values.astype(str).str.strip()
        missing = (values.isna() | (text == "")).to_numpy()
        if missing.any():
            raise where.error("missing timestamp", values.index[int(np.argmax(missing))])
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna().to_numpy()
        if bad.all():  # not numbers at all: accept ISO 8601 dates, all or nothing
            parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
            return _datetimes_to_ns(parsed, values, where, raw=text)
        if bad.any():
            first = int(np.argmax(bad))
            raise where.error(
                f"timestamp {_show(text.iloc[first])} is not a number", values.index[first]
            )
    finite = np.isfinite(numbers.to_numpy(dtype="float64"))
    if not finite.all():
        first = int(np.argmax(~finite))
        raise where.error(
            f"timestamp {_show(values.iloc[first])} is not a finite number", values.index[first]
        )
    if pd.api.types.is_integer_dtype(numbers.dtype):
        if len(numbers) and numbers.to_numpy(dtype="float64").max() > np.iinfo(np.int64).max:
            return numbers.astype("float64")
        return numbers.astype("int64")
    return numbers.astype("float64")


def _datetimes_to_ns(
    parsed: pd.Series, values: pd.Series, where: _Where, raw: pd.Series | None = None
) -> pd.Series:
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        if raw is None:
            raise where.error("missing timestamp", values.index[first])
        raise where.error(
            f"timestamp {_show(raw.iloc[first])} is neither a number nor an ISO 8601 date",
            values.index[first],
        )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.as_unit("ns").astype("int64")


def _ratings(values: pd.Series, where: _Where) -> pd.Series:
    """Ratings as numbers; a missing rating is NaN (it never passes a ``min_rating`` filter)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("int64")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values
    text = values.astype(str).str.strip()
    blank = (values.isna() | (text == "")).to_numpy()
    numbers = pd.to_numeric(text.where(~blank, None), errors="coerce")
    bad = numbers.isna().to_numpy() & ~blank
    if bad.any():
        first = int(np.argmax(bad))
        raise where.error(f"rating {_show(text.iloc[first])} is not a number", values.index[first])
    return numbers


def _apply_min_rating(df: pd.DataFrame, min_rating: float, where: _Where) -> pd.DataFrame:
    if "rating" not in df.columns:
        raise where.error(
            f"min_rating={min_rating:g} needs ratings, but the log has no rating column "
            "(name it with rating_col=)"
        )
    keep = (df["rating"] >= min_rating).to_numpy()
    if not keep.any():
        ratings = df["rating"]
        raise where.error(
            f"no interactions left: all {len(df)} rows have a rating below min_rating="
            f"{min_rating:g} (ratings range from {ratings.min():g} to {ratings.max():g})"
        )
    logger.info(
        "min_rating=%g: kept %d of %d interactions", min_rating, int(keep.sum()), len(df)
    )
    return df.loc[keep]


# --------------------------------------------------------------------------------------------------
# Table formats


def _read_csv(
    path: Path,
    sep: str,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
) -> pd.DataFrame:
    where = _Where(path=str(path), kind="csv")
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty (no header row)", path=path) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        raise _csv_error(path, err) from None
    rating_col = _resolve_columns(
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
    return _normalize(raw, user_col, item_col, time_col, rating_col, where)


def _csv_error(path: Path, err: Exception) -> DataError:
    if isinstance(err, UnicodeDecodeError):
        return DataError(f"not valid UTF-8 text ({err.reason} at byte {err.start})", path=path)
    match = re.search(r"line (\d+)", str(err))
    if match:
        line = int(match.group(1))
        detail = str(err).split("C error: ")[-1]
        return DataError(
            f"malformed line ({detail}): {_show(_line_text(path, line))}", path=path, line=line
        )
    return DataError(f"cannot parse as CSV: {err}", path=path)


def _line_text(path: Path, line: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, 1):
            if number == line:
                return text.rstrip("\r\n")
    return ""


def _delimited(default_sep: str) -> _Reader:
    """The reader of delimited text with a header row, separated by ``sep`` or ``default_sep``."""

    def read(path: Path, options: _ReadOptions) -> pd.DataFrame:
        sep = default_sep if options.sep is None else options.sep
        return _read_csv(
            path, sep, options.user_col, options.item_col, options.time_col, options.rating_col
        )

    return read


def _read_parquet(path: Path, options: _ReadOptions) -> pd.DataFrame:
    import pyarrow.dataset as pads

    user_col, item_col, time_col = options.user_col, options.item_col, options.time_col
    rating_col = options.rating_col
    where = _Where(path=str(path), kind="file")
    try:
        columns = pads.dataset(str(path), format="parquet").schema.names
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise DataError(f"not a readable Parquet file or dataset ({err})", path=path) from None
    rating_col = _resolve_columns(columns, user_col, item_col, time_col, rating_col, where)
    wanted = [user_col, item_col, time_col] + ([rating_col] if rating_col is not None else [])
    frame = pd.read_parquet(path, columns=wanted)
    return _normalize(frame, user_col, item_col, time_col, rating_col, where)


# --------------------------------------------------------------------------------------------------
# Line formats of public datasets


def _read_text(path: Path) -> str:
    """The whole file decoded as UTF-8, with Windows line endings turned into Unix ones."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"not valid UTF-8 text ({err.reason})", path=path, line=line) from None
    return text.replace("\r\n", "\n")


def _text_lines(path: Path) -> list[str]:
    """The file's lines, without their line endings."""
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _first_line(path: Path) -> str:
    """The first non-blank line (for format detection), without reading the whole file."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.rstrip("\r\n")
    return ""


def _line_error(path: Path, number: int, line: str, problem: str) -> DataError:
    return DataError(f"{problem}: {_show(line.rstrip())}", path=path, line=number)


def _read_sasrec(path: Path, options: _ReadOptions) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    for number, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if len(parts) == 2:
            users.append(parts[0])
            items.append(parts[1])
            stamps.append(number)
        elif parts:
            raise _line_error(
                path, number, line,
                f"expected 2 whitespace-separated fields 'user item', found {len(parts)}",
            )
    return _frame(users, items, np.asarray(stamps, dtype=np.int64))


def _read_s3rec(path: Path, options: _ReadOptions) -> pd.DataFrame:
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    for number, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise _line_error(
                path, number, line, "expected 'user item [item ...]', found a user with no items"
            )
        users.append(parts[0])
        counts.append(len(parts) - 1)
        items.extend(parts[1:])
    if len(set(users)) < len(users):
        logger.warning(
            "%s: %d users appear on more than one line; their lines are joined in file order",
            path, len(users) - len(set(users)),
        )
    repeated_users = np.repeat(np.asarray(users, dtype=object), counts)
    # The item's ordinal in the file: orders items within a line, and lines of the same user.
    stamps = np.arange(1, len(items) + 1, dtype=np.int64)
    return _frame(repeated_users, items, stamps)


def _read_movielens(path: Path, options: _ReadOptions) -> pd.DataFrame:
    first = _first_line(path)
    name = path.name.lower()
    if name.endswith(".csv") or first.startswith("userId"):  # ML-20M / 25M / latest
        return _read_csv(path, ",", "userId", "movieId", "timestamp", "rating")
    text = _read_text(path)
    if "::" in first or name.endswith(".dat"):
        sep = "::"
    elif "\t" in first or name == "u.data":
        sep = "\t"
    else:
        lines = text.split("\n")
        number = next((n for n, line in enumerate(lines, 1) if line.strip()), 1)
        raise _line_error(
            path, number, first,
            "not a MovieLens ratings file: expected u.data (tab-separated) or ratings.dat "
            "('::'-separated) lines 'user item rating timestamp'",
        )
    raw = _split_fields_fast(text, sep)
    if raw is None:  # some line is malformed: find and name it
        raw = _split_fields_exact(path, text, sep)
    where = _Where(path=str(path), kind="lines")  # raw's index is the line number
    frame = pd.DataFrame(index=raw.index)
    frame["user"] = raw["user"]
    frame["item"] = raw["item"]
    frame["timestamp"] = _timestamps(raw["timestamp"], where)
    frame["rating"] = _ratings(raw["rating"], where)
    missing = frame["rating"].isna().to_numpy()
    if missing.any():
        raise where.error("missing rating", raw.index[int(np.argmax(missing))])
    return frame


_ML_FIELDS = ["user", "item", "rating", "timestamp"]


def _split_fields_fast(text: str, sep: str) -> pd.DataFrame | None:
    """Split well-formed ``user<sep>item<sep>rating<sep>timestamp`` lines with pandas' C parser.

    Returns the fields as strings indexed by line number, or None when any line is malformed.
    """
    if sep != "\t":
        if "\t" in text:
            return None
        text = text.replace(sep, "\t")
    try:
        raw = pd.read_csv(
            io.StringIO(text), sep="\t", header=None, names=_ML_FIELDS,
            dtype={"user": str, "item": str},  # rating, timestamp: numbers, or text if not
            na_filter=False, keep_default_na=False, skip_blank_lines=False,
            quoting=csv.QUOTE_NONE, engine="c",
        )
    except (pd.errors.ParserError, ValueError):
        return None
    raw.index = raw.index + 1
    empty = pd.DataFrame(  # a numeric column has no empty field: na_filter=False keeps "" as text
        {
            c: np.zeros(len(raw), dtype=bool)
            if pd.api.types.is_numeric_dtype(raw[c].dtype)
            else (raw[c].astype(str) == "").to_numpy()
            for c in _ML_FIELDS
        },
        index=raw.index,
    )
    blank = empty.all(axis=1).to_numpy()
    if (empty.any(axis=1).to_numpy() & ~blank).any():
        return None
    if blank.any():
        lines = text.split("\n")
        if any(lines[n - 1].strip() for n in raw.index[blank]):  # e.g. ':::' is not blank
            return None
        raw = raw.loc[~blank]
    return raw


def _split_fields_exact(path: Path, text: str, sep: str) -> pd.DataFrame:
    """Split line by line; raises a :class:`DataError` naming the first malformed line."""
    rows: list[list[str]] = []
    numbers: list[int] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) != 4 or not parts[0] or not parts[1]:
            problem = f"found {len(parts)}" if len(parts) != 4 else "found an empty id"
            raise _line_error(
                path, number, line,
                f"expected 4 {sep!r}-separated fields 'user item rating timestamp', {problem}",
            )
        rows.append(parts)
        numbers.append(number)
    return pd.DataFrame(rows, columns=_ML_FIELDS, index=pd.Index(numbers), dtype=str)


def _frame(users, items, stamps: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": pd.array(users, dtype=str),
            "item": pd.array(items, dtype=str),
            "timestamp": stamps,
        }
    )


# --------------------------------------------------------------------------------------------------
# The formats: adding one is a reader (path, options) -> frame and an entry here


READERS: dict[str, _Reader] = {
    "csv": _delimited(","),
    "tsv": _delimited("\t"),
    "parquet": _read_parquet,
    "sasrec": _read_sasrec,
    "s3rec": _read_s3rec,
    "movielens": _read_movielens,
}
FORMATS = tuple(READERS)
_DIRECTORY_FORMATS = ("parquet",)  # formats whose source may be a directory (a dataset), not a file
