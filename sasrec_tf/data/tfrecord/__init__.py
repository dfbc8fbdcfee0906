"""Sharded TFRecord files of per-user sequences, and the ``tf.data`` reader that trains on them.

For logs that do not fit in one process' memory, training reads per-user sequence records from
sharded files instead of one in-memory array. A shard directory holds::

    sequences-00000-of-00008.tfrecord   one tf.train.Example per user (see below), users in
    ...                                 contiguous index ranges, ~equal record counts per shard
    manifest.json                       counts: users, items, interactions, per-shard records,
                                        bytes and SHA-256 (checked before training:
                                        verify_shards), sequence-length histogram (gives
                                        steps per epoch)
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

The package, bottom up: :mod:`~sasrec_tf.data.tfrecord.schema` (file names, :func:`read_manifest`,
compressions: the format the others share), :mod:`~sasrec_tf.data.tfrecord.writer`
(:func:`write_shards`, the record encoding), :mod:`~sasrec_tf.data.tfrecord.reader`
(:func:`tfrecord_training_dataset`, the record parsing) and
:mod:`~sasrec_tf.data.tfrecord.verify` (:func:`verify_shards`: the files against the manifest) and
:mod:`~sasrec_tf.data.tfrecord.directory` (:class:`ShardedSequences`, which reads through the
reader). The leave-one-out, window and item-count rules they apply are those of the in-memory
pipeline, from :mod:`sasrec_tf.data.sequence_rules`.
"""

# Every public name of the submodules, so callers import them from the package.
from sasrec_tf.data.tfrecord import directory, reader, schema, verify, writer
from sasrec_tf.data.tfrecord.directory import *  # noqa: F401,F403
from sasrec_tf.data.tfrecord.reader import *  # noqa: F401,F403
from sasrec_tf.data.tfrecord.schema import *  # noqa: F401,F403
from sasrec_tf.data.tfrecord.verify import *  # noqa: F401,F403
from sasrec_tf.data.tfrecord.writer import *  # noqa: F401,F403

__all__ = [*schema.__all__, *directory.__all__, *reader.__all__, *verify.__all__, *writer.__all__]
