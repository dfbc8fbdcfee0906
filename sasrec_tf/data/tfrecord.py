"""Sharded TFRecord files of per-user sequences, and the ``tf.data`` reader that trains on them.

For logs that do not fit in one process' memory, training reads per-user sequence records from
sharded files instead of one in-memory array. A shard directory holds::

    sequences-00000-of-00008.tfrecord   one tf.train.Example per user (see below), users in
    ...                                 contiguous index ranges, ~equal record counts per shard
    manifest.json                       counts: users, items, interactions, per-shard records,
                                        sequence-length histogram (gives steps per epoch)
    vocab.txt                           ItemVocabulary.save: line i = raw id of dense item i
    users.txt                           line i = raw id of user index i
    train_item_counts.npy               interactions per dense item in the leave-one-out
                                        training part ([num_items + 1] int64)

Record format (``tf.train.Example``; any writer that produces it -- Beam, Spark -- works)::

    items       int64 list   dense item ids 1..num_items, oldest first (the full sequence)
    user_index  int64        0-based dense user index (unique; user_ids in batches = index + 1)
    user_id     bytes        the raw user id

:func:`tfrecord_training_dataset` yields exactly the batches of
:func:`sasrec_tf.data.training_dataset` (``item_ids``, ``positives``, ``negatives [B, L, K]``,
``user_ids``): records are read in chunks, parsed as a ragged batch, cut into training windows
with vectorised gathers, shuffled in a bounded buffer, batched, and given fresh negatives from
stateless seeds per batch. With ``shuffle=False`` and the same seed, it produces the very same
batches as ``training_dataset`` on the same sequences. Only a shuffle buffer of windows is ever
in memory.

Sharding across workers. Two ways, both used by ``sasrec_tf.training.fit``:

* **By file** (the scalable one): pass the dataset as a function of a
  ``tf.distribute.InputContext`` (:meth:`ShardedSequences.dataset_fn`, used through
  ``strategy.distribute_datasets_from_function``). Input pipeline ``i`` of ``n`` reads only the
  files ``i, i + n, ...`` -- the split ``AutoShardPolicy.FILE`` would make -- so reading and
  memory are divided among the workers; it batches the per-replica batch and folds its index
  into the seeds, so workers draw different negatives. Needs at least as many files as workers
  (ideally a multiple, for balance). Workers may hold different numbers of windows, so it
  repeats forever and training runs a fixed ``steps_per_epoch``
  (:meth:`ShardedSequences.steps_per_epoch`), the same on every worker.
  Why not ``AutoShardPolicy.FILE`` itself: tf.data's automatic file sharding needs every source of
  the pipeline to be a file reader, and the stream of per-batch seeds (``Dataset.random``, what
  makes negatives fresh every epoch yet reproducible) is not one, so TensorFlow rejects the
  policy for this pipeline (``AUTO`` logs the failure and falls back to ``DATA``).
* **By data** (``auto_shard="data"``, the default for a plain dataset handed to ``model.fit``):
  every worker runs the whole pipeline and keeps its part of every global batch. Works for any
  number of files, but every worker reads all the data, and it needs a fixed ``seed`` (the workers
  must produce the same batches).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from sasrec_tf.data.sequences import SequenceData
from sasrec_tf.data.vocab import ItemVocabulary

__all__ = [
    "MANIFEST_FILE",
    "ShardedSequences",
    "write_shards",
    "tfrecord_training_dataset",
    "read_manifest",
    "read_for_training",
    "add_commands",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "sasrec-tf.sequences"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.txt"
USERS_FILE = "users.txt"
ITEM_COUNTS_FILE = "train_item_counts.npy"
COMPRESSIONS = {None: "", "none": "", "gzip": "GZIP", "zlib": "ZLIB"}
_SUFFIX = {"": ".tfrecord", "GZIP": ".tfrecord.gz", "ZLIB": ".tfrecord.zz"}
AUTO_SHARD_POLICIES = ("data", "off")
DEFAULT_SHUFFLE_BUFFER = 10_000
_PIPELINE_SEED_STRIDE = 1_000_003  # seed offset per input pipeline (worker)


# ============================================================================ writing
def _example(items: np.ndarray, user_index: int, user_id: str):
    import tensorflow as tf

    feature = {
        "items": tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(items, np.int64).tolist())),
        "user_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(user_index)])),
        "user_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(user_id).encode("utf-8")])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _leave_one_out_train_lengths(lengths: np.ndarray) -> np.ndarray:
    """Training-part length per user under :func:`~sasrec_tf.data.leave_one_out` (min_length 3)."""
    return np.where(lengths >= 3, lengths - 2, lengths)


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

    key = compression.lower() if isinstance(compression, str) else compression
    if key not in COMPRESSIONS:
        raise ValueError(f"compression must be one of None, 'gzip', 'zlib'; got {compression!r}")
    compression_type = COMPRESSIONS[key]
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
        })

    data.vocab.save(out / VOCAB_FILE)
    _write_text(out / USERS_FILE, "".join(f"{u}\n" for u in data.user_ids))
    train_lengths = _leave_one_out_train_lengths(lengths)
    flat = np.concatenate([np.asarray(s[:n], np.int64) for s, n in zip(data.sequences, train_lengths)]) \
        if data.num_users else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=data.num_items + 1).astype(np.int64)
    with open(out / (ITEM_COUNTS_FILE + ".tmp"), "wb") as handle:
        np.save(handle, counts)
    os.replace(out / (ITEM_COUNTS_FILE + ".tmp"), out / ITEM_COUNTS_FILE)

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
        "train_item_counts": ITEM_COUNTS_FILE,
        "length_histogram": [[int(v), int(f)] for v, f in zip(values, frequencies)],
        "shards": shards,
    }
    _write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ============================================================================ the shard directory
def _is_dir(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.isdir(path)


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


def _histogram_train_lengths(histogram: Iterable[Sequence[int]], leave_one_out: bool) -> np.ndarray:
    """The manifest's ``[[length, users], ...]`` expanded to one (training-part) length per user."""
    pairs = np.asarray(list(histogram), dtype=np.int64).reshape(-1, 2)
    lengths = np.repeat(pairs[:, 0], pairs[:, 1])
    return _leave_one_out_train_lengths(lengths) if leave_one_out else lengths


def _count_windows(histogram: Iterable[Sequence[int]], max_len: int, windows: str, leave_one_out: bool) -> int:
    total = 0
    for length, count in histogram:
        if leave_one_out and length >= 3:
            length -= 2
        if length < 2:
            continue
        total += count * (1 if windows == "last" else -(-(length - 1) // max_len))
    return int(total)


class ShardedSequences:
    """A shard directory written by :func:`write_shards` (or by any writer of the same format)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = os.fspath(directory)
        self.manifest = read_manifest(self.directory)
        self._vocab: ItemVocabulary | None = None

    num_users = property(lambda self: int(self.manifest["num_users"]))
    num_items = property(lambda self: int(self.manifest["num_items"]))
    num_interactions = property(lambda self: int(self.manifest["num_interactions"]))
    compression = property(lambda self: self.manifest.get("compression") or "")

    @property
    def files(self) -> list[str]:
        """The shard files in user order."""
        return [os.path.join(self.directory, shard["file"]) for shard in self.manifest["shards"]]

    @property
    def vocab(self) -> ItemVocabulary:
        if self._vocab is None:
            self._vocab = ItemVocabulary.load(self._local(self.manifest.get("vocab", VOCAB_FILE)))
        return self._vocab

    def user_ids(self) -> np.ndarray:
        """Raw user ids by user index (object array of str)."""
        text = self._read_text(self.manifest.get("users", USERS_FILE))
        return np.array(text.splitlines(), dtype=object)

    def train_item_counts(self) -> np.ndarray:
        """Interactions per dense item in the leave-one-out training part, ``[num_items + 1]``."""
        import io

        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.join(self.directory, self.manifest["train_item_counts"]), "rb") as handle:
            return np.load(io.BytesIO(handle.read()))

    def num_windows(self, max_len: int, windows: str = "last", *, leave_one_out: bool) -> int:
        """Training windows (sequences) per epoch, from the manifest's length histogram; pass the
        same ``windows`` and ``leave_one_out`` as to the reader."""
        return _count_windows(self.manifest["length_histogram"], max_len, windows, leave_one_out)

    def steps_per_epoch(self, max_len: int, global_batch: int, windows: str = "last", *,
                        leave_one_out: bool) -> int:
        """Synchronous steps that cover every window once at the given global batch size."""
        return max(1, math.ceil(self.num_windows(max_len, windows, leave_one_out=leave_one_out) / global_batch))

    def training_dataset(self, max_len: int, batch_size: int, **kwargs):
        """:func:`tfrecord_training_dataset` on these shards."""
        return tfrecord_training_dataset(self.directory, max_len, batch_size, **kwargs)

    def dataset_fn(self, max_len: int, global_batch: int, *, repeat: bool = True, **kwargs):
        """A function of a ``tf.distribute.InputContext`` that gives the pipeline of one worker.

        For ``strategy.distribute_datasets_from_function`` (as ``training.fit(dataset=...)`` does):
        each worker reads its own files (see the module documentation). With ``repeat`` (the
        default) the dataset never ends: train with :meth:`steps_per_epoch`.
        """
        directory, num_items = self.directory, self.num_items

        def make(input_context=None):
            dataset = tfrecord_training_dataset(directory, max_len, global_batch, num_items=num_items,
                                                input_context=input_context, **kwargs)
            return dataset.repeat() if repeat else dataset

        return make

    def read_sequences(self, users: Sequence[int] | None = None) -> SequenceData:
        """The records as :class:`SequenceData` (all users, or the given user indices, in index order).

        Streams the records and keeps only the wanted users: use it for evaluation subsets or
        small data; a full read needs the whole log in memory.
        """
        import tensorflow as tf

        wanted = None if users is None else np.unique(np.asarray(users, dtype=np.int64))
        records = tf.data.TFRecordDataset(self.files, compression_type=self.compression)
        indices, raw, sequences = [], [], []
        for chunk in records.batch(4096).map(_parse_records).as_numpy_iterator():
            keep = np.ones(len(chunk["user_index"]), bool) if wanted is None else np.isin(chunk["user_index"], wanted)
            row_lengths = np.diff(chunk["items_row_splits"])
            for row in np.flatnonzero(keep):
                start = chunk["items_row_splits"][row]
                sequences.append(chunk["items_values"][start:start + row_lengths[row]].astype(np.int64))
                indices.append(int(chunk["user_index"][row]))
                raw.append(chunk["user_id"][row].decode("utf-8"))
        order = np.argsort(np.asarray(indices, np.int64), kind="stable")
        sequences = [sequences[i] for i in order]
        for sequence in sequences:
            sequence.flags.writeable = False
        return SequenceData(user_ids=np.asarray([raw[i] for i in order], dtype=object),
                            sequences=sequences, vocab=self.vocab)

    def _local(self, name: str) -> str:
        """A local path for a side file (copied from remote storage when needed)."""
        path = os.path.join(self.directory, name)
        if os.path.exists(path):
            return path
        import tempfile

        import tensorflow as tf

        local = os.path.join(tempfile.mkdtemp(prefix="sasrec-shards-"), name)
        tf.io.gfile.copy(path, local)
        return local

    def _read_text(self, name: str) -> str:
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.join(self.directory, name), "r") as handle:
            return handle.read()

    def __repr__(self) -> str:
        return (f"ShardedSequences({self.directory!r}: {self.num_users} users, {self.num_items} items, "
                f"{len(self.manifest['shards'])} shards)")


def _parse_records(serialized):
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, {
        "items": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
        "user_index": tf.io.FixedLenFeature([], tf.int64),
        "user_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    })
    items = parsed["items"]
    return {"items_values": items.values, "items_row_splits": items.row_splits,
            "user_index": parsed["user_index"], "user_id": parsed["user_id"]}


# ============================================================================ reading for training
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
        key = compression.lower()
        if key not in COMPRESSIONS:
            raise ValueError(f"compression must be one of None, 'gzip', 'zlib', 'none'; got {compression!r}")
        compression = COMPRESSIONS[key]
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
    from sasrec_tf.data.pipeline import batch_windows, map_with_batch_seeds, mean_window_targets, sample_negatives

    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    if windows not in ("last", "all"):
        raise ValueError(f"windows must be 'last' or 'all', got {windows!r}")
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
        expected_targets = mean_window_targets(
            _histogram_train_lengths(manifest["length_histogram"], leave_one_out), max_len, windows)
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
        parsed = tf.io.parse_example(serialized, {
            "items": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
            "user_index": tf.io.FixedLenFeature([], tf.int64),
        })
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
            kept = tf.where(lengths >= 3, lengths - 2, lengths)
            items = tf.ragged.boolean_mask(items, tf.ragged.range(lengths) < kept[:, None])
            lengths = kept
        starts = items.row_starts()
        # Windows of every record: (record, end), end = items its targets reach; most recent first.
        if windows == "last":
            rows = tf.reshape(tf.where(lengths >= 2), [-1])
            ends = tf.gather(lengths, rows)
        else:
            counts = tf.where(lengths >= 2, (lengths - 1 + max_len - 1) // max_len, 0)
            rows = tf.repeat(tf.range(tf.size(lengths, out_type=tf.int64)), counts)
            offsets = tf.range(tf.reduce_sum(counts)) - tf.repeat(tf.cumsum(counts, exclusive=True), counts)
            ends = tf.gather(lengths, rows) - offsets * max_len
        # Column c of a window row holds item (end - width + c) of the record, 0 before its start.
        index = (ends - width)[:, None] + tf.range(width, dtype=tf.int64)[None, :]
        absolute = tf.gather(starts, rows)[:, None] + tf.maximum(index, 0)
        window = tf.where(index >= 0, tf.cast(tf.gather(items.values, absolute), tf.int32), 0)
        element = {
            "window": window,
            "length": tf.minimum(ends - 1, max_len),
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
            batch["expected_targets"] = tf.fill(tf.shape(length), tf.constant(expected_targets, tf.float32))
        return batch

    dataset = map_with_batch_seeds(examples, make_batch, seed)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = {
        "data": tf.data.experimental.AutoShardPolicy.DATA,
        "off": tf.data.experimental.AutoShardPolicy.OFF,
    }[auto_shard]
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def read_for_training(directory: str | os.PathLike[str], config, train_options: dict[str, Any]):
    """(shards, the users to evaluate as SequenceData) for ``sasrec-tf train --data-format tfrecord``.

    Training streams from the shards; validation and test need the evaluated users' sequences in
    memory, so with ``max_eval_users`` only a seeded sample of that many users is read (and the
    reported metrics are on that sample); without it, every user is read.
    """
    from sasrec_tf.cli import UsageError

    try:
        shards = ShardedSequences(directory)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    max_users = train_options.get("max_eval_users")
    users = None
    if max_users is not None and max_users < shards.num_users:
        if config.use_user_embedding:
            raise UsageError("use_user_embedding with --data-format tfrecord needs every user evaluated: "
                             "drop --max-eval-users")
        users = np.random.default_rng(config.seed).choice(shards.num_users, size=max_users, replace=False)
        print(f"evaluating a sample of {max_users} of {shards.num_users} users (--max-eval-users)")
    else:
        logger.warning("reading every user's sequence for evaluation; set --max-eval-users to bound the memory")
    return shards, shards.read_sequences(users)


# ============================================================================ command line
def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``sasrec-tf shard`` to the CLI's sub-commands."""
    from sasrec_tf.cli import _add_data_flags

    shard = commands.add_parser(
        "shard", help="convert an interaction log into sharded TFRecord sequence files for training at scale")
    _add_data_flags(shard, required_format=True)
    shard.add_argument("--out", required=True, help="output directory (shards, manifest.json, vocab.txt)")
    shard.add_argument("--num-shards", dest="num_shards", type=int, default=8,
                       help="number of files; use a multiple of the number of training workers")
    shard.add_argument("--compression", choices=("none", "gzip", "zlib"), default="none")
    shard.add_argument("--overwrite", action="store_true", help="replace the shards in an existing directory")
    shard.set_defaults(func=cmd_shard)


def cmd_shard(args: argparse.Namespace) -> int:
    from sasrec_tf.cli import UsageError, _read_data

    data = _read_data(args, {})
    try:
        manifest = write_shards(data, args.out, args.num_shards,
                                compression=None if args.compression == "none" else args.compression,
                                overwrite=args.overwrite)
    except ValueError as err:
        raise UsageError(str(err)) from None
    total = sum(shard["bytes"] for shard in manifest["shards"])
    print(f"wrote {len(manifest['shards'])} shards to {args.out}: {manifest['num_users']} users, "
          f"{manifest['num_items']} items, {manifest['num_interactions']} interactions, "
          f"{total / 2**20:.2f} MiB ({total / max(manifest['num_interactions'], 1):.2f} bytes/interaction)")
    return 0
