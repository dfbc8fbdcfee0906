"""Line formats of public datasets: the SASRec paper's files, S3-Rec / ICLRec's and MovieLens'.

Their order is the file's (the SASRec and S3-Rec files have no timestamps: the line, or the item's
ordinal, is the timestamp); a malformed line raises a :class:`~sasrec_tf.data.errors.DataError`
naming it.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest.table_formats import ReadOptions, read_csv
from sasrec_tf.data.ingest.normalize import Location, quote, to_ratings, to_timestamps

__all__ = ["read_movielens", "read_s3rec", "read_sasrec"]

# A child of the ``sasrec_tf.data.ingest`` logger: setting that one's level covers every reading step.
logger = logging.getLogger(__name__)


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
    """A :class:`DataError` at ``path:number`` quoting the offending line."""
    return DataError(f"{problem}: {quote(line.rstrip())}", path=path, line=number)


def read_sasrec(path: Path, options: ReadOptions) -> pd.DataFrame:
    """The SASRec paper's files: ``user item`` per line in time order; the timestamp is the line number."""
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


def read_s3rec(path: Path, options: ReadOptions) -> pd.DataFrame:
    """S3-Rec / ICLRec files: ``user item item ...`` per line in time order; the timestamp is the
    item's ordinal in the file."""
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


def read_movielens(path: Path, options: ReadOptions) -> pd.DataFrame:
    """MovieLens ratings: ML-100K ``u.data``, ML-1M/10M ``ratings.dat`` or ML-20M+ ``ratings.csv``,
    detected from the file name and the first line."""
    first = _first_line(path)
    name = path.name.lower()
    if name.endswith(".csv") or first.startswith("userId"):  # ML-20M / 25M / latest
        return read_csv(path, ",", "userId", "movieId", "timestamp", "rating")
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
    where = Location(path=str(path), kind="lines")  # raw's index is the line number
    frame = pd.DataFrame(index=raw.index)
    frame["user"] = raw["user"]
    frame["item"] = raw["item"]
    frame["timestamp"] = to_timestamps(raw["timestamp"], where)
    frame["rating"] = to_ratings(raw["rating"], where)
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
    """A frame in read_interactions' schema from ids (as strings) and timestamps."""
    return pd.DataFrame(
        {
            "user": pd.array(users, dtype=str),
            "item": pd.array(items, dtype=str),
            "timestamp": stamps,
        }
    )

