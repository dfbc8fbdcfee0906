"""The most-popular baseline; moved to :mod:`sasrec_tf.evaluation.baselines`, importable from here as before."""

from sasrec_tf.evaluation.baselines import MostPopular

__all__ = ["MostPopular"]
