"""The two leave-one-out rankings of a fixed set of users, recomputable as the model trains.

:class:`FullRanking` ranks each target against every item, :class:`SampledRanking` against the
sampled protocol's negatives (drawn once, from a seed). Both prepare their users once — padded,
sorted by history length, cut into batches — and rank through :class:`sasrec_tf.ranking.Ranker`
in a ``tf.function`` traced once per object, so the validation callback pays the preparation once
per training run and only the scoring every epoch. The protocols of
:mod:`sasrec_tf.evaluation.protocols` are one call of :meth:`ranks` each.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf.data.pipeline import pad_sequences
from sasrec_tf.evaluation.inputs import EvaluationInputs, prepare_inputs, select_users
from sasrec_tf.evaluation.negatives import sample_evaluation_negatives
from sasrec_tf.ranking import Ranker
from sasrec_tf.ranking.rules import check_repeated_targets

__all__ = ["FullRanking", "JointRanking", "SampledRanking"]


def _check_batch_size(batch_size: int) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return batch_size


def _pad_rows(array: np.ndarray, rows: int, fill: int = 0) -> np.ndarray:
    """``array`` with its first axis padded to ``rows`` with ``fill``."""
    missing = rows - len(array)
    if missing == 0:
        return array
    pad = np.full((missing,) + array.shape[1:], fill, dtype=array.dtype)
    return np.concatenate([array, pad])


def _sampled_users(users: EvaluationInputs, max_users: int | None, seed: int | np.random.Generator,
                   num_negatives: int, sampling: str, item_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sampled protocol's users (ascending rows) and their negatives ``[len(selected), K]``:
    the seeded subset first, then the negatives from the same generator (one rule for
    :class:`SampledRanking` and :class:`JointRanking`, so both draw the same)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    selected = select_users(users.size, max_users, rng)
    chosen = users.subset(selected)
    negatives = sample_evaluation_negatives(chosen.histories, chosen.targets, chosen.num_items, num_negatives,
                                            sampling=sampling, item_counts=item_counts, seed=rng)
    return selected, negatives


class _Ranking:
    """Users sorted by history length and cut into fixed-size batches, ranked by ``_rank_batch``.

    A model that declares ``left_padding_invariant = True`` (SASRec: positions count from the right
    and padding is masked) gets each batch cut to its longest history, at most ``max_len``: on
    sparse logs most of a ``max_len`` window is padding, and the query encoder's cost grows with
    the width (Beauty: 2x faster full ranking). Other models get ``[rows, max_len]``. The last
    batch is padded to the batch size (one trace) and its padded rows dropped.
    """

    def __init__(self, model: Any, users: EvaluationInputs, selected: np.ndarray, batch_size: int):
        self.ranker = Ranker(model)
        self.size = users.size  # ranks() has one entry per input user
        self.selected = selected  # the rows ranked (others get rank 0)
        users = users.subset(selected)
        self._order = users.length_order()
        self.users = users.subset(self._order)
        self.rows = min(_check_batch_size(batch_size), max(self.users.size, 1))
        self._fn = None

    @property
    def num_users(self) -> int:
        """How many users are ranked."""
        return self.users.size

    def _batches(self):
        """Per batch: ``(start, stop, item_ids [rows, width], user_ids [rows], targets [rows])``."""
        users, rows = self.users, self.rows
        max_len = users.item_ids.shape[1]
        lengths = np.minimum(np.fromiter((len(h) for h in users.histories), np.int64, users.size), max_len)
        cut = bool(getattr(self.ranker.model, "left_padding_invariant", False))
        for start in range(0, users.size, rows):
            stop = min(start + rows, users.size)
            width = max(1, int(lengths[start:stop].max())) if cut else max_len
            item_ids = _pad_rows(users.item_ids[start:stop, max_len - width:], rows)
            targets = _pad_rows(users.targets[start:stop], rows, fill=1)
            user_ids = np.ones(rows, np.int32) if users.user_ids is None else users.user_ids[start:stop]
            yield start, stop, item_ids, _pad_rows(user_ids, rows, fill=1), targets

    def ranks(self, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``[n]`` int64 1-based ranks in input order; 0 for users not ranked (``max_users``, or
        ``repeated_targets="drop"``). ``progress(users_done, users_total)`` is called after every batch."""
        (ranked,) = self._ranked(progress)
        out = np.zeros(self.size, dtype=np.int64)
        out[self.selected[self._order]] = ranked
        return out

    def _ranked(self, progress: Callable[[int, int], None] | None) -> list[np.ndarray]:
        """Every output of ``_rank_batch`` (a tensor or a tuple of them), concatenated over the
        batches as int64, padded rows dropped, in the batches' order."""
        if self._fn is None:
            self._fn = self._compile()
        item_matrix = self.ranker.item_matrix()
        batches = []
        for start, stop, item_ids, user_ids, targets in self._batches():
            outputs = self._rank_batch(start, stop, item_ids, user_ids, targets, item_matrix)
            outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            batches.append([output.numpy()[: stop - start] for output in outputs])
            if progress is not None:
                progress(stop, self.users.size)
        return [np.concatenate(column).astype(np.int64) for column in zip(*batches)]

    def _batch_signature(self) -> list[tf.TensorSpec]:
        """What every batch brings to ``_rank_batch``: ``item_ids`` (cut to the batch's longest
        history), ``user_ids``, ``targets`` (1..N) and the item matrix ``[N + 1, d]``."""
        return [tf.TensorSpec([self.rows, None], tf.int32), tf.TensorSpec([self.rows], tf.int32),
                tf.TensorSpec([self.rows], tf.int32), tf.TensorSpec([None, None], tf.float32)]

    def _negatives_spec(self) -> tf.TensorSpec:
        """The sampled protocol's negatives of a batch, ``[rows, num_negatives]``."""
        return tf.TensorSpec([self.rows, self.negatives.shape[1]], tf.int32)

    def _compile(self):
        raise NotImplementedError

    def _rank_batch(self, start, stop, item_ids, user_ids, targets, item_matrix) -> tf.Tensor:
        raise NotImplementedError


class FullRanking(_Ranking):
    """Full-ranking leave-one-out ranks: each target against every item ``1..N``.

    Args:
      model: a next-item model (see :class:`~sasrec_tf.ranking.Ranker`).
      inputs, targets, user_ids: per user, the chronological history of dense ids, the held-out
        item, and (for a model with a user embedding) the dense user id.
      exclude_history: remove the items of the whole history from the candidates.
      repeated_targets: what a target inside its history counts as (``"miss"``, ``"drop"``,
        ``"rank"``; see :func:`~sasrec_tf.evaluation.evaluate_full`).
      max_users: rank a seeded random subset of at most this many users (the others get rank 0).
      seed: seeds that subset.
      batch_size: users per step; memory is about ``batch_size * (N + 1) * 4`` bytes.
    """

    def __init__(self, model: Any, inputs: Sequence[np.ndarray], targets: Any, *, user_ids: Any = None,
                 exclude_history: bool = True, repeated_targets: str = "miss", max_users: int | None = None,
                 seed: int | np.random.Generator = 0, batch_size: int = 1024):
        self.exclude_history = bool(exclude_history)
        self.repeated_targets = check_repeated_targets(repeated_targets)
        users = prepare_inputs(model, inputs, targets, user_ids)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        super().__init__(model, users, select_users(users.size, max_users, rng), batch_size)
        self._histories: list[np.ndarray] | None = None

    def _compile(self):
        signature = self._batch_signature()
        if not self.exclude_history:
            return tf.function(lambda item_ids, user_ids, targets, matrix: self.ranker.ranks(
                item_ids, targets, user_ids=user_ids, item_matrix=matrix), input_signature=signature)
        signature.append(tf.TensorSpec([self.rows, None], tf.int32))  # whole histories, 0-padded
        return tf.function(lambda item_ids, user_ids, targets, matrix, histories: self.ranker.ranks(
            item_ids, targets, histories, user_ids=user_ids, repeated_targets=self.repeated_targets,
            item_matrix=matrix), input_signature=signature)

    def _batch_histories(self, start: int, stop: int) -> np.ndarray:
        """The batch's whole histories ``[rows, longest]``, padded with 0 (cached: the callback
        ranks the same users every epoch)."""
        if self._histories is None:
            self._histories = []
            for first in range(0, self.users.size, self.rows):
                batch = self.users.histories[first:first + self.rows]
                width = max(1, max(len(h) for h in batch))
                self._histories.append(_pad_rows(pad_sequences(batch, width), self.rows))
        return self._histories[start // self.rows]

    def _rank_batch(self, start, stop, item_ids, user_ids, targets, item_matrix):
        if not self.exclude_history:
            return self._fn(item_ids, user_ids, targets, item_matrix)
        return self._fn(item_ids, user_ids, targets, item_matrix, self._batch_histories(start, stop))


class SampledRanking(_Ranking):
    """The paper's sampled leave-one-out ranks: each target among ``1 + num_negatives`` items.

    The negatives come from :func:`~sasrec_tf.evaluation.sample_evaluation_negatives` once, at
    construction: the same users and negatives every time :meth:`ranks` runs (every epoch in the
    callback), so numbers are comparable across epochs. Arguments as :class:`FullRanking`, plus
    ``num_negatives``, ``sampling`` and ``item_counts`` (see
    :func:`~sasrec_tf.evaluation.evaluate_sampled`); ``seed`` seeds the users, then the negatives.
    """

    def __init__(self, model: Any, inputs: Sequence[np.ndarray], targets: Any, *, user_ids: Any = None,
                 num_negatives: int = 100, sampling: str = "uniform", item_counts: Any = None,
                 max_users: int | None = None, seed: int | np.random.Generator = 0, batch_size: int = 1024):
        users = prepare_inputs(model, inputs, targets, user_ids)
        selected, negatives = _sampled_users(users, max_users, seed, num_negatives, sampling, item_counts)
        super().__init__(model, users, selected, batch_size)
        self.negatives = negatives[self._order].astype(np.int32)  # in the batches' order

    def _compile(self):
        signature = [*self._batch_signature(), self._negatives_spec()]
        return tf.function(lambda item_ids, user_ids, targets, matrix, negatives: self.ranker.sampled_ranks(
            item_ids, targets, negatives, user_ids=user_ids, item_matrix=matrix), input_signature=signature)

    def _rank_batch(self, start, stop, item_ids, user_ids, targets, item_matrix):
        negatives = _pad_rows(self.negatives[start:stop], self.rows, fill=1)
        return self._fn(item_ids, user_ids, targets, item_matrix, negatives)


class JointRanking(FullRanking):
    """Full and sampled ranks of the same users from **one** encoder pass per batch.

    The query encoder is, with the ``[users x items]`` score product, what a validation pass
    costs; running :class:`FullRanking` and :class:`SampledRanking` one after the other encodes
    every history twice. Here each batch's queries are computed once and ranked by both
    protocols in one ``tf.function``. The ranks are those of the two classes on their own: the
    full protocol's users, order and batches are :class:`FullRanking`'s, and the sampled users
    and negatives are drawn as :class:`SampledRanking` draws them from the same ``seed``.

    Args:
      model, inputs, targets, user_ids, exclude_history, repeated_targets, batch_size: as
        :class:`FullRanking`.
      num_negatives, sampling, item_counts: as :class:`SampledRanking`.
      full_max_users: the full protocol ranks a seeded subset of at most this many users (the
        callback's ``max_users``); None ranks every user (:func:`~sasrec_tf.evaluation.evaluate`).
      sampled_max_users: the sampled protocol's seeded subset (``max_users`` of
        :func:`~sasrec_tf.evaluation.evaluate_sampled`); None ranks every user.
      seed: an int, seeding both subsets (each from its own generator, as the two classes do) and
        then the negatives.

    Raises:
      ValueError: if the sampled users are not all among the full protocol's (``full_max_users``
        must be None or equal to ``sampled_max_users``), or as the two classes do.
    """

    def __init__(self, model: Any, inputs: Sequence[np.ndarray], targets: Any, *, user_ids: Any = None,
                 exclude_history: bool = True, repeated_targets: str = "miss", num_negatives: int = 100,
                 sampling: str = "uniform", item_counts: Any = None, full_max_users: int | None = None,
                 sampled_max_users: int | None = None, seed: int = 0, batch_size: int = 1024):
        if isinstance(seed, np.random.Generator):
            raise TypeError("seed must be an int: JointRanking seeds two generators from it, as the two protocols do")
        self.exclude_history = bool(exclude_history)
        self.repeated_targets = check_repeated_targets(repeated_targets)
        users = prepare_inputs(model, inputs, targets, user_ids)
        full = select_users(users.size, full_max_users, np.random.default_rng(seed))
        sampled, negatives = _sampled_users(users, sampled_max_users, seed, num_negatives, sampling, item_counts)
        if not np.isin(sampled, full).all():
            raise ValueError(f"the sampled protocol's users must be among the full protocol's: full_max_users "
                             f"({full_max_users}) must be None or equal to sampled_max_users ({sampled_max_users})")
        _Ranking.__init__(self, model, users, full, batch_size)
        self._histories = None
        rows = full[self._order]  # the input row of each ranked user, in the batches' order
        position = np.minimum(np.searchsorted(sampled, rows), len(sampled) - 1)
        self._in_sampled = sampled[position] == rows
        self.negatives = np.ones((len(rows), negatives.shape[1]), np.int32)  # item 1 where not sampled (ignored)
        self.negatives[self._in_sampled] = negatives[position[self._in_sampled]]

    @property
    def num_sampled_users(self) -> int:
        """How many users the sampled protocol ranks."""
        return int(self._in_sampled.sum())

    def ranks(self, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(full, sampled)``: each ``[n]`` int64 1-based ranks in input order, 0 for the users
        that protocol does not rank. ``progress(users_done, users_total)`` is called after every
        batch of the one pass (``users_total``: the full protocol's users)."""
        full, sampled = self._ranked(progress)
        rows = self.selected[self._order]
        out_full, out_sampled = np.zeros(self.size, np.int64), np.zeros(self.size, np.int64)
        out_full[rows] = full
        out_sampled[rows[self._in_sampled]] = sampled[self._in_sampled]
        return out_full, out_sampled

    def _compile(self):
        signature = [*self._batch_signature(), self._negatives_spec()]
        if self.exclude_history:
            signature.append(tf.TensorSpec([self.rows, None], tf.int32))  # whole histories, 0-padded

        def rank(item_ids, user_ids, targets, matrix, negatives, histories=None):
            queries = self.ranker.queries(item_ids, user_ids)  # the one encoder pass of the batch
            full = self.ranker.query_ranks(queries, targets, histories, repeated_targets=self.repeated_targets,
                                           item_matrix=matrix)
            return full, self.ranker.query_sampled_ranks(queries, targets, negatives, item_matrix=matrix)

        return tf.function(rank, input_signature=signature)

    def _rank_batch(self, start, stop, item_ids, user_ids, targets, item_matrix):
        negatives = _pad_rows(self.negatives[start:stop], self.rows, fill=1)
        if not self.exclude_history:
            return self._fn(item_ids, user_ids, targets, item_matrix, negatives)
        return self._fn(item_ids, user_ids, targets, item_matrix, negatives, self._batch_histories(start, stop))
