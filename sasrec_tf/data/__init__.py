"""Data: ingestion, vocabulary, sequences and the leave-one-out split, and the tf.data pipeline."""

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest import filter_interactions, read_interactions
from sasrec_tf.data.pipeline import pad_sequences, training_dataset
from sasrec_tf.data.sequences import LeaveOneOutSplit, SequenceData, build_sequences, leave_one_out, load_dataset
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.data.vocab import ItemVocabulary

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
