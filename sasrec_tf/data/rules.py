"""The old name of :mod:`sasrec_tf.data.sequence_rules` (the sequence rules every reader shares),
kept so that ``from sasrec_tf.data import rules`` and ``sasrec_tf.data.rules.item_counts`` work."""

from sasrec_tf.data import sequence_rules
from sasrec_tf.data.sequence_rules import *  # noqa: F401,F403

__all__ = list(sequence_rules.__all__)
