"""Writing a shard directory: per-user ``tf.train.Example`` records, side files, and the manifest.

See :mod:`sasrec_tf.data.tfrecord` for the layout and the record format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sasrec_tf.data import sequence_rules
from sasrec_tf.data.sequences import SequenceData
from sasrec_tf.data.tfrecord.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    TRAIN_ITEM_COUNTS_FILE,
    USERS_FILE,
    VOCAB_FILE,
    resolve_compression,
)
from sasrec_tf.data.tfrecord.verify import file_sha256
from sasrec_tf.files import atomic_write_text, write_with

__all__ = ["write_shards"]

_SUFFIX = {"": ".tfrecord", "GZIP": ".tfrecord.gz", "ZLIB": ".tfrecord.zz"}


def _example(items: np.ndarray, user_index: int, user_id: str):
    """One user's record (see the record format in :mod:`sasrec_tf.data.tfrecord`)."""
    import tensorflow as tf

    feature = {
        "items": tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(items, np.int64).tolist())),
        "user_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(user_index)])),
        "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(user_id).encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shards(
    data: SequenceData,
    out_dir: str | os.PathLike[str],
    num_shards: int = 8,
    *,
    compression: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``data`` as ``num_shards`` TFRecord files of per-user records plus the side files.

    Users go to shards in contiguous index ranges of (almost) equal size, so reading the shards in
    name order gives the users in ``data`` order. The manifest is written last: a directory with a
    manifest is complete. Returns the manifest.

    Args:
      compression: ``None`` or ``"gzip"`` / ``"zlib"`` (TFRecord compression; smaller files, more
        CPU when reading).
      overwrite: replace the shard files of an existing shard directory (otherwise an error).

    Raises:
      ValueError: ``num_shards`` < 1 or more shards than users, an unknown compression, or an
        existing shard directory without ``overwrite``.
    """
    import tensorflow as tf

    compression_type = resolve_compression(compression)
    if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
    if num_shards > data.num_users:
        raise ValueError(f"{num_shards} shards for {data.num_users} users: some shards would be empty")
    out = Path(out_dir)
    existing = sorted(out.glob("sequences-*-of-*.tfrecord*")) if out.exists() else []
    if (existing or (out / MANIFEST_FILE).exists()) and not overwrite:
        raise ValueError(f"{out} already holds shards; pass overwrite=True (--overwrite) to replace them")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # incomplete until the new manifest is written
    for stale in existing:
        stale.unlink()

    lengths = data.lengths()
    ranges = np.array_split(np.arange(data.num_users), num_shards)
    options = tf.io.TFRecordOptions(compression_type=compression_type)
    shards = []
    for index, users in enumerate(ranges):
        name = f"sequences-{index:05d}-of-{num_shards:05d}{_SUFFIX[compression_type]}"
        with tf.io.TFRecordWriter(str(out / name), options=options) as writer:
            for user in users:
                writer.write(_example(data.sequences[user], user, data.user_ids[user]).SerializeToString())
        shards.append({
            "file": name,
            "records": int(len(users)),
            "interactions": int(lengths[users].sum()),
            "first_user_index": int(users[0]),
            "bytes": int((out / name).stat().st_size),
            "sha256": file_sha256(out / name),  # checked before training (verify_shards)
        })

    data.vocab.save(out / VOCAB_FILE)
    atomic_write_text(out / USERS_FILE, "".join(f"{u}\n" for u in data.user_ids))
    train_lengths = sequence_rules.leave_one_out_lengths(lengths)
    counts = sequence_rules.item_counts([s[:n] for s, n in zip(data.sequences, train_lengths)], data.num_items)
    write_with(out / TRAIN_ITEM_COUNTS_FILE, lambda handle: np.save(handle, counts))

    values, frequencies = np.unique(lengths, return_counts=True)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_users": int(data.num_users),
        "num_items": int(data.num_items),
        "num_interactions": int(lengths.sum()),
        "compression": compression_type or None,
        "features": {
            "items": "int64 list: dense item ids (1..num_items), oldest first",
            "user_index": "int64: 0-based dense user index",
            "user_id": "bytes: raw user id",
        },
        "vocab": VOCAB_FILE,
        "users": USERS_FILE,
        "train_item_counts": TRAIN_ITEM_COUNTS_FILE,
        "length_histogram": [[int(v), int(f)] for v, f in zip(values, frequencies)],
        "shards": shards,
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest
