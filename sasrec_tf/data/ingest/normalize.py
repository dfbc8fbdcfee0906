"""Column normalising and validation, shared by every table source of
:func:`~sasrec_tf.data.ingest.read_interactions`: select and rename the columns, type-check them,
and turn a bad value into a :class:`~sasrec_tf.data.errors.DataError` naming its file and line.

The schema every source is normalised to (see :mod:`sasrec_tf.data.ingest`): ``user`` and ``item``
as strings, ``timestamp`` as int64 or float64 (datetimes as int64 nanoseconds, UTC), ``rating``
as numbers when the source has one. :class:`Location` turns the row label of a frame into the
place an error message names (a CSV line, a line of a line format, a Parquet row, a DataFrame
index label).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError

__all__ = [
    "COLUMNS",
    "Location",
    "apply_min_rating",
    "check_exists",
    "normalize_columns",
    "quote",
    "resolve_columns",
    "to_ratings",
    "to_string_ids",
    "to_timestamps",
]

# A child of the ``sasrec_tf.data.ingest`` logger: setting that one's level covers every reading step.
logger = logging.getLogger(__name__)

COLUMNS = ["user", "item", "timestamp"]  # the columns every source has; "rating" is optional
_SHOW_CHARS = 80  # how much of an offending line or value an error message quotes


# --------------------------------------------------------------------------------------------------
# Locating problems


class Location:
    """Turns a row label into a location for an error message.

    ``kind`` is ``"csv"`` (label = row index, line = label + 2: header + 1-based),
    ``"lines"`` (label = line number), ``"file"`` (row position in a parquet file) or
    ``"frame"`` (index label in a DataFrame).
    """

    def __init__(self, path: str | None, kind: str) -> None:
        self.path = path
        self.kind = kind

    def error(self, message: str, label: object = None) -> DataError:
        """A :class:`DataError` for ``message`` at the row ``label`` (or the whole source)."""
        if label is None:
            return DataError(message, path=self.path)
        if self.kind == "csv":
            return DataError(message, path=self.path, line=int(label) + 2)
        if self.kind == "lines":
            return DataError(message, path=self.path, line=int(label))
        if self.kind == "file":
            return DataError(f"{message} (row {label}, counting from 0)", path=self.path)
        return DataError(f"{message} (row with index label {label!r})", path=self.path)


def quote(value: object) -> str:
    """``value`` as an error message quotes it: ``repr`` of its text, cut after 80 characters."""
    text = str(value)
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "..."
    return repr(text)


def check_exists(path: Path, *, allow_dir: bool) -> None:
    """Raise a :class:`DataError` unless ``path`` exists (and is a file, unless ``allow_dir``)."""
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir() and not allow_dir:
        raise DataError("is a directory; expected an interaction log file", path=path)



# --------------------------------------------------------------------------------------------------
# Column normalization (shared by every table source)


def normalize_columns(
    frame: pd.DataFrame,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
    where: Location,
) -> pd.DataFrame:
    """Select, rename and type-check the columns of a table source."""
    columns = list(frame.columns)
    rating_col = resolve_columns(columns, user_col, item_col, time_col, rating_col, where)
    out = pd.DataFrame(index=frame.index)
    out["user"] = to_string_ids(frame[user_col], "user id", where)
    out["item"] = to_string_ids(frame[item_col], "item id", where)
    out["timestamp"] = to_timestamps(frame[time_col], where)
    if rating_col is not None:
        out["rating"] = to_ratings(frame[rating_col], where)
    return out


def resolve_columns(
    columns: list,
    user_col: str,
    item_col: str,
    time_col: str,
    rating_col: str | None,
    where: Location,
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


def to_string_ids(values: pd.Series, what: str, where: Location) -> pd.Series:
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
    # A model directory stores ids one per line (vocab.txt, users.txt): a line break cannot be stored.
    broken = out.str.contains("[\n\r]", regex=True).to_numpy(dtype=bool)
    if broken.any():
        row = int(np.argmax(broken))
        raise where.error(f"{what} {out.iloc[row]!r} holds a line break (ids are stored one per line)",
                          values.index[row])
    return out


def _one_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def to_timestamps(values: pd.Series, where: Location) -> pd.Series:
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
                f"timestamp {quote(text.iloc[first])} is not a number", values.index[first]
            )
    finite = np.isfinite(numbers.to_numpy(dtype="float64"))
    if not finite.all():
        first = int(np.argmax(~finite))
        raise where.error(
            f"timestamp {quote(values.iloc[first])} is not a finite number", values.index[first]
        )
    if pd.api.types.is_integer_dtype(numbers.dtype):
        if len(numbers) and numbers.to_numpy(dtype="float64").max() > np.iinfo(np.int64).max:
            return numbers.astype("float64")
        return numbers.astype("int64")
    return numbers.astype("float64")


def _datetimes_to_ns(
    parsed: pd.Series, values: pd.Series, where: Location, raw: pd.Series | None = None
) -> pd.Series:
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        if raw is None:
            raise where.error("missing timestamp", values.index[first])
        raise where.error(
            f"timestamp {quote(raw.iloc[first])} is neither a number nor an ISO 8601 date",
            values.index[first],
        )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.dt.as_unit("ns").astype("int64")


def to_ratings(values: pd.Series, where: Location) -> pd.Series:
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
        raise where.error(f"rating {quote(text.iloc[first])} is not a number", values.index[first])
    return numbers


def apply_min_rating(df: pd.DataFrame, min_rating: float, where: Location) -> pd.DataFrame:
    """The rows with ``rating >= min_rating``.

    Raises:
        DataError: the log has no rating column, or no row is left.
    """
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

