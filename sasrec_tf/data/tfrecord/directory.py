"""A shard directory as an object: :class:`ShardedSequences`, what training and evaluation read.

See :mod:`sasrec_tf.data.tfrecord` for the layout and :mod:`~sasrec_tf.data.tfrecord.schema` for
the format it reads.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from sasrec_tf.data import sequence_rules
from sasrec_tf.data.sequences import SequenceData
from sasrec_tf.data.tfrecord.reader import parse_records, tfrecord_training_dataset
from sasrec_tf.data.tfrecord.schema import USERS_FILE, VOCAB_FILE, read_manifest, train_length_histogram
from sasrec_tf.data.tfrecord.verify import verify_shards
from sasrec_tf.data.vocab import ItemVocabulary

__all__ = ["ShardedSequences"]


class ShardedSequences:
    """A shard directory written by :func:`~sasrec_tf.data.tfrecord.write_shards` (or by any writer
    of the same format)."""

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

    def verify(self) -> None:
        """Check every shard against the manifest (size, checksum or record count); raises
        :class:`~sasrec_tf.data.errors.DataError` naming the first bad one (:func:`verify_shards`)."""
        verify_shards(self.directory, self.manifest)

    def train_item_counts(self) -> np.ndarray:
        """Interactions per dense item in the leave-one-out training part, ``[num_items + 1]``."""
        import io

        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.join(self.directory, self.manifest["train_item_counts"]), "rb") as handle:
            return np.load(io.BytesIO(handle.read()))

    def num_windows(self, max_len: int, windows: str = "last", *, leave_one_out: bool) -> int:
        """Training windows (sequences) per epoch, from the manifest's length histogram; pass the
        same ``windows`` and ``leave_one_out`` as to the reader."""
        lengths, users = train_length_histogram(self.manifest, leave_one_out=leave_one_out)
        return sequence_rules.count_windows(lengths, max_len, windows, weights=users)

    def steps_per_epoch(self, max_len: int, global_batch: int, windows: str = "last", *,
                        leave_one_out: bool) -> int:
        """Synchronous steps that cover every window once at the given global batch size."""
        return max(1, math.ceil(self.num_windows(max_len, windows, leave_one_out=leave_one_out) / global_batch))

    def dataset_fn(self, max_len: int, global_batch: int, *, repeat: bool = True, **kwargs):
        """A function of a ``tf.distribute.InputContext`` that gives the pipeline of one worker.

        For ``strategy.distribute_datasets_from_function`` (as ``training.fit(dataset=...)`` does):
        each worker reads its own files (see the package documentation). With ``repeat`` (the
        default) the dataset never ends: train with :meth:`steps_per_epoch`. ``kwargs`` go to
        :func:`~sasrec_tf.data.tfrecord.tfrecord_training_dataset`.
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
        for chunk in records.batch(4096).map(parse_records).as_numpy_iterator():
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
