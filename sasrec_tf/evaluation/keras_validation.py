"""Full-ranking validation inside ordinary Keras workflows: ``compile(metrics=...)`` + ``evaluate``.

Ranking needs the query at the last position and every item's score, not the sampled training
loss. :func:`validation_dataset` supplies batches ``(item_ids, y_true)`` (target and history)
from a leave-one-out split, and a SASRec compiled with :class:`~sasrec_tf.evaluation.HitRate` /
:class:`~sasrec_tf.evaluation.NDCG` / :class:`~sasrec_tf.evaluation.MRR` updates them from such
batches in its own ``test_step``::

    model.compile(optimizer=..., metrics=[HitRate(model, k=10), NDCG(model, k=10), MRR(model)])
    model.evaluate(validation_dataset(split, model.max_len), return_dict=True)
    # {"hr@10": ..., "ndcg@10": ..., "mrr": ...}, equal to evaluate_full's numbers
    model.fit(train_batches, validation_data=validation_dataset(split, model.max_len))
    # val_hr@10, val_ndcg@10, val_mrr in the logs, beside the training loss

:class:`QueryModel` is optional for a SASRec: it gives the same ``evaluate`` to anything with
``query_embeddings`` and ``item_embeddings`` that is not a Keras model with that ``test_step``
(e.g. :class:`sasrec_tf.baselines.MostPopular`), so a baseline is measured by the same metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.data.pipeline import pad_sequences
from sasrec_tf.evaluation.protocols import STAGES

__all__ = ["QueryModel", "validation_dataset"]


def validation_dataset(split: Any, max_len: int, *, stage: str = "valid", batch_size: int = 256) -> tf.data.Dataset:
    """Batches ``(item_ids, y_true)`` of a leave-one-out split's validation (or test) users.

    ``item_ids`` ``[B, max_len]`` int32: each user's input sequence, most recent ``max_len``
    items, left-padded with 0 (what the model reads). ``y_true`` ``[B, 1 + H]`` int32: the target,
    then the user's *whole* input history padded with 0 to the batch's longest (what full ranking
    excludes), as the ranking metrics of :mod:`sasrec_tf.metrics` expect. Users in split order;
    the last batch may be smaller.

    Args:
      split: a :class:`~sasrec_tf.data.sequences.LeaveOneOutSplit`.
      max_len: the model's ``max_len``.
      stage: ``"valid"`` (inputs and targets ``valid_*``) or ``"test"``.
      batch_size: users per batch.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    inputs = getattr(split, f"{stage}_inputs")
    targets = np.asarray(getattr(split, f"{stage}_targets"), dtype=np.int32)
    if not len(targets):
        raise ValueError(f"the split has no {stage} users")
    lengths = np.fromiter((len(s) for s in inputs), dtype=np.int64, count=len(inputs))
    flat = np.concatenate([np.zeros(0, np.int32), *(np.asarray(s, dtype=np.int32) for s in inputs)])
    row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    y_true = tf.RaggedTensor.from_row_lengths(np.insert(flat, row_starts, targets), lengths + 1)  # target first
    item_ids = pad_sequences(inputs, max_len)
    dataset = tf.data.Dataset.from_tensor_slices((item_ids, y_true)).batch(batch_size)  # ragged y_true
    return dataset.map(lambda x, y: (x, y.to_tensor()))  # padded to the batch's longest row


class QueryModel(keras.Model):
    """A query model as ``item_ids [B, T] → query [B, d]`` (its ``query_embeddings``), to ``evaluate``.

    Optional for a SASRec, which evaluates compiled ranking metrics itself; useful for any other
    object with ``query_embeddings`` / ``item_embeddings`` (a baseline), whose ``y_pred`` Keras'
    standard ``test_step`` then feeds to the compiled metrics (``loss`` in the results is Keras'
    total with no compiled loss: the wrapped model's regularisation terms, or 0). The wrapped
    model's weights are shared, not copied: evaluating after more training sees the new weights.
    Create it (and ``compile`` it) under the model's ``tf.distribute`` strategy scope when the
    model has one, as for any Keras model. Models with a user embedding are not supported: their
    query also needs the user, which :func:`validation_dataset` does not give.
    """

    def __init__(self, model: Any, **kwargs):
        super().__init__(**kwargs)
        if getattr(model, "uses_user_embedding", False):
            raise ValueError("QueryModel does not support models with a user embedding; "
                             "use sasrec_tf.evaluation.evaluate_full with user_ids")
        self.sasrec = model

    def call(self, item_ids, training=None):
        return self.sasrec.query_embeddings(item_ids)

    @property
    def metrics(self):
        """Only what ``compile`` added. Keras would also collect a wrapped SASRec's own loss
        trackers, which measure training batches and would be reported here as zeros."""
        compiled = [getattr(self, "compiled_loss", None), getattr(self, "compiled_metrics", None)]
        return [metric for container in compiled if container is not None for metric in container.metrics]
