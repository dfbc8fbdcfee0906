"""The training objectives by name: how each turns one batch's tensors into a loss.

``SASRecConfig.loss`` names an entry of :data:`OBJECTIVES`. What each entry needs (sampled
negatives, log-q) is declared without TensorFlow in :data:`sasrec_tf.choices.OBJECTIVE_SPECS`,
which configuration checks read; this registry adds each one's ``compute``, and the arithmetic
of each loss lives in :mod:`sasrec_tf.losses`, where each is tested on its own.

An objective works on tensors, as TFRS's ``Retrieval`` task does, not on the model: its
``compute(batch, config, frequency)`` receives a :class:`TrainingBatch` (the encoder's output
``hidden [B, T, d]``, the next item at every position ``positives [B, T]`` (0 at padding), the
pipeline's uniform negatives ``negatives [B, T, K]``, and the prediction layer's item lookup,
scores and matrix as functions), the :class:`~sasrec_tf.config.SASRecConfig` and the model's
:class:`~sasrec_tf.item_frequency.ItemFrequency` (``None`` when the objective reads no item
frequencies), and returns ``(loss, accuracy)``: the mean loss over the batch's target positions
and the pairwise accuracy of the positive against the sampled negatives. Most objectives first
gather the ``M`` real target positions with :func:`gather_targets`, which also applies
popularity sampling and counts the training targets.

Adding an objective: a loss function in ``losses.py`` with its test, its declaration in
``choices.OBJECTIVE_SPECS``, one ``compute`` function here and its entry in ``_COMPUTE``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

from sasrec_tf import losses
from sasrec_tf.choices import OBJECTIVE_SPECS, ObjectiveSpec, check_registry
from sasrec_tf.config import SASRecConfig
from sasrec_tf.item_frequency import ItemFrequency

__all__ = ["OBJECTIVES", "Objective", "Targets", "TrainingBatch", "gather_targets", "get"]


@dataclasses.dataclass(frozen=True)
class TrainingBatch:
    """One training batch as an objective sees it: tensors, and the item table as functions.

    Attributes:
      hidden: ``[B, T, d]`` sequence representations; row ``t`` queries the item after position ``t``.
      positives: ``[B, T]`` the next item at every position, 0 at padding.
      negatives: ``[B, T, K]`` the pipeline's uniform negatives.
      item_embeddings: item ids ``[...]`` → their rows of the prediction layer's matrix ``M`` ``[..., d]``.
      score_items: ``(representations [..., d], item_ids [..., K])`` → scores ``[..., K]``.
      item_matrix: ``() -> M`` ``[num_items + 1, d]`` (row 0: padding), the whole catalogue.
      num_items: the catalogue size ``N``.
      training: a training step: its targets are counted into the item frequency.
      step: in a training step, the optimizer's ``iterations`` (it seeds popularity draws);
        ``None`` otherwise.
    """

    hidden: tf.Tensor
    positives: tf.Tensor
    negatives: tf.Tensor
    item_embeddings: Callable[[tf.Tensor], tf.Tensor]
    score_items: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    item_matrix: Callable[[], tf.Tensor]
    num_items: int
    training: bool = False
    step: tf.Variable | tf.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class Objective(ObjectiveSpec):
    """One training objective: its declaration (:class:`~sasrec_tf.choices.ObjectiveSpec`) and
    ``compute: (batch, config, frequency) -> (loss, accuracy)``."""

    compute: Callable[[TrainingBatch, SASRecConfig, ItemFrequency | None], tuple[tf.Tensor, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class Targets:
    """The ``M`` real target positions of a batch, gathered (see :func:`gather_targets`)."""

    queries: tf.Tensor  # [M, d] sequence representations
    targets: tf.Tensor  # [M] positive item ids
    positive_embeddings: tf.Tensor  # [M, d]
    positive_logits: tf.Tensor  # [M]
    negatives: tf.Tensor  # [M, K] negative item ids
    negative_logits: tf.Tensor  # [M, K]
    negative_mask: tf.Tensor | None  # [M, K] False where a (popularity) negative equals the positive

    def accuracy(self) -> tf.Tensor:
        return losses.pairwise_accuracy(self.positive_logits, self.negative_logits, None)


def gather_targets(batch: TrainingBatch, config: SASRecConfig, frequency: ItemFrequency | None) -> Targets:
    """Gather the real target positions and score their positives and negatives.

    With ``negative_sampling="popularity"`` the pipeline's uniform negatives are replaced by
    draws from ``frequency``; in a training step, the targets are added to ``frequency`` (if it
    counts them: see ``SASRec.set_item_counts``).
    """
    mask = tf.not_equal(batch.positives, 0)
    queries = tf.boolean_mask(batch.hidden, mask)  # [M, d]
    targets = tf.boolean_mask(batch.positives, mask)  # [M]
    negatives = tf.boolean_mask(batch.negatives, mask)  # [M, K]
    negative_mask = None
    if config.negative_sampling == "popularity":
        negatives = frequency.sample_negatives(targets, config.num_negatives, batch.step)
        negative_mask = tf.not_equal(negatives, targets[:, tf.newaxis])
    if batch.training and frequency is not None:
        frequency.count(targets)
    positive_embeddings = batch.item_embeddings(targets)
    return Targets(
        queries=queries,
        targets=targets,
        positive_embeddings=positive_embeddings,
        positive_logits=tf.reduce_sum(queries * positive_embeddings, axis=-1),
        negatives=negatives,
        negative_logits=batch.score_items(queries, negatives),
        negative_mask=negative_mask,
    )


def _bce(batch, config, frequency):
    if config.negative_sampling == "uniform":
        # The paper's objective on the padded batch as it comes (no gather): the fast path.
        mask = tf.not_equal(batch.positives, 0)
        positive_logits = tf.reduce_sum(batch.hidden * batch.item_embeddings(batch.positives), axis=-1)
        negative_logits = batch.score_items(batch.hidden, batch.negatives)
        return (losses.sampled_binary_crossentropy(positive_logits, negative_logits, mask),
                losses.pairwise_accuracy(positive_logits, negative_logits, mask))
    t = gather_targets(batch, config, frequency)
    return losses.sampled_binary_crossentropy(t.positive_logits, t.negative_logits, None, t.negative_mask), t.accuracy()


def _bpr(batch, config, frequency):
    t = gather_targets(batch, config, frequency)
    return losses.bpr(t.positive_logits, t.negative_logits, None, t.negative_mask), t.accuracy()


def _gbce(batch, config, frequency):
    beta = losses.gbce_beta(config.num_negatives, batch.num_items, config.gbce_t)
    t = gather_targets(batch, config, frequency)
    loss = losses.generalized_binary_crossentropy(t.positive_logits, t.negative_logits, None, beta, t.negative_mask)
    return loss, t.accuracy()


def _sampled_softmax(batch, config, frequency):
    t = gather_targets(batch, config, frequency)
    positive_log_q = negative_log_q = None
    if config.logq_correction:
        log_q = frequency.log_sampling_probabilities()
        positive_log_q, negative_log_q = tf.gather(log_q, t.targets), tf.gather(log_q, t.negatives)
    loss = losses.sampled_softmax_crossentropy(t.positive_logits, t.negative_logits, None, t.negative_mask,
                                               positive_log_q, negative_log_q)
    return loss, t.accuracy()


def _inbatch_softmax(batch, config, frequency):
    t = gather_targets(batch, config, frequency)
    probabilities = None
    if config.logq_correction:
        probabilities = tf.exp(tf.gather(frequency.log_sampling_probabilities(), t.targets))
    loss = losses.inbatch_softmax_crossentropy(t.queries, t.positive_embeddings, t.targets, probabilities)
    return loss, t.accuracy()


def _mixed_softmax(batch, config, frequency):
    t = gather_targets(batch, config, frequency)
    # The k items shared by the batch: the first target position's draws (the pipeline's uniform
    # ones, or popularity draws), fresh every batch; none when the batch has no target.
    negative_ids = tf.reshape(t.negatives[:1], [-1])
    positive_log_q = negative_log_q = None
    if config.logq_correction:
        log_q = frequency.log_sampling_probabilities()
        positive_log_q = tf.gather(log_q, t.targets)
        if config.negative_sampling == "popularity":
            negative_log_q = tf.gather(log_q, negative_ids)
        else:
            negative_log_q = tf.fill(tf.shape(negative_ids), -tf.math.log(tf.cast(batch.num_items, log_q.dtype)))
    loss = losses.mixed_softmax_crossentropy(t.queries, t.positive_embeddings, t.targets,
                                             batch.item_embeddings(negative_ids), negative_ids,
                                             positive_log_q, negative_log_q)
    return loss, t.accuracy()


def _full_softmax(batch, config, frequency):
    t = gather_targets(batch, config, frequency)
    if config.softmax_chunk_size is not None:
        loss = losses.chunked_full_softmax_crossentropy(t.queries, batch.item_matrix(), t.targets,
                                                        config.softmax_chunk_size)
        return loss, t.accuracy()
    logits = tf.matmul(t.queries, batch.item_matrix(), transpose_b=True)  # [M, N + 1]
    return losses.full_softmax_crossentropy(logits, t.targets), t.accuracy()


_COMPUTE = {
    "bce": _bce,
    "bpr": _bpr,
    "gbce": _gbce,
    "sampled_softmax": _sampled_softmax,
    "inbatch_softmax": _inbatch_softmax,
    "mixed_softmax": _mixed_softmax,
    "full_softmax": _full_softmax,
}
check_registry("objective", OBJECTIVE_SPECS, _COMPUTE)

# SASRecConfig.loss -> Objective, in the declarations' order.
OBJECTIVES: dict[str, Objective] = {
    name: Objective(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}, compute=_COMPUTE[name])
    for name, spec in OBJECTIVE_SPECS.items()
}


def get(name: str) -> Objective:
    """The objective called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {tuple(OBJECTIVES)}") from None
