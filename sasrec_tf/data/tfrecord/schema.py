"""The format of a shard directory, shared by the writer, the reader and
:class:`~sasrec_tf.data.tfrecord.ShardedSequences`: file names, the manifest (reading it, and the
sequence lengths it records), compressions.

The manifest is the directory's table of contents (counts, shard files, the sequence-length
histogram): everything a trainer needs to plan an epoch -- windows, steps, the loss normaliser --
without reading a record. See :mod:`sasrec_tf.data.tfrecord` for the layout and the record format.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from sasrec_tf.data import sequence_rules

__all__ = [
    "COMPRESSIONS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "TRAIN_ITEM_COUNTS_FILE",
    "USERS_FILE",
    "VOCAB_FILE",
    "read_manifest",
    "resolve_compression",
    "train_length_histogram",
]

FORMAT_NAME = "sasrec-tf.sequences"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.txt"
USERS_FILE = "users.txt"
# The leave-one-out training part's interactions per item (not artifacts.ITEM_COUNTS_FILE, the
# counts a model directory keeps).
TRAIN_ITEM_COUNTS_FILE = "train_item_counts.npy"
# Compression names accepted by the writer and the reader -> TFRecord compression types.
COMPRESSIONS = {None: "", "none": "", "gzip": "GZIP", "zlib": "ZLIB"}


def resolve_compression(compression: str | None) -> str:
    """The TFRecord compression type (``""``, ``"GZIP"``, ``"ZLIB"``) of a compression name of
    :data:`COMPRESSIONS` (any case), as the writer and the reader take it.

    Raises:
        ValueError: an unknown name.
    """
    key = compression.lower() if isinstance(compression, str) else compression
    if key not in COMPRESSIONS:
        raise ValueError(f"compression must be one of None, 'gzip', 'zlib', 'none'; got {compression!r}")
    return COMPRESSIONS[key]


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a shard directory (local or any ``tf.io.gfile`` path, e.g. ``gs://``)."""
    import tensorflow as tf

    path = os.path.join(os.fspath(directory), MANIFEST_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{directory} is not a shard directory: no {MANIFEST_FILE} (write it with "
                                "`sasrec-tf shard`)")
    with tf.io.gfile.GFile(path, "r") as handle:
        manifest = json.loads(handle.read())
    if manifest.get("format") != FORMAT_NAME or int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: not a {FORMAT_NAME} v{FORMAT_VERSION} manifest "
                         f"(format={manifest.get('format')!r}, version={manifest.get('version')!r})")
    return manifest


def train_length_histogram(manifest: dict[str, Any], *, leave_one_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """(length, users with it) of the sequences training reads, from the manifest's histogram.

    With ``leave_one_out`` the lengths are those of the training parts
    (:func:`~sasrec_tf.data.sequence_rules.leave_one_out_lengths`). Pass both arrays to the window
    rules (``sequence_rules.count_windows(lengths, ..., weights=users)``): the histogram is never
    expanded to one entry per user.
    """
    pairs = np.asarray(list(manifest["length_histogram"]), dtype=np.int64).reshape(-1, 2)
    lengths, users = pairs[:, 0], pairs[:, 1]
    return (sequence_rules.leave_one_out_lengths(lengths) if leave_one_out else lengths), users
