"""Non-learned reference recommenders, with the same scoring interface as :class:`SASRec`."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


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
