"""Per-user chronological item sequences and the paper's leave-one-out split.

``load_dataset`` is the one call from a log on disk to sequences: read → filter → build.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import pandas as pd

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest import filter_interactions, read_interactions
from sasrec_tf.data.sequence_rules import leave_one_out_lengths
from sasrec_tf.data.vocab import ItemVocabulary

__all__ = ["LOAD_STEPS", "SequenceData", "LeaveOneOutSplit", "build_sequences", "leave_one_out", "load_dataset"]

# The steps of load_dataset, in order, as its ``progress`` reports them.
LOAD_STEPS = ("read", "filter", "sequences")

logger = logging.getLogger(__name__)


@dataclass
class SequenceData:
    """Every user's items in time order, as dense ids of ``vocab``.

    Attributes:
        user_ids: raw user ids, object array of str, shape ``[U]``, in order of first appearance.
        sequences: one int64 array of dense item ids per user (same order as ``user_ids``), oldest
            first. The arrays are read-only views of one buffer: copy before editing.
        vocab: the item vocabulary the ids refer to.
    """

    user_ids: np.ndarray
    sequences: list[np.ndarray]
    vocab: ItemVocabulary

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        """Real items ``N`` (dense ids ``1..N``; the embedding needs ``N + 1`` rows)."""
        return len(self.vocab)

    def lengths(self) -> np.ndarray:
        """Sequence length per user, int64, shape ``[U]``."""
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=self.num_users)


@dataclass
class LeaveOneOutSplit:
    """The paper's split: per user, last item = test target, second to last = validation target.

    ``train`` has one sequence per user (all users, short ones included). The evaluation arrays
    cover only users with at least ``min_length`` interactions; ``valid_users`` / ``test_users``
    index into :attr:`SequenceData.user_ids`. All sequences are read-only views.
    """

    train: list[np.ndarray]
    valid_inputs: list[np.ndarray]
    valid_targets: np.ndarray
    valid_users: np.ndarray
    test_inputs: list[np.ndarray]
    test_targets: np.ndarray
    test_users: np.ndarray
    num_short_users: int
    num_items: int


def build_sequences(df: pd.DataFrame, vocab: ItemVocabulary | None = None) -> SequenceData:
    """Group a log into per-user sequences of dense item ids, oldest first.

    The sort by (user, timestamp) is **stable**: interactions of one user with the same timestamp
    keep their order in ``df``. Real logs tie often (second or day resolution, batch imports), so
    the row order of the input is the tie-breaker, and it is deterministic.

    Args:
        df: a log in :func:`~sasrec_tf.data.ingest.read_interactions`' schema (a DataFrame in
            another shape is normalized by it first).
        vocab: the item vocabulary to encode with; built with
            :meth:`ItemVocabulary.from_interactions` when ``None``.

    Raises:
        DataError: an empty log, or items missing from a given ``vocab`` (count and examples).
    """
    df = read_interactions(df)  # validates and normalizes a DataFrame; cheap when already clean
    if vocab is None:
        vocab = ItemVocabulary.from_interactions(df)
    items = vocab.encode(df["item"].to_numpy(dtype=object), unknown="zero")
    unknown = items == 0
    if unknown.any():
        examples = pd.unique(df["item"].to_numpy(dtype=object)[unknown])
        raise DataError(
            f"{int(unknown.sum())} interactions ({len(examples)} distinct items) are not in the "
            f"given vocabulary, e.g. {examples[:5].tolist()}; filter them out or rebuild the "
            "vocabulary"
        )
    users, user_ids = pd.factorize(df["user"])  # codes in order of first appearance
    order = np.lexsort((df["timestamp"].to_numpy(), users))  # lexsort is stable
    sorted_items = items[order]
    sorted_items.flags.writeable = False
    counts = np.bincount(users, minlength=len(user_ids))
    sequences = np.split(sorted_items, np.cumsum(counts)[:-1])
    return SequenceData(
        user_ids=np.asarray(user_ids, dtype=object), sequences=sequences, vocab=vocab
    )


def leave_one_out(data: SequenceData, min_length: int = 3) -> LeaveOneOutSplit:
    """Split each user's sequence as in the SASRec paper.

    For a user with items ``s[0..n-1]`` and ``n >= min_length``: test target ``s[-1]``, validation
    target ``s[-2]``, training sequence and validation input ``s[:-2]``, test input ``s[:-1]``
    (training sequence plus the validation item). Users with fewer than ``min_length`` items keep
    them all for training and are not evaluated (as the paper's code does); their number is in
    ``num_short_users`` and logged as a warning.

    Raises:
        ValueError: ``min_length < 3`` (a user needs a training, a validation and a test item).
    """
    lengths = data.lengths()
    train_lengths = leave_one_out_lengths(lengths, min_length)  # the rule; raises for min_length < 3
    evaluated = np.flatnonzero(train_lengths < lengths)  # users whose last two items are held out
    train = [sequence[:n] for sequence, n in zip(data.sequences, train_lengths)]
    valid_inputs = [data.sequences[u][:train_lengths[u]] for u in evaluated]
    test_inputs = [data.sequences[u][:-1] for u in evaluated]
    num_short = int(len(lengths) - len(evaluated))
    if num_short:
        logger.warning(
            "%d of %d users have fewer than %d interactions: they are used for training only and "
            "are not evaluated",
            num_short, len(lengths), min_length,
        )
    valid_targets = np.fromiter(
        (data.sequences[u][-2] for u in evaluated), dtype=np.int64, count=len(evaluated)
    )
    test_targets = np.fromiter(
        (data.sequences[u][-1] for u in evaluated), dtype=np.int64, count=len(evaluated)
    )
    return LeaveOneOutSplit(
        train=train,
        valid_inputs=valid_inputs,
        valid_targets=valid_targets,
        valid_users=evaluated.astype(np.int64),
        test_inputs=test_inputs,
        test_targets=test_targets,
        test_users=evaluated.astype(np.int64).copy(),
        num_short_users=num_short,
        num_items=data.num_items,
    )


def load_dataset(
    source: str | os.PathLike[str] | pd.DataFrame,
    format: str = "csv",
    *,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    duplicates: Literal["keep", "first", "last"] = "keep",
    min_rating: float | None = None,
    vocab: ItemVocabulary | None = None,
    unknown_items: Literal["error", "drop", "append"] = "error",
    progress: Callable[[str, int, int], None] | None = None,
    **read_kwargs,
) -> SequenceData:
    """Read, filter and group a log in one call: the one path from a log to sequences.

    Args:
        source: a file (or directory, for formats that have one) or a DataFrame.
        format: the reader (see :func:`read_interactions`, whose keyword arguments
            ``read_kwargs`` are: column names, ``sep``, ...).
        min_user_interactions, min_item_interactions, duplicates: the filter
            (:func:`filter_interactions`).
        min_rating: interactions rated below it are dropped (:func:`read_interactions`).
        vocab: encode with this vocabulary (a trained model's) instead of building one.
        unknown_items: with ``vocab``, what becomes of interactions with items it lacks:
            ``"error"`` (:class:`DataError`), ``"drop"`` (with a warning), or ``"append"``
            (a warm start: the items are added after the known ones, most frequent first,
            by :meth:`ItemVocabulary.extended`).
        progress: called as ``progress(what, done, total)`` after each of the :data:`LOAD_STEPS`
            (``total`` 3), ``what`` saying what it did (``"read 39147 interactions"``).

    Raises:
        DataError: an unreadable or empty log, or (``"error"``) items unknown to ``vocab``.
    """
    if unknown_items not in ("error", "drop", "append"):
        raise ValueError(f"unknown_items must be 'error', 'drop' or 'append', got {unknown_items!r}")
    def report(step: int, what: str) -> None:
        if progress is not None:
            progress(what, step, len(LOAD_STEPS))

    df = read_interactions(source, format, min_rating=min_rating, **read_kwargs)
    report(1, f"read {len(df)} interactions")
    read = len(df)
    df = filter_interactions(
        df,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        duplicates=duplicates,
    )
    if vocab is not None and unknown_items != "error":
        known = df["item"].isin(vocab.ids)
        if unknown_items == "append":
            vocab = vocab.extended(df)
        elif unknown_items == "drop" and not known.all():
            logger.warning("dropping %d interactions with items unknown to the model", int((~known).sum()))
            df = df[known]
    report(2, f"filtered: {len(df)} interactions kept" + (f" of {read}" if len(df) != read else ", none dropped"))
    data = build_sequences(df, vocab)
    report(3, f"{data.num_users} user sequences, {data.num_items} items")
    logger.info(
        "loaded %d users, %d items, %d interactions", data.num_users, data.num_items, len(df)
    )
    return data
