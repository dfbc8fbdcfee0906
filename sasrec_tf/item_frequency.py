"""The training-target frequency of every item: the popularity distribution that popularity
negatives are drawn from and that log-q correction subtracts.

A :class:`SASRec` whose objective needs it (``negative_sampling="popularity"`` or
``logq_correction``) owns one, ``model.item_frequency``, and hands it to its objective with each
batch (:mod:`sasrec_tf.objectives`). It is a view over the model's ``target_counts`` weight: the
counts are saved with the model and its checkpoints under the name they always had.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["ItemFrequency"]


class ItemFrequency:
    """Item counts ``[num_items + 1]`` (id 0: padding) that start at one (add-one smoothing) and
    grow with the training targets, or are set from the data (:meth:`set_counts`).

    Args:
      counts: the float32 variable holding the counts (the model's ``target_counts``), ones to
        start with.
      seed: the seed of the popularity draws (with the training step, so every step draws anew
        and a rerun draws the same).
      counting: whether :meth:`count` adds training targets to the counts.
    """

    def __init__(self, counts: tf.Variable, *, seed: int, counting: bool = True):
        self.counts = counts
        self.seed = int(seed)
        self.counting = bool(counting)

    @property
    def num_items(self) -> int:
        return int(self.counts.shape[0]) - 1

    def set_counts(self, counts, *, keep_counting: bool = False) -> None:
        """Use these training-target frequencies instead of counting them while training.

        Args:
          counts: ``[num_items + 1]`` counts (e.g.
            :func:`sasrec_tf.evaluation.training_item_counts`); one is added to each, so items never
            seen stay possible.
          keep_counting: still add the training targets to them.

        Raises:
          ValueError: ``counts`` has another shape.
        """
        counts = tf.convert_to_tensor(counts, tf.float32)
        if counts.shape != (self.num_items + 1,):
            raise ValueError(f"counts must have shape ({self.num_items + 1},), got {counts.shape}")
        self.counts.assign(counts + 1.0)  # add-one smoothing: unseen items stay possible
        self.counting = bool(keep_counting)

    def log_sampling_probabilities(self) -> tf.Tensor:
        """``[num_items + 1]`` log-probability of each id under the popularity distribution (-inf at 0)."""
        counts = tf.tensor_scatter_nd_update(self.counts, [[0]], [0.0])
        return tf.math.log(counts / tf.reduce_sum(counts))

    def sample_negatives(self, targets: tf.Tensor, num_negatives: int, step=None) -> tf.Tensor:
        """``[M, num_negatives]`` item ids drawn by popularity for ``targets [M]`` (a draw may equal
        its target: the objectives mask those).

        Args:
          targets: the batch's target ids ``[M]`` (their number sets the number of rows).
          num_negatives: draws per target.
          step: the training step (the optimizer's ``iterations``) seeding the draws; ``None``
            (outside training) seeds them with step 0.
        """
        step = tf.constant(0, tf.int64) if step is None else step
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        draws = tf.random.stateless_categorical(
            self.log_sampling_probabilities()[tf.newaxis], tf.size(targets) * num_negatives, seed, dtype=tf.int32
        )
        return tf.reshape(draws, [-1, num_negatives])

    def count(self, targets: tf.Tensor) -> None:
        """Add a training batch's ``targets [M]`` to the counts, if this frequency counts them."""
        if self.counting:
            # Dense add (not scatter): sums correctly across replicas under tf.distribute.
            self.counts.assign_add(
                tf.math.bincount(targets, minlength=self.num_items + 1, maxlength=self.num_items + 1,
                                 dtype=tf.float32)
            )
