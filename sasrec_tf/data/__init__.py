"""Data: ingestion, vocabulary, sequences and the leave-one-out split, and the tf.data pipeline."""

from sasrec_tf.data.pipeline import pad_sequences, training_dataset
from sasrec_tf.data.synthetic import generate_interactions

__all__ = ["pad_sequences", "training_dataset", "generate_interactions"]
