"""Recommendations in memory: raw item-id histories in, the top-k raw ids and scores out.

``model.predict(item_ids)`` returns the encoder's ``[batch, T, d]`` sequence representations, not
items: a recommendation is the dot product of the last position's representation with every
item embedding, the history's items left out, and the best k. :class:`Recommender` does that for
raw ids, with the rules of the export's ``serving_default`` signature, on the one ranking kernel
(:mod:`sasrec_tf.ranking`)::

    from sasrec_tf import Recommender

    recommender = Recommender.load("runs/demo")         # a model directory, or an export version
    top = recommender.recommend([["i12", "i7", "i99"], ["i3"]], k=5)
    top.item_ids[0], top.scores[0]                      # best first
    top.known                                           # history ids the model knows, per row

The rules, the same whether the model is in memory, in a model directory or in an export (and
equal to ``serving_default`` and ``sasrec-tf recommend``):

* History ids the model does not know, and ``""``, are dropped; the model reads the most recent
  ``max_len`` known items; every known item of the whole history is excluded (unless
  ``exclude_history=False``).
* A history with no known item (``known == 0``) gets the most popular items (training
  interaction counts, or dense-id order): the result says so through ``known``, so a caller can
  tell a personal list from the popularity fallback.
* Fewer than k eligible items: the tail of the row is ``""`` with score ``UNKNOWN_SCORE``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf.data.pipeline import pad_sequences
from sasrec_tf.data.vocab import PAD_TOKEN, ItemVocabulary
from sasrec_tf.export.contract import DEFAULT_K, HISTORY, KNOWN_ITEMS, RECOMMEND_INCLUDING_HISTORY, SERVING_DEFAULT
from sasrec_tf.ranking import Ranker, kernel
from sasrec_tf.ranking.rules import UNKNOWN_SCORE, popularity_scores

__all__ = ["Recommendations", "Recommender"]


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """The top-k of a batch of histories.

    Attributes:
      item_ids: ``[n, k]`` raw item ids (``str``), best first; ``""`` where a row had fewer than k
        eligible items.
      scores: ``[n, k]`` float32 scores (the model's dot products, or popularity counts for a row
        with no known item); ``UNKNOWN_SCORE`` where ``item_ids`` is ``""``.
      known: ``[n]`` int, how many of each history's ids the model knows; 0 means the row is the
        popularity fallback, not a personal recommendation.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    known: np.ndarray

    def __len__(self) -> int:
        return len(self.known)

    def to_frame(self):
        """One row per recommendation: ``row``, ``rank`` (1 = best), ``item_id``, ``score``,
        ``known`` (the pandas view of the batch; missing tail entries left out)."""
        import pandas as pd

        n, k = self.item_ids.shape
        keep = self.item_ids != PAD_TOKEN
        rows = np.broadcast_to(np.arange(n)[:, None], (n, k))
        ranks = np.broadcast_to(np.arange(1, k + 1)[None, :], (n, k))
        return pd.DataFrame({"row": rows[keep], "rank": ranks[keep], "item_id": self.item_ids[keep],
                             "score": self.scores[keep], "known": np.broadcast_to(self.known[:, None], (n, k))[keep]})


class Recommender:
    """Top-k next items for raw item-id histories, from a trained SASRec in memory.

    Args:
      model: a trained :class:`~sasrec_tf.SASRec` without a user embedding.
      vocab: its :class:`~sasrec_tf.data.ItemVocabulary` (dense id ``i`` = ``vocab.ids[i - 1]``).
      item_counts: ``[N + 1]`` training interactions per dense id, the popularity fallback for a
        history with no known item; None: dense-id order (the vocabulary numbers items by
        descending count), as in the export.
      batch_size: histories scored per step; memory is about ``batch_size * (N + 1) * 4`` bytes.

    Use :meth:`load` for a model directory or an export version.
    """

    def __init__(self, model: Any, vocab: ItemVocabulary, item_counts: Any = None, *, batch_size: int = 1024):
        if getattr(model, "uses_user_embedding", False):
            raise ValueError("models with a user embedding cannot recommend for a history alone: the user vector "
                             "exists only for training users")
        if len(vocab) != int(model.num_items):
            raise ValueError(f"the vocabulary has {len(vocab)} items but the model {model.num_items}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model, self.vocab = model, vocab
        self.num_items, self.max_len = int(model.num_items), int(model.max_len)
        self.popularity = popularity_scores(item_counts, self.num_items)
        self.batch_size = int(batch_size)
        self._ranker = Ranker(model)
        self._functions: dict[tuple[int, bool], Any] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, batch_size: int = 1024) -> "Recommender | ExportRecommender":
        """A recommender for a model directory (``sasrec-tf train --out``) or an export version
        (``EXPORT_BASE/NAME/VERSION``, read with ``tf.saved_model.load``: no sasrec-tf model code runs)."""
        from sasrec_tf.artifacts import load_trained
        from sasrec_tf.layout import MODEL_FILE

        path = Path(path)
        if (path / "saved_model.pb").is_file():
            return ExportRecommender(path, batch_size=batch_size)
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path} is neither a model directory ({MODEL_FILE}) nor an export version "
                                    "(saved_model.pb)")
        trained = load_trained(path)
        return cls(trained.model, trained.vocab, trained.item_counts, batch_size=batch_size)

    def _top_k(self, k: int, exclude_history: bool):
        """The traced ``(item_ids [B, T], exclude [B, H], empty [B]) -> (scores, ids)`` for ``k``."""
        key = (k, exclude_history)
        if key not in self._functions:
            popularity = tf.constant(self.popularity[None, :])

            def top_k(item_ids, exclude, empty):
                scores = self._ranker.scores(item_ids)
                scores = tf.where(empty[:, None], popularity, scores)  # no known item: the popularity list
                return kernel.top_k_items(scores, k, exclude if exclude_history else None)

            self._functions[key] = tf.function(top_k, input_signature=[
                tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None], tf.bool)])
        return self._functions[key]

    def recommend_dense(self, histories: Sequence[np.ndarray], k: int = DEFAULT_K, *,
                        exclude_history: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(dense ids [n, k] int32, scores [n, k] float32)`` for histories of dense ids (0 ignored).

        The arithmetic behind :meth:`recommend` (and :func:`sasrec_tf.recommend.recommend_to_file`),
        for callers that already hold dense ids. Entries scoring ``UNKNOWN_SCORE`` are not items.
        """
        k = _check_k(k, self.num_items)
        histories = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        histories = [h[h > 0] for h in histories]
        fn = self._top_k(k, bool(exclude_history))
        ids, scores = [], []
        for start in range(0, len(histories), self.batch_size):
            batch = histories[start:start + self.batch_size]
            longest = max((len(h) for h in batch), default=0)
            width = min(max(longest, 1), self.max_len)
            item_ids = pad_sequences(batch, width)
            exclude = pad_sequences(batch, max(longest, 1))
            empty = np.fromiter((len(h) == 0 for h in batch), dtype=bool, count=len(batch))
            batch_scores, batch_ids = fn(item_ids, exclude, empty)
            ids.append(batch_ids.numpy())
            scores.append(batch_scores.numpy())
        if not ids:
            return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
        return np.concatenate(ids), np.concatenate(scores)

    def recommend(self, histories: Sequence[Sequence[str]], k: int = DEFAULT_K, *,
                  exclude_history: bool = True) -> Recommendations:
        """The top-``k`` items for each history of raw item ids (oldest first).

        Args:
          histories: one sequence of raw ids per row; unknown ids and ``""`` are dropped.
          k: items per row, ``1..num_items``.
          exclude_history: leave the history's known items out (the default, as
            ``serving_default``); False as ``recommend_including_history``.

        Returns:
          :class:`Recommendations` (``item_ids``, ``scores``, ``known``).
        """
        histories = _check_histories(histories)
        dense = [self.vocab.encode(np.asarray(h, dtype=object), unknown="zero") if len(h) else np.zeros(0, np.int64)
                 for h in histories]
        known = np.fromiter((int(np.count_nonzero(h)) for h in dense), dtype=np.int64, count=len(dense))
        ids, scores = self.recommend_dense(dense, k, exclude_history=exclude_history)
        raw = np.asarray(self.vocab.decode(ids.reshape(-1)), dtype=object).reshape(ids.shape) if ids.size else \
            np.zeros(ids.shape, dtype=object)
        raw[scores <= UNKNOWN_SCORE] = PAD_TOKEN
        return Recommendations(item_ids=raw, scores=scores, known=known)


class ExportRecommender:
    """The same :meth:`recommend` over an export version, through its signatures (``tf.saved_model.load``).

    The export fixes k (``sasrec_export.json``): ``recommend`` returns at most that many per row.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 1024):
        import json

        from sasrec_tf.export.contract import EXPORT_INFO_FILE
        from sasrec_tf.layout import ASSETS_EXTRA_DIR

        self.path = Path(path)
        self.loaded = tf.saved_model.load(str(self.path))
        info_file = self.path / ASSETS_EXTRA_DIR / EXPORT_INFO_FILE
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        self.k = int(info.get("k", DEFAULT_K))
        self.batch_size = int(batch_size)
        self._known_ids = set(_decode(self.loaded.all_item_embeddings()["item_ids"].numpy()).tolist())

    def recommend(self, histories: Sequence[Sequence[str]], k: int | None = None, *,
                  exclude_history: bool = True) -> Recommendations:
        """As :meth:`Recommender.recommend`, at most the export's k items per row."""
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be in 1..{self.k} (the k this version was exported with), got {k}")
        histories = _check_histories(histories)
        signature = self.loaded.signatures[SERVING_DEFAULT if exclude_history else RECOMMEND_INCLUDING_HISTORY]
        ids, scores, known = [], [], []
        for start in range(0, len(histories), self.batch_size):
            batch = histories[start:start + self.batch_size]
            width = 1 + max((len(h) for h in batch), default=0)
            padded = np.array([[PAD_TOKEN] + list(h) + [PAD_TOKEN] * (width - 1 - len(h)) for h in batch], dtype=object)
            out = signature(**{HISTORY: tf.constant(padded, tf.string)})
            ids.append(_decode(out["item_ids"].numpy()[:, :k]))
            scores.append(out["scores"].numpy()[:, :k])
            if KNOWN_ITEMS in out:  # exports before this output: counted here from the vocabulary
                known.append(out[KNOWN_ITEMS].numpy().astype(np.int64))
            else:
                known.append(np.array([sum(1 for i in h if i in self._known_ids) for h in batch], dtype=np.int64))
        known = np.concatenate(known) if known else np.zeros(0, np.int64)
        if not ids:
            return Recommendations(np.zeros((0, k), object), np.zeros((0, k), np.float32), known)
        return Recommendations(item_ids=np.concatenate(ids), scores=np.concatenate(scores), known=known)


def _decode(values: np.ndarray) -> np.ndarray:
    """A TensorFlow string array (bytes) as an object array of ``str`` (UTF-8), same shape."""
    return np.array([v.decode("utf-8") for v in values.reshape(-1)], dtype=object).reshape(values.shape)


def _check_k(k: int, num_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= num_items:
        raise ValueError(f"k must be an integer in 1..{num_items} (the catalogue size), got {k!r}")
    return int(k)


def _check_histories(histories: Sequence[Sequence[str]]) -> list[list[str]]:
    """A list of lists of ``str``: a bare string or a non-string id is a caller's mistake, said at once."""
    if isinstance(histories, (str, bytes)):
        raise TypeError("histories must be a sequence of histories (each a sequence of item ids), not one string")
    out = []
    for row, history in enumerate(histories):
        if isinstance(history, (str, bytes)):
            raise TypeError(f"histories[{row}] is a string; pass each history as a sequence of item ids, "
                            f"e.g. [[{history!r}]]")
        history = list(history)
        bad = [i for i in history if not isinstance(i, str)]
        if bad:
            raise TypeError(f"histories[{row}] holds a non-string id {bad[0]!r}: raw ids are strings "
                            "(the vocabulary's ids); convert them with str()")
        out.append(history)
    return out
