"""Filtering an interaction log: repeated (user, item) pairs and the iterative k-core filter.

:func:`filter_interactions` runs after :func:`~sasrec_tf.data.ingest.read_interactions` (whose
schema it takes) and before the log is grouped into sequences; it is re-exported by
:mod:`sasrec_tf.data.ingest` and :mod:`sasrec_tf.data`.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest.normalize import COLUMNS

__all__ = ["DUPLICATE_POLICIES", "filter_interactions"]

# A child of the ``sasrec_tf.data.ingest`` logger: setting that one's level covers every reading step.
logger = logging.getLogger(__name__)

DUPLICATE_POLICIES = ("keep", "first", "last")


def filter_interactions(
    df: pd.DataFrame,
    *,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    duplicates: Literal["keep", "first", "last"] = "keep",
) -> pd.DataFrame:
    """Drop repeated (user, item) pairs, then apply the iterative k-core filter until stable.

    Args:
        df: a frame in :func:`~sasrec_tf.data.ingest.read_interactions`' schema.
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
    missing = [c for c in COLUMNS if c not in df.columns]
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

