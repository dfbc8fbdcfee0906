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

This package's top is the read API: :func:`read_interactions` and the registry of formats,
:data:`READERS`. Its parts: :mod:`~sasrec_tf.data.ingest.table_formats` (csv, tsv, Parquet, and
:class:`~sasrec_tf.data.ingest.table_formats.ReadOptions`, what a reader gets),
:mod:`~sasrec_tf.data.ingest.line_formats` (the line formats of public datasets),
:mod:`~sasrec_tf.data.ingest.normalize` (column normalising and validation) and
:mod:`~sasrec_tf.data.ingest.filters` (:func:`filter_interactions`, re-exported here). Every part
logs to a child of the ``sasrec_tf.data.ingest`` logger.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from sasrec_tf.data.errors import DataError  # noqa: F401  (importable from here, as before the split)
from sasrec_tf.data.ingest.filters import DUPLICATE_POLICIES, filter_interactions
from sasrec_tf.data.ingest.line_formats import read_movielens, read_s3rec, read_sasrec
from sasrec_tf.data.ingest.normalize import Location, apply_min_rating, check_exists, normalize_columns
from sasrec_tf.data.ingest.table_formats import Reader, ReadOptions, delimited, read_parquet

__all__ = ["FORMATS", "READERS", "DUPLICATE_POLICIES", "read_interactions", "filter_interactions"]

logger = logging.getLogger(__name__)  # the parent of the parts' loggers

Source = str | os.PathLike[str] | pd.DataFrame

# The formats: adding one is a reader (path, options) -> frame (see table_formats.Reader) and an
# entry here.
READERS: dict[str, Reader] = {
    "csv": delimited(","),
    "tsv": delimited("\t"),
    "parquet": read_parquet,
    "sasrec": read_sasrec,
    "s3rec": read_s3rec,
    "movielens": read_movielens,
}
FORMATS = tuple(READERS)
_DIRECTORY_FORMATS = ("parquet",)  # formats whose source may be a directory (a dataset), not a file


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
        where = Location(path=None, kind="frame")
        df = normalize_columns(source, user_col, item_col, time_col, rating_col, where)
    else:
        path = Path(os.fspath(source))
        fmt = str(format).lower()
        if fmt not in READERS:
            raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        check_exists(path, allow_dir=fmt in _DIRECTORY_FORMATS)
        where = Location(path=str(path), kind="file")
        options = ReadOptions(user_col=user_col, item_col=item_col, time_col=time_col,
                              rating_col=rating_col, sep=sep)
        df = READERS[fmt](path, options)
    if len(df) == 0:
        raise where.error("the interaction log is empty (no rows)")
    if min_rating is not None:
        df = apply_min_rating(df, float(min_rating), where)
    return df.reset_index(drop=True)
