"""Warm start: yesterday's trained model as the starting point of today's, with a growing catalogue.

A daily retraining run starts from the parent model instead of random weights:

* the **vocabulary** keeps the parent's mapping -- every item the parent knew keeps its dense id,
  items new in today's log are appended after them (most frequent first), so ids and rows stay
  stable from one day to the next (:func:`extend_vocabulary`);
* the **item embedding** rows of known items (and of the output embedding, when it is not shared)
  are copied; new items start from the layer's initializer, through Keras'
  ``warmstart_embedding_matrix``;
* every **other weight** (positional embedding, attention blocks, LayerNorms) is copied as is;
  the architecture must be the parent's (a clear error names the first weight that differs);
* the optimizer starts fresh (Adam's moments are cheap to rebuild and tied to the old rows).

Items the parent knew that no longer occur in today's log are **kept**: their ids and rows stay,
they can still be recommended, and they stop being trained (no positives, only rare negative
draws). A catalogue that really retires items filters them at serving or rebuilds the vocabulary
(a cold start). Models with a user embedding are not warm-started: user ids are not stable
across logs in general, and their rows are what changes most.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from sasrec_tf._compat import keras
from sasrec_tf.data.vocab import PAD_TOKEN, ItemVocabulary

__all__ = ["WarmStart", "extend_vocabulary", "warm_start"]


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What a warm start carried over (recorded in the run's metadata)."""

    parent: str
    known_items: int  # parent items that occur in the new log: rows copied and trained on
    new_items: int  # items the parent did not know: fresh rows
    retired_items: int  # parent items absent from the new log: rows and ids kept
    copied_weights: int  # weight tensors copied (item tables included)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def extend_vocabulary(parent: ItemVocabulary, interactions: pd.DataFrame) -> ItemVocabulary:
    """The parent's vocabulary with the items of ``interactions`` it lacks appended.

    Known items keep their dense ids; new ones follow in
    :meth:`ItemVocabulary.from_interactions` order (most frequent first). ``interactions`` is a
    log in :func:`~sasrec_tf.data.ingest.read_interactions`' schema (an ``item`` column of raw
    string ids). Reading a log for a warm start does this on the way
    (:func:`sasrec_tf.data.load_dataset` with ``vocab=parent, unknown_items="append"``, which
    ``DataOptions.read(path, vocab, grow=True)`` calls).
    """
    new = interactions.loc[~interactions["item"].isin(parent.ids)]
    if new.empty:
        return parent
    return ItemVocabulary(parent.ids + ItemVocabulary.from_interactions(new).ids)


def warm_start(model: Any, parent: Any, vocab: ItemVocabulary, *, item_counts: Any = None,
               parent_path: str = "") -> WarmStart:
    """Copy ``parent`` (a :class:`~sasrec_tf.artifacts.TrainedModel`) into the built ``model``
    whose catalogue is ``vocab`` (from :func:`extend_vocabulary`).

    Args:
      model: a built SASRec with ``len(vocab)`` items and the parent's architecture.
      parent: the parent's trained model and vocabulary.
      vocab: the new vocabulary; must start with the parent's ids in the parent's order.
      item_counts: interactions per dense id in the new training data (``[N + 1]``), only to
        count known and retired items for the summary; ``None`` counts every parent item known.
      parent_path: where the parent was loaded from, for the summary.

    Raises:
      ValueError: a user-embedding model, a vocabulary that does not extend the parent's, or an
        architecture that differs from the parent's.
    """
    if getattr(model, "uses_user_embedding", False) or getattr(parent.model, "uses_user_embedding", False):
        raise ValueError("warm start does not support models with a user embedding (use_user_embedding=true): "
                         "user ids are not stable across logs; train from scratch")
    old_ids = parent.vocab.ids
    if vocab.ids[: len(old_ids)] != old_ids:
        raise ValueError("the new vocabulary must keep the parent's items first, in the parent's order "
                         "(build it with sasrec_tf.warmstart.extend_vocabulary)")
    if len(vocab) != model.num_items:
        raise ValueError(f"the vocabulary has {len(vocab)} items but the model {model.num_items}")
    tables = {layer.embeddings.name for layer in _item_tables(model)}
    # Trainable weights only: the learned parameters. Item counts (popularity, log-q) come from
    # the new training data, metric trackers start at zero.
    source = {weight.name: weight for weight in parent.model.trainable_weights}
    target = list(model.trainable_weights)
    differ = sorted(set(source) ^ {weight.name for weight in target})
    if differ:
        raise ValueError(f"the parent's architecture differs (weights {differ[:3]}): warm start needs the "
                         "same layers, sizes and options; train from scratch")
    base_terms = np.array([PAD_TOKEN, *old_ids], dtype=object)
    new_terms = np.array([PAD_TOKEN, *vocab.ids], dtype=object)
    for weight in target:  # check every shape before copying anything
        have, want = tuple(source[weight.name].shape), tuple(weight.shape)
        if (have[1:], have[:1]) != (want[1:], have[:1] if weight.name in tables else want[:1]):
            raise ValueError(f"the parent's architecture differs: {weight.name} has shape {have} there and "
                             f"{want} here; train from scratch")
    for weight in target:
        value = source[weight.name].numpy()
        if weight.name in tables:  # rows follow the vocabulary; new items keep their initial rows
            value = keras.utils.warmstart_embedding_matrix(
                base_vocabulary=base_terms, new_vocabulary=new_terms, base_embeddings=value,
                new_embeddings_initializer=keras.initializers.Constant(weight.numpy()))
        weight.assign(value)
    known = len(old_ids) if item_counts is None else int(np.count_nonzero(np.asarray(item_counts)[1:len(old_ids) + 1]))
    return WarmStart(parent=str(parent_path), known_items=known, new_items=len(vocab) - len(old_ids),
                     retired_items=len(old_ids) - known, copied_weights=len(target))


def _item_tables(model: Any) -> list:
    return [layer for layer in (model.item_embedding, getattr(model, "output_item_embedding", None))
            if layer is not None]

