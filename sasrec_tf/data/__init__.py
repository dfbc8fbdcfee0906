"""Data: ingestion, vocabulary, sequences and the leave-one-out split, and the tf.data pipeline.

``import sasrec_tf.data`` (and its TFRecord schema, writer and shard directory) does not import
TensorFlow: the tf.data pipeline's names, :func:`pad_sequences` and :func:`training_dataset`, are
imported from :mod:`sasrec_tf.data.pipeline` on first access (PEP 562).
"""

from sasrec_tf._lazy import lazy_exports

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest import filter_interactions, read_interactions
from sasrec_tf.data.sequences import LeaveOneOutSplit, SequenceData, build_sequences, leave_one_out, load_dataset
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.data.vocab import ItemVocabulary

# Public name -> the module that defines it, imported on first access (it imports TensorFlow).
_LAZY = {
    "pad_sequences": "sasrec_tf.data.pipeline",
    "training_dataset": "sasrec_tf.data.pipeline",
}

__all__ = [
    "DataError",
    "ItemVocabulary",
    "LeaveOneOutSplit",
    "SequenceData",
    "build_sequences",
    "filter_interactions",
    "generate_interactions",
    "leave_one_out",
    "load_dataset",
    "pad_sequences",
    "read_interactions",
    "training_dataset",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
