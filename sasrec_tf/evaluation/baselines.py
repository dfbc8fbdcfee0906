"""Non-learned reference recommenders, with the same scoring interface as :class:`SASRec`:
:class:`MostPopular` (training counts) and :class:`ContentBaseline` (attribute similarity)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["ContentBaseline", "MostPopular", "feature_arrays"]


class MostPopular:
    """Scores every item by its number of training interactions, whatever the history.

    Implements ``query_embeddings`` / ``item_embeddings`` (1-dimensional: query 1, item = count)
    so the evaluation protocols rank it exactly as they rank SASRec. Padding (row 0) scores
    lowest.
    """

    uses_user_embedding = False

    def __init__(self, train_sequences: Sequence[np.ndarray], num_items: int, max_len: int = 50):
        counts = np.bincount(
            np.concatenate([np.asarray(s, dtype=np.int64) for s in train_sequences] or [np.zeros(0, np.int64)]),
            minlength=num_items + 1,
        ).astype(np.float32)
        counts[0] = -1.0
        self.num_items = int(num_items)
        self.max_len = int(max_len)
        self.counts = counts
        self._items = tf.constant(counts[:, None])

    def query_embeddings(self, item_ids, user_ids=None) -> tf.Tensor:
        return tf.ones((tf.shape(item_ids)[0], 1), tf.float32)

    def item_embeddings(self) -> tf.Tensor:
        return self._items


def feature_arrays(features: Any, num_items: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(values, row_splits, num_attributes)`` of item features given as an object with those
    attributes (``num_attributes`` a number or a method, as ``AlignedFeatures``' is) or as that
    tuple: item ``i`` (0 = padding) has the attribute ids ``values[row_splits[i]:row_splits[i + 1]]``
    in ``1..num_attributes`` (0 = padding, ignored). ``num_items``: the catalogue they must cover.

    Raises:
      ValueError: row splits that do not start at 0 and grow up to ``len(values)``, features of
        another number of items than ``num_items``, or an attribute id outside ``0..num_attributes``.
    """
    if isinstance(features, tuple):
        values, row_splits, num_attributes = features
    else:
        values, row_splits, num_attributes = features.values, features.row_splits, features.num_attributes
    num_attributes = int(num_attributes() if callable(num_attributes) else num_attributes)
    values = np.asarray(values, np.int64).reshape(-1)
    row_splits = np.asarray(row_splits, np.int64).reshape(-1)
    if (len(row_splits) < 2 or row_splits[0] != 0 or row_splits[-1] != len(values)
            or np.any(np.diff(row_splits) < 0)):
        raise ValueError(f"item features: row_splits must rise from 0 to len(values) = {len(values)}, one entry "
                         "per item plus one (item 0 = padding)")
    if num_items is not None and len(row_splits) - 2 != int(num_items):
        raise ValueError(f"item features cover {len(row_splits) - 2} items, the catalogue has {int(num_items)}")
    if len(values) and (values.min() < 0 or values.max() > num_attributes):
        raise ValueError(f"item features: attribute ids must be in 0..{num_attributes} (0 = padding), got "
                         f"{values.min()}..{values.max()}")
    return values, row_splits, num_attributes


# Above this many cells (2 GiB of float32) the dense item-attribute matrix is refused.
_MAX_ATTRIBUTE_CELLS = 2**29


class ContentBaseline:
    """Scores a candidate by the cosine between its attribute set and the attribute counts of the
    user's history: ``score(u, i) = a_i · c_u / (|a_i| |c_u|)``, where ``a_i`` is item ``i``'s
    multi-hot attribute vector and ``c_u`` counts, per attribute, the history items that have it.

    It needs no training, so it scores an item nobody has interacted with (a cold item) as well
    as any other: the reference of the cold-start protocol. Implements ``query_embeddings``
    (``c_u / |c_u|``) / ``item_embeddings`` (``a_i / |a_i|``, ``[N + 1, A + 1]``) like
    :class:`MostPopular`, so every protocol ranks it through the one ranking kernel (ties,
    history exclusion, repeated targets as for SASRec). An item without attributes, and every
    item for an empty history, scores 0; the padding item scores lowest.

    Args:
      features: item features (see :func:`feature_arrays`) for items ``0..N``.
      num_items: ``N``, checked against the features when given.
      max_len: the most recent history items read (the rankings cut inputs to it); the run
        passes the longest history, so the whole history counts.

    Raises:
      ValueError: features for another number of items, malformed features, or an item-attribute
        matrix too large to hold densely.
    """

    uses_user_embedding = False
    left_padding_invariant = True  # padding has no attributes: leading padding changes no count

    def __init__(self, features: Any, num_items: int | None = None, max_len: int = 50):
        values, row_splits, num_attributes = feature_arrays(features, num_items)
        catalogue = len(row_splits) - 2
        if (catalogue + 1) * (num_attributes + 1) > _MAX_ATTRIBUTE_CELLS:
            raise ValueError(f"the content baseline's {catalogue + 1} x {num_attributes + 1} item-attribute matrix "
                             "is too large to hold densely")
        rows = np.repeat(np.arange(catalogue + 1), np.diff(row_splits))
        keep = (values > 0) & (rows > 0)  # attribute padding, and anything given to the padding item
        multi_hot = np.zeros((catalogue + 1, num_attributes + 1), np.float32)
        multi_hot[rows[keep], values[keep]] = 1.0  # a repeated attribute counts once
        pairs = np.flatnonzero(multi_hot.reshape(-1))  # the unique (item, attribute) pairs, item order
        counts = np.bincount(pairs // (num_attributes + 1), minlength=catalogue + 1)
        self.num_items = catalogue
        self.num_attributes = num_attributes
        self.max_len = int(max_len)
        self._attributes = tf.RaggedTensor.from_row_lengths(
            tf.constant(pairs % (num_attributes + 1), tf.int64), tf.constant(counts, tf.int64))
        norms = np.sqrt(counts, dtype=np.float32)[:, None]
        items = np.divide(multi_hot, norms, out=np.zeros_like(multi_hot), where=norms > 0)
        items[0, 0] = -1.0  # padding: below every real item (its query coordinate is 1, see below)
        self._items = tf.constant(items)

    def query_embeddings(self, item_ids, user_ids=None) -> tf.Tensor:
        """``[B, A + 1]``: each history's attribute counts, L2-normalised; coordinate 0 is 1, so
        the padding item's row (``-1`` there) scores -1 and every real item ``>= 0``."""
        item_ids = tf.cast(item_ids, tf.int64)
        batch = tf.shape(item_ids, out_type=tf.int64)[0]
        width = self.num_attributes + 1
        attributes = tf.gather(self._attributes, item_ids).merge_dims(1, 2)  # [B, (attributes of the history)]
        keys = attributes.value_rowids() * width + attributes.flat_values
        counts = tf.math.unsorted_segment_sum(tf.ones_like(keys, tf.float32), keys, batch * width)
        counts = tf.math.l2_normalize(tf.reshape(counts, [batch, width]), axis=1)
        padding = tf.one_hot(tf.zeros([batch], tf.int64), width, dtype=tf.float32)
        return counts + padding  # coordinate 0 counts no attribute: it only places the padding item

    def item_embeddings(self) -> tf.Tensor:
        return self._items
