"""The training input pipeline: per-user item sequences → batches with fresh sampled negatives.

All the work after the initial index arrays is done in the TensorFlow graph on whole batches
(gather windows from one flat tensor of all sequences, sample negatives), so ``model.fit`` never
waits on Python. Each element is a dict:

* ``item_ids``  int32 ``[B, max_len]`` -- inputs, the most recent items, left-padded with 0;
* ``positives`` int32 ``[B, max_len]`` -- the next item at every position (0 where padded);
* ``negatives`` int32 ``[B, max_len, K]`` -- uniform over ``1..num_items``, never 0, never the
  positive at that position (and, with ``exclude_history=True``, never an item of the user's
  training sequence), drawn afresh for every batch of every epoch;
* ``user_ids`` int32 ``[B]`` -- 1-based index of the sequence's user (0 is reserved);
* ``expected_targets`` float32 ``[B]`` -- the expected number of targets of a full batch
  (``batch_size`` x the dataset's mean targets per training window) spread evenly over the
  batch's rows: the model divides a batch's summed loss by its sum, the same for every batch.

Why a fixed normaliser: the reference code averages the loss over the real positions of each
batch. With random batches that weighs every position about equally; with length-bucketed
batches it would give each position of a batch of two-item histories ~25x the weight of one in a
batch of fifty-item histories, turning the objective into a per-user average that under-trains
long histories (measured: -8% NDCG@10 per epoch on a long-tailed log). Dividing by the expected
count instead makes an epoch's total gradient the same with and without bucketing.

With ``bucket_by_length=True`` windows of similar length are batched together: each pool of 64
batches' worth of shuffled windows is sorted by length and cut into as many batches as random
batching would give, each holding an equal share of the pool's targets -- about ``batch_size`` x
mean targets per window, what a random batch holds -- so a batch of two-item windows has many
rows and one of fifty-item windows few; the batches are then shuffled. Each batch is cut to its
longest window, so ``T <= max_len`` and ``B`` vary per batch, while the number of batches per
epoch does not. Because SASRec counts positions from the right and masks padding, cutting
leading padding changes no output; it only removes work that the paper's code spends on padding
(about 80% of positions on sparse data). Equal targets rather than equal rows per batch: with
``batch_size`` rows, a batch of fifty-item windows carried ~5x the gradient of an average one and
a batch of one-item windows ~1/9, and training fell behind random batches in full-ranking
NDCG@10 on a long-tailed log (benchmarks/README.md, "Paper parity").

Which windows a sequence gives and how many targets each holds are the rules of
:mod:`sasrec_tf.data.sequence_rules`, shared with the TFRecord reader.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from sasrec_tf.data.sequence_rules import mean_window_targets, window_ends, window_targets

# Rejection rounds when negatives must avoid the whole history; the chance that a negative still
# collides afterwards is (history share of the catalogue) ** rounds, negligible in practice.
_HISTORY_REJECTION_ROUNDS = 16
# Length bucketing sorts pools of this many batches' worth of windows by length.
_POOL_BATCHES = 64


def pad_sequences(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Keep the most recent ``max_len`` items of each sequence and left-pad with 0 → int32 ``[N, max_len]``."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    out = np.zeros((len(sequences), max_len), dtype=np.int32)
    if not len(sequences) or not lengths.sum():
        return out
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    ends = np.cumsum(lengths)
    kept = np.minimum(lengths, max_len)
    # Row r's column c holds flat[ends[r] - max_len + c] when that index is inside row r.
    index = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = np.arange(max_len)[None, :] >= (max_len - kept)[:, None]
    out[valid] = flat[index[valid]]
    return out


def training_dataset(
    sequences: Sequence[np.ndarray],
    num_items: int,
    max_len: int,
    batch_size: int = 128,
    *,
    num_negatives: int = 1,
    windows: str = "last",
    exclude_history: bool = False,
    shuffle: bool = True,
    seed: int | None = 42,
    drop_remainder: bool = False,
    bucket_by_length: bool = False,
) -> tf.data.Dataset:
    """Build the ``tf.data`` pipeline that ``SASRec.fit`` trains on.

    Args:
      sequences: per-user training sequences of dense item ids (1..num_items), oldest first.
        Sequences with fewer than two items have no target and are skipped.
      num_items: catalogue size; negatives are drawn from ``1..num_items``.
      max_len: the model's maximum sequence length ``n``.
      batch_size: sequences per batch; with ``bucket_by_length``, a batch holds about as many
        targets as this many random windows.
      num_negatives: negatives ``K`` per position.
      windows: ``"last"`` trains on the most recent ``max_len`` targets of each user (the paper);
        ``"all"`` cuts long histories into consecutive windows so that every target is used.
      exclude_history: also reject negatives that occur anywhere in the user's sequence.
      shuffle: reshuffle the windows every epoch.
      seed: makes shuffling and negatives reproducible (still different in every epoch).
      drop_remainder: drop the last, smaller batch (random batches only: bucketing varies shapes).
      bucket_by_length: batch windows of similar length together, as many as hold about the
        targets of ``batch_size`` random windows, and cut each batch to its longest window (``B``
        and ``T`` vary per batch, the number of batches per epoch does not); the examples are
        still shuffled every epoch.

    An epoch has :func:`steps_per_epoch` batches, with or without bucketing. The dataset does not
    declare it (bucketing leaves its cardinality unknown): declared, Keras' ``fit`` no longer runs
    the extra step call that meets the end of the first epoch, and a fixed-seed run trained
    differently after it (measured); :func:`sasrec_tf.training.fit` gives the number to the bar.
    """
    if num_items < 2:
        raise ValueError(f"num_items must be >= 2 to sample negatives, got {num_items}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if not len(sequences):
        raise ValueError("no sequences to train on")
    flat_np = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    if flat_np.size and (flat_np.min() < 1 or flat_np.max() > num_items):
        raise ValueError(
            f"sequences must hold dense item ids in 1..{num_items}; found values in "
            f"[{flat_np.min()}, {flat_np.max()}]"
        )
    rows, ends = window_ends(lengths, max_len, windows)
    if not rows.size:
        raise ValueError("no sequence has two or more items: nothing to train on")

    starts_np = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = tf.constant(flat_np.astype(np.int32))
    row_starts = tf.constant(starts_np.astype(np.int64))
    window_lengths = window_targets(ends, max_len)
    expected_targets = mean_window_targets(lengths, max_len, windows)
    if exclude_history:
        sorted_history = tf.RaggedTensor.from_row_lengths(
            np.concatenate([np.sort(np.asarray(s, dtype=np.int32)) for s in sequences]), lengths
        )

    def make_batch(example, seeds):
        row, end = example["row"], example["end"]  # [B]
        width = tf.reduce_max(example["length"]) if bucket_by_length else tf.constant(max_len, tf.int64)
        start = tf.gather(row_starts, row)
        # Input at column c is item (end - 1 - width + c) of the row, target the one after it.
        index = (end - 1 - width)[:, None] + tf.range(width)[None, :]
        valid = index >= 0
        absolute = start[:, None] + tf.maximum(index, 0)
        item_ids = tf.where(valid, tf.gather(flat, absolute), 0)
        positives = tf.where(valid, tf.gather(flat, absolute + 1), 0)

        history = (
            tf.gather(sorted_history, row).to_tensor(default_value=num_items + 1) if exclude_history else None
        )
        negatives = sample_negatives(positives, num_negatives, num_items, seeds, sorted_history=history)
        batch = {
            "item_ids": item_ids,
            "positives": positives,
            "negatives": negatives,
            "user_ids": tf.cast(row + 1, tf.int32),
            "expected_targets": batch_normaliser(row, expected_targets, batch_size),
        }
        return batch

    examples = tf.data.Dataset.from_tensor_slices(
        {"row": rows.astype(np.int64), "end": ends.astype(np.int64), "length": window_lengths.astype(np.int64)}
    )
    if shuffle:
        examples = examples.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    examples = batch_windows(examples, batch_size, bucket_by_length=bucket_by_length, shuffle=shuffle,
                             seed=seed, drop_remainder=drop_remainder)
    return map_with_batch_seeds(examples, make_batch, seed).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(sequences: Sequence[np.ndarray], max_len: int, batch_size: int = 128, *,
                    windows: str = "last", drop_remainder: bool = False) -> int:
    """The number of batches per epoch of :func:`training_dataset` with these arguments:
    ``ceil(training windows / batch_size)`` (``floor`` with ``drop_remainder``), with or without
    length bucketing (which cuts every pool into as many batches as rows would give)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    rows, _ = window_ends(lengths, max_len, windows)
    return len(rows) // batch_size if drop_remainder else -(-len(rows) // batch_size)


def batch_windows(
    examples: tf.data.Dataset,
    batch_size: int,
    *,
    bucket_by_length: bool,
    shuffle: bool,
    seed: int | None,
    drop_remainder: bool = False,
    padding_values=None,
) -> tf.data.Dataset:
    """Batch (shuffled) window examples, each with a ``"length"`` (its targets).

    Without bucketing: ``batch_size`` rows per batch. With ``bucket_by_length``, by pool-sorting:
    each pool of ``_POOL_BATCHES`` batches' worth of windows is sorted by length and cut into as
    many batches as rows would give, each holding an equal share of the pool's targets (so about
    ``batch_size`` x mean targets, in more rows when they are short, fewer when long), and the
    batches are shuffled: a batch holds similar lengths, batches come in random order, and every
    epoch has the same number of batches. ``padding_values`` pads variable-length features
    (padded_batch)."""

    def batch(dataset, size, remainder):
        if padding_values is not None:
            return dataset.padded_batch(size, padding_values=padding_values, drop_remainder=remainder)
        return dataset.batch(size, drop_remainder=remainder)

    if not bucket_by_length:
        return batch(examples, batch_size, drop_remainder)
    if drop_remainder:
        raise ValueError("drop_remainder keeps batch shapes static; length bucketing varies them "
                         "(rows and width): use one or the other")

    def sort_pool(pool):
        order = tf.argsort(pool["length"], stable=True)
        return {key: tf.gather(value, order) for key, value in pool.items()}

    def pack_pool(pool):
        # As many batches as rows would give, ceil(rows / batch_size), so every epoch has the same
        # number of steps (Keras stops training when an epoch comes up short), cut where the
        # sorted windows' cumulative targets cross equal shares of the pool's total. A window
        # longer than one share would leave a batch empty; such a pool (only with a tiny
        # batch_size) is cut by rows instead.
        rows = tf.shape(pool["length"], out_type=tf.int64)[0]
        count = (rows + batch_size - 1) // batch_size
        lengths = tf.cast(pool["length"], tf.float64)
        share = tf.reduce_sum(lengths) / tf.cast(count, tf.float64)
        by_targets = tf.cast(tf.math.floor((tf.cumsum(lengths) - lengths) / share), tf.int64)
        by_rows = tf.range(rows) // batch_size
        batch_ids = tf.cond(tf.reduce_max(lengths) <= share, lambda: by_targets, lambda: by_rows)
        packed = {key: tf.RaggedTensor.from_value_rowids(value, batch_ids, nrows=count)
                  for key, value in pool.items()}
        return tf.data.Dataset.from_tensor_slices(packed)

    examples = batch(examples, batch_size * _POOL_BATCHES, False).map(sort_pool).flat_map(pack_pool)
    if shuffle:
        examples = examples.shuffle(_POOL_BATCHES, seed=None if seed is None else seed + 1,
                                    reshuffle_each_iteration=True)
    return examples


def batch_normaliser(rows: tf.Tensor, mean_targets: float, batch_size: int) -> tf.Tensor:
    """The ``expected_targets`` ``[B]`` of a batch whose first dimension is ``rows``: the
    expected number of targets of a full batch, ``batch_size * mean_targets``, spread evenly over
    its rows. Its sum is the loss normaliser, the same for every batch, whether a batch is random
    (``batch_size`` rows) or length-bucketed (as many rows as hold that many targets), full or the
    last, smaller one."""
    count = tf.cast(tf.shape(rows)[0], tf.float32)
    return tf.fill(tf.shape(rows), tf.constant(batch_size * mean_targets, tf.float32) / count)


def map_with_batch_seeds(batches: tf.data.Dataset, make_batch, seed: int | None) -> tf.data.Dataset:
    """``batches.map(make_batch(batch, seeds))`` where ``seeds`` is a fresh stateless seed pair per
    batch: different in every epoch, reproducible from ``seed``, independent of parallelism."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip((batches, seeds))
    return dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def sample_negatives(positives, num_negatives: int, num_items: int, seeds, sorted_history=None) -> tf.Tensor:
    """``[B, T, K]`` uniform negatives in ``1..num_items``, never the positive at their position;
    with ``sorted_history`` (``[B, H]`` ascending, padded above ``num_items``), never an item of
    the row's history either. ``seeds`` is a stateless seed pair."""
    shape = tf.concat([tf.shape(positives), [num_negatives]], axis=0)
    seed_pair = tf.cast(seeds, tf.int64)
    if sorted_history is not None:
        return _sample_avoiding(sorted_history, positives, shape, num_items, seed_pair)
    # Uniform over {1..N} \ {positive}: draw from N-1 values and skip over the positive.
    draw = tf.random.stateless_uniform(shape, seed_pair, minval=1, maxval=num_items, dtype=tf.int32)
    return draw + tf.cast(draw >= positives[..., None], tf.int32)


def _sample_avoiding(sorted_history, positives, shape, num_items, seed_pair):
    """Uniform negatives in 1..num_items that avoid each row's (sorted, padded) history.

    Colliding draws are redrawn for a fixed number of rounds; a draw that still collides after
    that (only possible when the history covers nearly the whole catalogue) falls back to a
    uniform item other than the positive, so the positive is excluded in every case.
    """
    batch = tf.shape(sorted_history)[0]

    def draw(round_index):
        seed = tf.stack([seed_pair[0], seed_pair[1] + tf.cast(round_index, tf.int64)])
        return tf.random.stateless_uniform(shape, seed, minval=1, maxval=num_items + 1, dtype=tf.int32)

    def collides(candidates):
        flat = tf.reshape(candidates, [batch, -1])
        where = tf.searchsorted(sorted_history, flat, side="left")
        found = tf.gather(sorted_history, tf.minimum(where, tf.shape(sorted_history)[1] - 1), batch_dims=1)
        return tf.reshape(tf.equal(found, flat), shape)

    negatives = draw(0)
    for round_index in range(1, _HISTORY_REJECTION_ROUNDS):
        negatives = tf.where(collides(negatives), draw(round_index), negatives)
    fallback = draw(_HISTORY_REJECTION_ROUNDS) % (num_items - 1) + 1  # uniform in 1..N-1
    fallback = fallback + tf.cast(fallback >= positives[..., None], tf.int32)
    return tf.where(collides(negatives), fallback, negatives)
