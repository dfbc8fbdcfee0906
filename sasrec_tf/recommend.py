"""Batch recommendations: every user's top-k next items from their whole history, written to a file.

For the jobs that fill e-mail campaigns and home-page caches overnight. The numbers are those the
export's ``serving_default`` signature (``recommend_including_history`` with
``include_history=True``) returns for the same history, computed here in batches of dense ids
without a round trip through strings:

* **History**: all of a user's interactions in the log, oldest first (the stable chronological
  sort of :func:`~sasrec_tf.data.sequences.build_sequences`), mapped through the *model's*
  vocabulary; items the model does not know are dropped. The model reads the most recent
  ``max_len`` known items; unless ``include_history``, every known item of the history is
  excluded from the recommendations.
* **Users with no known item** (and requested users absent from the log) get no rows: a model
  cannot personalise for them (``serving_default`` would return the most popular items), and the
  batch job's consumer usually has its own fallback. They are counted in the summary, with
  examples.
* **Fewer than k eligible items** (a history covering almost the catalogue): only those rows.

The output has one row per recommendation, columns ``user_id`` (string), ``rank`` (int32, 1 =
best), ``item_id`` (string), ``score`` (float32), grouped by user in the order of the requested
users, or of first appearance in the log. Parquet or CSV (with a header) by the file's suffix. The
users are processed ``chunk_users`` at a time and each chunk is appended to the file (a Parquet
row group, or CSV rows), so memory does not grow with the number of users; the file is written
under a hidden temporary name beside ``out`` and renamed when complete, so a reader never sees a
partial file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import tensorflow as tf

from sasrec_tf.artifacts import TrainedModel, load_trained, read_lines
from sasrec_tf.data.pipeline import pad_sequences
from sasrec_tf.data.sequences import SequenceData, build_sequences
from sasrec_tf.export.contract import DEFAULT_K
from sasrec_tf.files import atomic_path
from sasrec_tf.ranking import Ranker
from sasrec_tf.ranking.rules import UNKNOWN_SCORE

__all__ = ["OUTPUT_FORMATS", "COLUMNS", "RecommendSummary", "read_user_ids", "recommend_to_file"]

OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
COLUMNS = ("user_id", "rank", "item_id", "score")
_SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                     ("score", pa.float32())])
_EXAMPLES = 5  # users without history named in the summary


@dataclasses.dataclass(frozen=True)
class RecommendSummary:
    """What :func:`recommend_to_file` wrote.

    Attributes:
        path: the output file.
        users: users with at least one recommendation written.
        rows: rows written (``users * k`` unless some histories left fewer eligible items).
        users_without_history: requested (or, without a list, logged) users who got no rows
            because none of their items is known to the model, or they are not in the log.
        examples_without_history: the first few of them, in processing order.
    """

    path: Path
    users: int
    rows: int
    users_without_history: int
    examples_without_history: tuple[str, ...]

    def without_history_line(self) -> str | None:
        """One line about the users without recommendations, or None when there are none."""
        if not self.users_without_history:
            return None
        more = ", ..." if self.users_without_history > len(self.examples_without_history) else ""
        examples = ", ".join(repr(u) for u in self.examples_without_history)
        return (f"{self.users_without_history} user(s) have no item known to the model (or no interaction "
                f"in the log) and got no recommendations: {examples}{more}")


def read_user_ids(path: str | os.PathLike[str]) -> list[str]:
    """Raw user ids from a text file, one per ``\n``-terminated line (a trailing ``\r``, surrounding
    spaces and tabs, and blank lines ignored). Only ``\n`` ends a line: an id holding another
    character :meth:`str.splitlines` breaks on (U+2028, U+0085, form feed, ``\x1d``, ...) stays one id."""
    lines = (line.rstrip("\r").strip(" \t") for line in read_lines(path))
    return [line for line in lines if line]


class _BatchTopK:
    """The top-k dense ids and scores of a batch of histories: :meth:`Ranker.top_k` traced once.

    The ranking kernel's top-k (:mod:`sasrec_tf.ranking.kernel`), as the export's recommendation
    signatures use it: padding and (optionally) the history's items score ``UNKNOWN_SCORE``, ties go
    to the lower id.
    """

    def __init__(self, model: Any, k: int, rows: int):
        self.ranker = Ranker(model)
        self.k = k
        self.rows = rows
        self.max_len = int(model.max_len)
        self._fn = tf.function(lambda item_ids, exclude: self.ranker.top_k(item_ids, self.k, exclude), input_signature=[
            tf.TensorSpec([rows, self.max_len], tf.int32),  # left-padded dense ids
            tf.TensorSpec([rows, None], tf.int32),  # dense ids to exclude per row (0 = none)
        ])

    def __call__(self, histories: Sequence[np.ndarray], exclude_history: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(dense ids [n, k], scores [n, k])`` for ``n <= rows`` non-empty histories."""
        n = len(histories)
        item_ids = np.zeros((self.rows, self.max_len), np.int32)
        item_ids[:n] = pad_sequences(histories, self.max_len)
        width = max((len(h) for h in histories), default=1) if exclude_history else 1
        exclude = np.zeros((self.rows, width), np.int32)
        if exclude_history:
            exclude[:n] = pad_sequences(histories, width)
        scores, ids = self._fn(item_ids, exclude)
        return ids.numpy()[:n], scores.numpy()[:n]


def recommend_to_file(
    model: str | os.PathLike[str] | TrainedModel,
    data: SequenceData | pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    k: int = DEFAULT_K,
    users: Iterable[str] | None = None,
    include_history: bool = False,
    batch_size: int = 1024,
    chunk_users: int = 65536,
    progress: Callable[[int, int], None] | None = None,
) -> RecommendSummary:
    """Write the top-``k`` items of every user (or of ``users``) to ``out`` (``.parquet`` / ``.csv``).

    Args:
        model: a model directory (as written by ``sasrec-tf train``) or a
            :class:`~sasrec_tf.artifacts.TrainedModel`.
        data: the interaction log, as sequences (in any vocabulary: they are mapped through the
            model's by raw id) or as a frame in
            :func:`~sasrec_tf.data.ingest.read_interactions`' schema.
        out: the output file; its suffix chooses the format (:data:`OUTPUT_FORMATS`). Replaced
            if it exists.
        k: recommendations per user, ``1..num_items``.
        users: raw user ids to recommend for, in this order (repeats ignored); default: every
            user of the log, in order of first appearance.
        include_history: allow items of the user's history (repeat-consumption domains).
        batch_size: users scored per step; memory is about ``batch_size * (N + 1) * 4`` bytes.
            Scores from different batch sizes agree to float rounding (not to the last bit).
        chunk_users: users per chunk appended to the file (bounds the rows held in memory); the
            file's rows do not depend on it.
        progress: called as ``progress(users_done, users_total)`` after every batch.

    Raises:
        ValueError: a bad ``k``, ``batch_size``, ``chunk_users`` or suffix, or a model with a user
            embedding (its query needs a per-user vector that exists only for training users).
    """
    out = Path(out)
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the output format of {out}: use a name ending in "
                         f"{' or '.join(OUTPUT_FORMATS)}")
    trained = model if isinstance(model, TrainedModel) else load_trained(model)
    net, vocab = trained.model, trained.vocab
    if net.uses_user_embedding:
        raise ValueError("models with a user embedding are not supported: the user vector exists only "
                         "for training users")
    if not 1 <= int(k) <= net.num_items:
        raise ValueError(f"k must be in 1..{net.num_items} (the catalogue size), got {k}")
    for name, value in (("batch_size", batch_size), ("chunk_users", chunk_users)):
        if int(value) < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if not isinstance(data, SequenceData):
        data = build_sequences(data)
    # The log's dense ids -> the model's (0 where the model does not know the item).
    to_model = np.concatenate([[0], vocab.encode(data.vocab.ids, unknown="zero")]).astype(np.int32)
    if users is None:
        names, rows = data.user_ids, np.arange(data.num_users)
    else:
        names = pd.unique(pd.Series(list(users), dtype=object)).astype(object)
        rows = pd.Index(data.user_ids).get_indexer(names)  # -1: not in the log
    total, chunk_users = len(names), int(chunk_users)
    scorer = _BatchTopK(net, int(k), rows=min(int(batch_size), max(total, 1)))
    ranks = np.arange(1, int(k) + 1, dtype=np.int32)
    written_users = written_rows = done = 0
    without: list[str] = []
    without_count = 0

    with atomic_path(out) as tmp:  # a reader never sees a partial file
        with _open_writer(str(tmp), fmt) as writer:
            # Batches are cut from the stream of users with a history, across chunk boundaries: a
            # user's scores then do not depend on the chunk size (a matmul's last bits depend on a
            # row's place in its batch), so any chunk size writes the same rows.
            pending: list[tuple[str, np.ndarray]] = []
            tables: list[pa.Table] = []
            buffered = 0
            for start in range(0, total, chunk_users):
                chunk_names = names[start:start + chunk_users]
                histories = [to_model[data.sequences[r]] if r >= 0 else np.zeros(0, np.int32)
                             for r in rows[start:start + chunk_users]]
                histories = [h[h > 0] for h in histories]
                known = np.fromiter((len(h) > 0 for h in histories), dtype=bool, count=len(histories))
                without_count += int((~known).sum())
                without += chunk_names[~known][: _EXAMPLES - len(without)].tolist()
                done += int((~known).sum())
                pending += [(name, h) for name, h, ok in zip(chunk_names, histories, known) if ok]
                last = start + chunk_users >= total
                while len(pending) >= scorer.rows or (last and pending):
                    batch, pending = pending[:scorer.rows], pending[scorer.rows:]
                    ids, scores = scorer([h for _, h in batch], not include_history)
                    eligible = scores > UNKNOWN_SCORE
                    per_user = eligible.sum(axis=1)
                    tables.append(pa.table({
                        "user_id": pa.array(np.repeat(np.array([n for n, _ in batch], dtype=object), per_user),
                                            pa.string()),
                        "rank": pa.array(np.broadcast_to(ranks, ids.shape)[eligible], pa.int32()),
                        "item_id": pa.array(vocab.decode(ids[eligible]), pa.string()),
                        "score": pa.array(scores[eligible], pa.float32()),
                    }, schema=_SCHEMA))
                    written_users += int((per_user > 0).sum())
                    written_rows += int(per_user.sum())
                    buffered += len(batch)
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
                if tables and (buffered >= chunk_users or last):
                    writer.write_table(pa.concat_tables(tables))  # one Parquet row group per chunk
                    tables, buffered = [], 0
                if progress is not None:
                    progress(done, total)
    return RecommendSummary(path=out, users=written_users, rows=written_rows,
                            users_without_history=without_count, examples_without_history=tuple(without))


def _open_writer(path: str, fmt: str):
    """A pyarrow writer of :data:`_SCHEMA` tables (context manager; ``write_table`` appends)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, _SCHEMA)
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, _SCHEMA)
