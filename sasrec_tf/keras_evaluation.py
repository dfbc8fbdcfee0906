"""Full-ranking validation in Keras workflows; moved to :mod:`sasrec_tf.evaluation.keras_validation`,
importable from here as before."""

from sasrec_tf.evaluation.keras_validation import QueryModel, validation_dataset

__all__ = ["QueryModel", "validation_dataset"]
