"""Evaluation inputs: histories, targets and user ids validated against a model, padded once.

Both protocols and the validation callback start here; :class:`EvaluationInputs` is what the
rankings of :mod:`sasrec_tf.evaluation.rankings` consume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from sasrec_tf.data.pipeline import pad_sequences

__all__ = ["EvaluationInputs", "prepare_inputs", "select_users"]


@dataclass(frozen=True)
class EvaluationInputs:
    """Validated evaluation inputs in the arrays the rankings consume (one row per user)."""

    histories: list[np.ndarray]  # full input sequences, int64
    item_ids: np.ndarray  # [n, max_len] int32, left-padded model input
    targets: np.ndarray  # [n] int32
    user_ids: np.ndarray | None  # [n] int32 when the model uses user embeddings, else None
    num_items: int

    @property
    def size(self) -> int:
        return len(self.targets)

    def length_order(self) -> np.ndarray:
        """Rows by ascending history length (stable): batches of similar lengths can be cut to
        their longest window, which changes no score (SASRec ignores leading padding)."""
        lengths = np.fromiter((len(h) for h in self.histories), dtype=np.int64, count=self.size)
        return np.argsort(lengths, kind="stable")

    def subset(self, rows: np.ndarray) -> "EvaluationInputs":
        return EvaluationInputs(
            histories=[self.histories[i] for i in rows],
            item_ids=self.item_ids[rows],
            targets=self.targets[rows],
            user_ids=None if self.user_ids is None else self.user_ids[rows],
            num_items=self.num_items,
        )


def _uses_user_embedding(model: Any) -> bool:
    return bool(getattr(model, "uses_user_embedding", False))


def prepare_inputs(model: Any, inputs: Sequence[np.ndarray], targets: Any, user_ids: Any) -> EvaluationInputs:
    """Validate histories, targets and user ids against ``model`` and pad the histories."""
    for name in ("query_embeddings", "item_embeddings", "max_len", "num_items"):
        if not hasattr(model, name):
            raise TypeError(f"model must provide `{name}` (see sasrec_tf.evaluation); got {type(model).__name__}")
    num_items, max_len = int(model.num_items), int(model.max_len)
    histories = [np.asarray(seq, dtype=np.int64).reshape(-1) for seq in inputs]
    targets = np.asarray(targets).reshape(-1)
    if len(histories) != len(targets):
        raise ValueError(f"got {len(histories)} input sequences but {len(targets)} targets")
    if not len(targets):
        raise ValueError("nothing to evaluate: no users")
    if targets.min() < 1 or targets.max() > num_items:
        raise ValueError(f"targets must be item ids in 1..{num_items}; got range {targets.min()}..{targets.max()}")
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if lengths.sum():
        flat = np.concatenate(histories)
        if flat.min() < 0 or flat.max() > num_items:
            raise ValueError(f"input item ids must be in 0..{num_items}; got range {flat.min()}..{flat.max()}")
    users = None
    if _uses_user_embedding(model):
        if user_ids is None:
            raise ValueError("this model uses a user embedding: pass user_ids (dense user index 1..U)")
        users = np.asarray(user_ids).reshape(-1).astype(np.int32)
        if len(users) != len(targets):
            raise ValueError(f"got {len(users)} user ids for {len(targets)} targets")
    return EvaluationInputs(
        histories=histories,
        item_ids=np.asarray(pad_sequences(histories, max_len), dtype=np.int32),
        targets=targets.astype(np.int32),
        user_ids=users,
        num_items=num_items,
    )


def select_users(num_users: int, max_users: int | None, rng: np.random.Generator) -> np.ndarray:
    """All rows, or a seeded random subset of ``max_users`` rows in ascending order."""
    if max_users is None or max_users >= num_users:
        return np.arange(num_users)
    if max_users < 1:
        raise ValueError(f"max_users must be positive, got {max_users}")
    return np.sort(rng.choice(num_users, size=max_users, replace=False))
