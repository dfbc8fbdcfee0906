"""Reading TFRecord shards for training: :func:`tfrecord_training_dataset` and the record parsing.

See :mod:`sasrec_tf.data.tfrecord` for the record format, what the reader yields and how it
splits the files between workers.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from sasrec_tf.data import sequence_rules
from sasrec_tf.data.tfrecord.schema import (
    MANIFEST_FILE,
    read_manifest,
    resolve_compression,
    train_length_histogram,
)

__all__ = ["AUTO_SHARD_POLICIES", "DEFAULT_SHUFFLE_BUFFER", "parse_records", "tfrecord_training_dataset"]

AUTO_SHARD_POLICIES = ("data", "off")
DEFAULT_SHUFFLE_BUFFER = 10_000
_PIPELINE_SEED_STRIDE = 1_000_003  # seed offset per input pipeline (worker)


def _features(user_id: bool = False) -> dict[str, Any]:
    """The ``tf.io.parse_example`` spec of a record; the raw ``user_id`` only when asked for."""
    import tensorflow as tf

    features = {
        "items": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
        "user_index": tf.io.FixedLenFeature([], tf.int64),
    }
    if user_id:
        features["user_id"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return features


def parse_records(serialized: Any) -> dict[str, Any]:
    """A batch of serialized records → ``items_values``, ``items_row_splits`` (the ragged items),
    ``user_index`` and ``user_id`` tensors (the flat form ``Dataset.as_numpy_iterator`` can yield)."""
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, _features(user_id=True))
    items = parsed["items"]
    return {"items_values": items.values, "items_row_splits": items.row_splits,
            "user_index": parsed["user_index"], "user_id": parsed["user_id"]}


def _is_dir(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.isdir(path)


def _resolve_files(source: str | os.PathLike[str] | Sequence[str], compression: str | None):
    """(files in order, compression type, manifest or None) for a directory, a glob or a list."""
    import tensorflow as tf

    manifest = None
    if isinstance(source, (list, tuple)):
        files = [os.fspath(f) for f in source]
    else:
        source = os.fspath(source)
        if _is_dir(source):
            if tf.io.gfile.exists(os.path.join(source, MANIFEST_FILE)):
                manifest = read_manifest(source)
                files = [os.path.join(source, shard["file"]) for shard in manifest["shards"]]
            else:
                files = sorted(tf.io.gfile.glob(os.path.join(source, "*.tfrecord*")))
        else:
            files = sorted(tf.io.gfile.glob(source))
    if not files:
        raise FileNotFoundError(f"no TFRecord files found at {source!r}")
    if compression is None:
        if manifest is not None:
            compression = manifest.get("compression") or ""
        else:
            compression = "GZIP" if files[0].endswith(".gz") else "ZLIB" if files[0].endswith(".zz") else ""
    else:
        compression = resolve_compression(compression)
    return files, compression, manifest


def tfrecord_training_dataset(
    source: str | os.PathLike[str] | Sequence[str],
    max_len: int,
    batch_size: int = 128,
    *,
    num_items: int | None = None,
    num_negatives: int = 1,
    windows: str = "last",
    exclude_history: bool = False,
    leave_one_out: bool = False,
    shuffle: bool = True,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    seed: int | None = 42,
    drop_remainder: bool = False,
    bucket_by_length: bool = False,
    expected_targets: float | None = None,
    auto_shard: str = "data",
    input_context=None,
    compression: str | None = None,
    read_batch: int = 256,
    cycle_length: int = 4,
):
    """The training pipeline of :func:`sasrec_tf.data.training_dataset`, read from TFRecord shards.

    Args:
      source: a shard directory (with ``manifest.json``, or any ``*.tfrecord*`` files), a glob
        pattern, or a list of files; ``tf.io.gfile`` paths (``gs://...``) work.
      max_len, batch_size, num_negatives, windows, exclude_history, seed, drop_remainder,
        bucket_by_length: as for ``training_dataset``.
      num_items: catalogue size for the negatives; read from the manifest when omitted.
      expected_targets: mean targets per training window, the loss normaliser (see
        :mod:`sasrec_tf.data.pipeline`); computed from the manifest's length histogram when
        omitted. Without either, batches carry no ``expected_targets`` and the model averages
        each batch's loss over its own positions.
      leave_one_out: train on each user's leave-one-out training part (drop the last two items
        of users with at least three), as :func:`~sasrec_tf.data.leave_one_out` does; records
        hold the full sequences.
      shuffle: shuffle the file order and the windows (in a buffer of ``shuffle_buffer``
        windows) every epoch. ``False`` reads files and records in order.
      auto_shard: ``"data"`` or ``"off"``: the ``tf.data`` auto-shard policy that
        ``tf.distribute`` applies to this dataset (see the module documentation); ignored with
        ``input_context``.
      input_context: a ``tf.distribute.InputContext``: read only this input pipeline's files,
        batch ``input_context.get_per_replica_batch_size(batch_size)`` (``batch_size`` is then
        the global batch) and derive this pipeline's own seeds.
      compression: ``None`` infers it (manifest or file suffix).
      read_batch: records parsed per vectorised step.
      cycle_length: files read concurrently when shuffling.

    Returns:
      A ``tf.data.Dataset`` of dicts ``item_ids [B, L]``, ``positives [B, L]``,
      ``negatives [B, L, K]``, ``user_ids [B]`` (int32; ``L = max_len``, or the batch's longest
      window with ``bucket_by_length``) and ``expected_targets [B]`` (float32).
    """
    import tensorflow as tf
    from sasrec_tf.data.pipeline import batch_normaliser, batch_windows, map_with_batch_seeds, sample_negatives

    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    sequence_rules.check_windows(windows)
    if auto_shard not in AUTO_SHARD_POLICIES:
        raise ValueError(f"auto_shard must be one of {AUTO_SHARD_POLICIES}, got {auto_shard!r}")
    files, compression_type, manifest = _resolve_files(source, compression)
    if num_items is None:
        if manifest is None:
            raise ValueError("num_items is required when the source has no manifest.json")
        num_items = int(manifest["num_items"])
    if num_items < 2:
        raise ValueError(f"num_items must be >= 2 to sample negatives, got {num_items}")
    if expected_targets is None and manifest is not None:
        lengths, users = train_length_histogram(manifest, leave_one_out=leave_one_out)
        expected_targets = sequence_rules.mean_window_targets(lengths, max_len, windows, weights=users)
    if input_context is not None and input_context.num_input_pipelines > 1:
        count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(files) < count:
            raise ValueError(f"{len(files)} shard files for {count} input pipelines (workers): write at "
                             f"least {count} shards (ideally a multiple)")
        files = files[index::count]  # what AutoShardPolicy.FILE would give this pipeline
        if seed is not None:
            seed = int(seed) + _PIPELINE_SEED_STRIDE * index  # different negatives on every worker
        auto_shard = "off"
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    elif auto_shard == "data" and shuffle and seed is None:
        raise ValueError("auto_shard='data' needs a fixed seed: every worker must produce the same batches")

    pad_history = num_items + 1
    width = max_len + 1  # a window row: max_len inputs plus the last target

    def to_windows(serialized):
        parsed = tf.io.parse_example(serialized, _features())
        items = parsed["items"]
        values = items.values
        checks = [
            tf.debugging.assert_greater_equal(values, tf.constant(1, tf.int64), message=(
                "TFRecord 'items' must hold dense item ids >= 1 (0 is padding)")),
            tf.debugging.assert_less_equal(values, tf.constant(num_items, tf.int64), message=(
                f"TFRecord 'items' hold ids above num_items={num_items}")),
        ]
        with tf.control_dependencies(checks):
            lengths = items.row_lengths()
        if leave_one_out:
            kept = sequence_rules.leave_one_out_lengths(lengths)
            items = tf.ragged.boolean_mask(items, tf.ragged.range(lengths) < kept[:, None])
            lengths = kept
        starts = items.row_starts()
        # Windows of every record: (record, end), end = items its targets reach; most recent first.
        rows, ends = sequence_rules.window_ends(lengths, max_len, windows)
        # Column c of a window row holds item (end - width + c) of the record, 0 before its start.
        index = (ends - width)[:, None] + tf.range(width, dtype=tf.int64)[None, :]
        absolute = tf.gather(starts, rows)[:, None] + tf.maximum(index, 0)
        window = tf.where(index >= 0, tf.cast(tf.gather(items.values, absolute), tf.int32), 0)
        element = {
            "window": window,
            "length": sequence_rules.window_targets(ends, max_len),
            "user_ids": tf.cast(tf.gather(parsed["user_index"], rows) + 1, tf.int32),
        }
        if exclude_history:
            history = tf.sort(tf.cast(items.to_tensor(default_value=pad_history), tf.int32), axis=1)
            element["history"] = tf.gather(history, rows)
        return element

    filenames = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        filenames = filenames.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        records = filenames.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression_type),
            cycle_length=max(1, min(cycle_length, len(files))), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    else:
        records = filenames.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression_type), cycle_length=1)
    examples = records.batch(read_batch).map(to_windows, num_parallel_calls=tf.data.AUTOTUNE,
                                             deterministic=True).unbatch()
    if shuffle:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    padding = {"window": 0, "length": tf.constant(0, tf.int64), "user_ids": 0}
    if exclude_history:
        padding["history"] = pad_history
    examples = batch_windows(examples, batch_size, bucket_by_length=bucket_by_length, shuffle=shuffle, seed=seed,
                             drop_remainder=drop_remainder, padding_values=padding if exclude_history else None)

    def make_batch(example, seeds):
        window, length = example["window"], example["length"]  # [B, max_len + 1], [B]
        cut = tf.reduce_max(length) if bucket_by_length else tf.constant(max_len, tf.int64)
        window = window[:, max_len - cut:]  # keep the last cut + 1 columns
        valid = tf.range(cut)[None, :] >= (cut - length)[:, None]
        item_ids = tf.where(valid, window[:, :-1], 0)
        positives = tf.where(valid, window[:, 1:], 0)
        history = example["history"] if exclude_history else None
        negatives = sample_negatives(positives, num_negatives, num_items, seeds, sorted_history=history)
        batch = {"item_ids": item_ids, "positives": positives, "negatives": negatives,
                 "user_ids": example["user_ids"]}
        if expected_targets is not None:
            batch["expected_targets"] = batch_normaliser(length, expected_targets, batch_size)
        return batch

    dataset = map_with_batch_seeds(examples, make_batch, seed)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = {
        "data": tf.data.experimental.AutoShardPolicy.DATA,
        "off": tf.data.experimental.AutoShardPolicy.OFF,
    }[auto_shard]
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
