"""A trained model's directory: weights, config and the vocabularies that give ids their meaning.

Layout of ``DIR``::

    model.keras   the Keras model (architecture, config and weights)
    config.json   the SASRecConfig plus catalogue sizes (human-readable)
    vocab.txt     item vocabulary: line i = raw id of dense item i (see ItemVocabulary)
    users.txt     raw user ids, line i = dense user i (only for the user-embedding variant)
    item_counts.npy  training interactions per dense item id ([num_items + 1] int64), when known:
                  the popularity used for empty histories and popularity-sampled evaluation
    attributes.txt   item features only: line a = attribute token of attribute id a
    item_attributes.npz  item features only: each item's attribute ids and whether it was trained on
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.files import atomic_path, atomic_write_text, write_with
from sasrec_tf.layout import (ATTRIBUTES_FILE, CONFIG_FILE, ITEM_ATTRIBUTES_FILE, ITEM_COUNTS_FILE, MODEL_FILE,
                              USERS_FILE, VOCAB_FILE)
from sasrec_tf.model import SASRec



@dataclasses.dataclass
class TrainedModel:
    """A model directory loaded back (:func:`load_trained`): the model, its item vocabulary, the
    raw user ids (user-embedding models only), the training item counts, when saved, and the
    attribute vocabulary of a model with item features (attribute id ``a`` is ``attribute_names[a - 1]``)."""

    model: SASRec
    vocab: ItemVocabulary
    user_ids: np.ndarray | None = None
    item_counts: np.ndarray | None = None
    attribute_names: tuple[str, ...] | None = None


def save_trained(
    path: str | os.PathLike[str], model: SASRec, vocab: ItemVocabulary, user_ids=None, item_counts=None,
    attribute_names=None,
) -> Path:
    """Write the model directory; each file is replaced atomically (:mod:`sasrec_tf.files`; the
    Keras file through a temporary directory, as Keras wants a name ending in ``.keras``).

    Raises:
      ValueError: the vocabulary or ``item_counts`` do not match the model's catalogue, or a
        model with item features without its ``attribute_names``.
    """
    if len(vocab) != model.num_items:
        raise ValueError(f"vocabulary has {len(vocab)} items but the model {model.num_items}")
    features = getattr(model, "item_representation", None)
    if features is not None and (attribute_names is None or len(attribute_names) != model.num_attributes):
        raise ValueError(f"a model with item features is saved with its {model.num_attributes} attribute names")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / MODEL_FILE, suffix=Path(MODEL_FILE).suffix) as staged:  # Keras wants .keras
        model.save(staged)
    vocab.save(path / VOCAB_FILE)
    meta = {"sasrec_config": model.config.to_dict(), "num_items": model.num_items, "num_users": model.num_users}
    atomic_write_text(path / CONFIG_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if item_counts is not None:
        item_counts = np.asarray(item_counts, dtype=np.int64)
        if item_counts.shape != (model.num_items + 1,):
            raise ValueError(f"item_counts must have shape ({model.num_items + 1},), got {item_counts.shape}")
        write_with(path / ITEM_COUNTS_FILE, lambda handle: np.save(handle, item_counts))
    if features is not None:
        atomic_write_text(path / ATTRIBUTES_FILE, "".join(f"{name}\n" for name in attribute_names))
        arrays = {"table": features.attribute_table.numpy(), "trained": features.id_mask.numpy() > 0}
        write_with(path / ITEM_ATTRIBUTES_FILE, lambda handle: np.savez(handle, **arrays))
    if model.uses_user_embedding and user_ids is not None:
        bad = next((u for u in user_ids if "\n" in str(u) or "\r" in str(u)), None)
        if bad is not None:
            raise ValueError(f"user id {bad!r} holds a line break, which {USERS_FILE} cannot store")
        atomic_write_text(path / USERS_FILE, "".join(f"{u}\n" for u in user_ids))
    return path


_CONFIG_MEMBER, _WEIGHTS_MEMBER = "config.json", "model.weights.h5"


def load_model_file(path: str | os.PathLike[str], *, weights_dir: str | os.PathLike[str] | None = None,
                    prepare: Callable[[keras.Model], None] | None = None):
    """The model in a ``model.keras`` file, uncompiled, as ``keras.models.load_model`` reads it.

    Keras hands h5py the weights member of the zip as a file object; Python's zip reader answers
    every backward seek by reading the member again from its start, so reading grows with the
    square of the table (a 768 MB file at 1M items took 3-14 minutes). Here the member is first
    copied out in one sequential pass into a temporary directory (removed afterwards, also on
    error), and the weights are read from that plain file.

    Args:
      path: the ``model.keras`` file.
      weights_dir: copy the weights file (``model.weights.h5``) out into this directory and leave
        it there, for a caller that reads some weights itself later (the export's tables).
      prepare: called with the model once it is built, before its weights are read. A file of
        another Keras format is read by ``keras.models.load_model``: not prepared, nothing copied.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if _CONFIG_MEMBER not in names or _WEIGHTS_MEMBER not in names:  # another Keras format
            return keras.models.load_model(path, compile=False)  # (not prepared, nothing copied out)
        config = json.loads(archive.read(_CONFIG_MEMBER))
        config["compile_config"] = None
        with contextlib.ExitStack() as stack:
            scratch = weights_dir if weights_dir is not None else stack.enter_context(
                tempfile.TemporaryDirectory(prefix="sasrec-weights-"))
            weights = Path(archive.extract(_WEIGHTS_MEMBER, scratch))
            model = keras.saving.deserialize_keras_object(config)
            if prepare is not None:
                prepare(model)
            model.load_weights(weights)
    return model


def load_trained(path: str | os.PathLike[str], **model_file_options) -> TrainedModel:
    """Load a directory written by :func:`save_trained` (or by ``sasrec-tf train``);
    ``model_file_options`` go to :func:`load_model_file`."""
    path = Path(path)
    missing = [name for name in (MODEL_FILE, VOCAB_FILE) if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a sasrec-tf model directory: missing {', '.join(missing)}")
    model = load_model_file(path / MODEL_FILE, **model_file_options)
    vocab = ItemVocabulary.load(path / VOCAB_FILE)
    if len(vocab) != model.num_items:  # every command that loads a run relies on the two agreeing
        raise ValueError(f"{path}: {VOCAB_FILE} has {len(vocab)} item ids but {MODEL_FILE} scores {model.num_items} "
                         "items; the directory mixes files of two runs")
    users = None
    if (path / USERS_FILE).exists():
        users = np.array(read_lines(path / USERS_FILE), dtype=object)
    counts = np.load(path / ITEM_COUNTS_FILE) if (path / ITEM_COUNTS_FILE).exists() else None
    if counts is not None and counts.shape != (model.num_items + 1,):
        raise ValueError(f"{path}: {ITEM_COUNTS_FILE} has shape {counts.shape}, expected ({model.num_items + 1},)")
    names = None
    if getattr(model, "uses_item_features", False):
        if not (path / ATTRIBUTES_FILE).is_file():
            raise ValueError(f"{path}: a model with item features needs its {ATTRIBUTES_FILE}")
        names = tuple(read_lines(path / ATTRIBUTES_FILE))
        if len(names) != model.num_attributes:
            raise ValueError(f"{path}: {ATTRIBUTES_FILE} has {len(names)} attributes but {MODEL_FILE} "
                             f"{model.num_attributes}; the directory mixes files of two runs")
    return TrainedModel(model=model, vocab=vocab, user_ids=users, item_counts=counts, attribute_names=names)


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The ``\n``-terminated lines of a UTF-8 file, split on ``\n`` only: an id holding any other
    character that :meth:`str.splitlines` breaks on (U+2028, U+0085, form feed, ``\x1d``, ...)
    reads back whole. (Ids holding ``\n`` or ``\r`` are refused when the log is read.)"""
    text = Path(path).read_bytes().decode("utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []
