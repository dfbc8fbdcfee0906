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

With **item features** (``feature_fusion`` not ``"none"``) the attribute embedding's rows follow
the attribute tokens (the parent's keep theirs, new tokens are appended), and the id rows of items
the parent never trained on (new, or cold there) start at zero: such an item starts from its
features alone, the vector a cold item is served with. A parent **without** features can start a
feature model: its id rows and other weights are copied, the attribute embedding and the fusion
weights start fresh (``WarmStart.fresh_weights`` counts them). :func:`add_cold_items` grows a trained
model by items that have features and no interactions at all, without training.

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

__all__ = ["ColdItems", "WarmStart", "add_cold_items", "extend_vocabulary", "warm_start"]


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What a warm start carried over (recorded in the run's metadata)."""

    parent: str
    known_items: int  # parent items that occur in the new log: rows copied and trained on
    new_items: int  # items the parent did not know: fresh rows
    retired_items: int  # parent items absent from the new log: rows and ids kept
    copied_weights: int  # weight tensors copied (item tables included)
    fresh_weights: int = 0  # a parent without item features: the feature weights started fresh

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        if not self.fresh_weights:  # the record of every other warm start, as it was
            del record["fresh_weights"]
        return record


def extend_vocabulary(parent: ItemVocabulary, interactions: pd.DataFrame) -> ItemVocabulary:
    """The parent's vocabulary with the items of ``interactions`` it lacks appended.

    Known items keep their dense ids; new ones follow in
    :meth:`ItemVocabulary.from_interactions` order (most frequent first). ``interactions`` is a
    log in :func:`~sasrec_tf.data.ingest.read_interactions`' schema (an ``item`` column of raw
    string ids). Reading a log for a warm start does this on the way
    (:func:`sasrec_tf.data.load_dataset` with ``vocab=parent, unknown_items="append"``, which
    ``DataOptions.read(path, vocab, grow=True)`` calls).
    """
    return parent.extended(interactions)


def warm_start(model: Any, parent: Any, vocab: ItemVocabulary, *, item_counts: Any = None,
               parent_path: str = "", attribute_names: Any = None) -> WarmStart:
    """Copy ``parent`` (a :class:`~sasrec_tf.artifacts.TrainedModel`) into the built ``model``
    whose catalogue is ``vocab`` (from :func:`extend_vocabulary`).

    Args:
      model: a built SASRec with ``len(vocab)`` items and the parent's architecture.
      parent: the parent's trained model and vocabulary.
      vocab: the new vocabulary; must start with the parent's ids in the parent's order.
      item_counts: interactions per dense id in the new training data (``[N + 1]``), only to
        count known and retired items for the summary; ``None`` counts every parent item known.
      parent_path: where the parent was loaded from, for the summary.
      attribute_names: with item features, the new model's attribute tokens (the parent's first).

    Raises:
      ValueError: a user-embedding model, a vocabulary that does not extend the parent's, or an
        architecture that differs from the parent's (beyond item features this model adds).
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
    features = getattr(model, "item_representation", None)
    parent_features = getattr(parent.model, "item_representation", None)
    if features is None and parent_features is not None:
        raise ValueError("the parent's architecture differs: the parent uses item features and this model does "
                         "not; train from scratch (or pass --item-features)")
    # A parent without features into a feature model: its id rows (and everything else) are copied,
    # the attribute embedding and the fusion weights start fresh.
    fresh = ({weight.name for weight in features.trainable_weights}
             if features is not None and parent_features is None else set())
    attribute_tables = ([table.name for table in (features.attribute_embedding.embeddings,
                                                   features.cold_attribute_embeddings) if table is not None]
                        if parent_features is not None else [])
    # Trainable weights only: the learned parameters. Item counts (popularity, log-q) come from
    # the new training data, metric trackers start at zero.
    source = {weight.name: weight for weight in parent.model.trainable_weights}
    target = [weight for weight in model.trainable_weights if weight.name not in fresh]
    differ = sorted(set(source) ^ {weight.name for weight in target})
    if differ:
        raise ValueError(f"the parent's architecture differs (weights {differ[:3]}): warm start needs the "
                         "same layers, sizes and options; train from scratch")
    base_terms = np.array([PAD_TOKEN, *old_ids], dtype=object)
    new_terms = np.array([PAD_TOKEN, *vocab.ids], dtype=object)
    terms = {name: (base_terms, new_terms) for name in tables}
    if attribute_tables:
        old_names, new_names = tuple(parent.attribute_names or ()), tuple(attribute_names or ())
        if new_names[: len(old_names)] != old_names or len(new_names) != model.num_attributes:
            raise ValueError("the new attribute vocabulary must keep the parent's attributes first, in order")
        for name in attribute_tables:  # the fusion's attribute rows and the cold tower's follow the tokens
            terms[name] = (np.array([PAD_TOKEN, *old_names], dtype=object),
                           np.array([PAD_TOKEN, *new_names], dtype=object))
    for weight in target:  # check every shape before copying anything
        have, want = tuple(source[weight.name].shape), tuple(weight.shape)
        if (have[1:], have[:1]) != (want[1:], have[:1] if weight.name in terms else want[:1]):
            raise ValueError(f"the parent's architecture differs: {weight.name} has shape {have} there and "
                             f"{want} here; train from scratch")
    for weight in target:
        value = source[weight.name].numpy()
        if weight.name in terms:  # rows follow the vocabulary; new items keep their initial rows
            initial = weight.numpy()
            if features is not None and weight.name in tables:  # untrained items start from their features
                initial = np.zeros_like(initial)
                if parent_features is not None:  # a parent without features trained every row it has
                    value = value * parent_features.id_mask.numpy()[:, None]
            base, new = terms[weight.name]
            value = keras.utils.warmstart_embedding_matrix(
                base_vocabulary=base, new_vocabulary=new, base_embeddings=value,
                new_embeddings_initializer=keras.initializers.Constant(initial))
        weight.assign(value)
    known = len(old_ids) if item_counts is None else int(np.count_nonzero(np.asarray(item_counts)[1:len(old_ids) + 1]))
    return WarmStart(parent=str(parent_path), known_items=known, new_items=len(vocab) - len(old_ids),
                     retired_items=len(old_ids) - known, copied_weights=len(target), fresh_weights=len(fresh))


def _item_tables(model: Any) -> list:
    return [layer for layer in (model.item_embedding, getattr(model, "output_item_embedding", None))
            if layer is not None]



@dataclasses.dataclass(frozen=True)
class ColdItems:
    """What :func:`add_cold_items` added (recorded in the export's description)."""

    source: str
    added: int  # new items, appended after the model's
    already_known: int  # items of the file the model knew: kept as they were
    unknown_attributes: int  # attribute tokens of new items the model never saw: dropped
    without_known_attributes: int  # new items left with no known attribute (they score 0 for every history)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def add_cold_items(trained: Any, features: Any) -> tuple[Any, ColdItems]:
    """``trained`` (a :class:`~sasrec_tf.artifacts.TrainedModel` with item features) grown by the
    items of ``features`` (:class:`~sasrec_tf.data.item_features.ItemFeatures`) it does not know,
    without training: they are appended to the vocabulary, their attribute ids (in the model's
    attribute vocabulary) fill their rows of the attribute table, and, never trained on, they are
    represented by their attributes alone. Every learned weight is the model's.

    Returns:
      ``(the grown TrainedModel, a ColdItems summary)``; its item counts (popularity) are 0 for
      the new items.

    Raises:
      ValueError: a model without item features, or no new item in ``features``.
    """
    from sasrec_tf.model import SASRec

    model = trained.model
    if not getattr(model, "uses_item_features", False) or trained.attribute_names is None:
        raise ValueError("only a model trained with item features (--item-features) can take new items "
                         "without training: their vectors come from their attributes")
    new_ids = [item for item in features.attributes if item not in trained.vocab]
    if not new_ids:
        raise ValueError(f"{features.source}: every item is already in the model's vocabulary; nothing to add")
    vocab = ItemVocabulary(trained.vocab.ids + new_ids)
    aligned = features.aligned(ItemVocabulary(new_ids), attribute_names=trained.attribute_names)
    old = model.item_representation
    old_table = old.attribute_table.numpy()
    new_rows = aligned.padded()[1:]
    width = max(old_table.shape[1], new_rows.shape[1])
    table = np.zeros((len(vocab) + 1, width), dtype=np.int64)
    table[: len(old_table), : old_table.shape[1]] = old_table
    table[len(old_table):, : new_rows.shape[1]] = new_rows
    grown = SASRec(model.config, num_items=len(vocab), num_users=model.num_users,
                   num_attributes=model.num_attributes, max_item_attributes=width).build_weights()
    warm_start(grown, trained, vocab, attribute_names=trained.attribute_names)
    dropout_counts = (None if old.target_counts is None else  # frequency-aware id dropout: never seen
                      np.concatenate([old.target_counts.numpy(), np.zeros(len(new_ids), np.float32)]))
    grown.set_item_features(table, np.concatenate([old.id_mask.numpy() > 0, np.zeros(len(new_ids), bool)]),
                            dropout_counts)
    if model.target_counts is not None:  # the objective's counts: the new items were never targets
        grown.target_counts.assign(np.concatenate([model.target_counts.numpy(), np.ones(len(new_ids), np.float32)]))
    counts = None
    if trained.item_counts is not None:
        counts = np.concatenate([np.asarray(trained.item_counts, np.int64), np.zeros(len(new_ids), np.int64)])
    summary = ColdItems(source=features.source, added=len(new_ids), already_known=len(features) - len(new_ids),
                        unknown_attributes=aligned.unknown_attributes,
                        without_known_attributes=int(np.count_nonzero(~new_rows.any(axis=1))))
    return dataclasses.replace(trained, model=grown, vocab=vocab, user_ids=None, item_counts=counts), summary
