"""The training objectives by name: what each one needs and how it turns a batch into a loss.

``SASRecConfig.loss`` names an entry of :data:`OBJECTIVES`. Configuration checks, the model's
training step and the CLI's help all read this one registry; the arithmetic of each loss lives in
:mod:`sasrec_tf.losses`, where each is tested on its own.

An objective's ``compute(model, hidden, positives, negatives, training)`` receives the model
(whose ``_output_embedding``, ``score_items``, ``item_embeddings`` and item-frequency methods it
may use: this module is the model's loss half, kept apart so that each entry stays small), the encoder's
output ``hidden [B, T, d]``, the next item at every position ``positives [B, T]`` (0 at padding)
and the pipeline's uniform negatives ``negatives [B, T, K]``, and returns ``(loss, accuracy)``:
the mean loss over the batch's target positions and the pairwise accuracy of the positive
against the sampled negatives. Most objectives first gather the ``M`` real target positions with
:func:`gather_targets`, which also applies popularity sampling and counts targets for log-q.

Adding an objective: a loss function in ``losses.py`` with its test, one ``compute`` function
here and one :data:`OBJECTIVES` entry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import tensorflow as tf

from sasrec_tf import losses


@dataclasses.dataclass(frozen=True)
class Objective:
    """One training objective.

    Attributes:
      compute: ``(model, hidden, positives, negatives, training) -> (loss, accuracy)``.
      samples_negatives: scores ``num_negatives`` sampled negatives per position, so
        ``num_negatives`` and ``negative_sampling`` apply to it.
      logq_correction: accepts ``logq_correction`` (it samples candidates non-uniformly).
      description: one line for documentation and ``--help``.
    """

    compute: Callable[..., tuple[tf.Tensor, tf.Tensor]]
    samples_negatives: bool
    logq_correction: bool
    description: str


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


def gather_targets(model: Any, hidden, positives, negatives, training) -> Targets:
    """Gather the real target positions and score their positives and negatives.

    With ``negative_sampling="popularity"`` the pipeline's uniform negatives are replaced by
    draws from the model's target frequencies; while training, the model counts targets if its
    objective reads item frequencies (see ``SASRec.set_item_counts``).
    """
    mask = tf.not_equal(positives, 0)
    queries = tf.boolean_mask(hidden, mask)  # [M, d]
    targets = tf.boolean_mask(positives, mask)  # [M]
    negatives = tf.boolean_mask(negatives, mask)  # [M, K]
    negative_mask = None
    if model.config.negative_sampling == "popularity":
        negatives = model._sample_popular_negatives(targets, training)
        negative_mask = tf.not_equal(negatives, targets[:, tf.newaxis])
    if training:
        model._count_training_targets(targets)
    positive_embeddings = model._output_embedding(targets)
    return Targets(
        queries=queries,
        targets=targets,
        positive_embeddings=positive_embeddings,
        positive_logits=tf.reduce_sum(queries * positive_embeddings, axis=-1),
        negatives=negatives,
        negative_logits=model.score_items(queries, negatives),
        negative_mask=negative_mask,
    )


def _bce(model, hidden, positives, negatives, training):
    if model.config.negative_sampling == "uniform":
        # The paper's objective on the padded batch as it comes (no gather): the fast path.
        mask = tf.not_equal(positives, 0)
        positive_logits = tf.reduce_sum(hidden * model._output_embedding(positives), axis=-1)
        negative_logits = model.score_items(hidden, negatives)
        return (losses.sampled_binary_crossentropy(positive_logits, negative_logits, mask),
                losses.pairwise_accuracy(positive_logits, negative_logits, mask))
    t = gather_targets(model, hidden, positives, negatives, training)
    return losses.sampled_binary_crossentropy(t.positive_logits, t.negative_logits, None, t.negative_mask), t.accuracy()


def _bpr(model, hidden, positives, negatives, training):
    t = gather_targets(model, hidden, positives, negatives, training)
    return losses.bpr(t.positive_logits, t.negative_logits, None, t.negative_mask), t.accuracy()


def _gbce(model, hidden, positives, negatives, training):
    config = model.config
    beta = losses.gbce_beta(config.num_negatives, model.num_items, config.gbce_t)
    t = gather_targets(model, hidden, positives, negatives, training)
    loss = losses.generalized_binary_crossentropy(t.positive_logits, t.negative_logits, None, beta, t.negative_mask)
    return loss, t.accuracy()


def _sampled_softmax(model, hidden, positives, negatives, training):
    t = gather_targets(model, hidden, positives, negatives, training)
    positive_log_q = negative_log_q = None
    if model.config.logq_correction:
        log_q = model._log_sampling_probabilities()
        positive_log_q, negative_log_q = tf.gather(log_q, t.targets), tf.gather(log_q, t.negatives)
    loss = losses.sampled_softmax_crossentropy(t.positive_logits, t.negative_logits, None, t.negative_mask,
                                               positive_log_q, negative_log_q)
    return loss, t.accuracy()


def _inbatch_softmax(model, hidden, positives, negatives, training):
    t = gather_targets(model, hidden, positives, negatives, training)
    probabilities = None
    if model.config.logq_correction:
        probabilities = tf.exp(tf.gather(model._log_sampling_probabilities(), t.targets))
    loss = losses.inbatch_softmax_crossentropy(t.queries, t.positive_embeddings, t.targets, probabilities)
    return loss, t.accuracy()


def _full_softmax(model, hidden, positives, negatives, training):
    t = gather_targets(model, hidden, positives, negatives, training)
    logits = tf.matmul(t.queries, model.item_embeddings(), transpose_b=True)  # [M, N + 1]
    return losses.full_softmax_crossentropy(logits, t.targets), t.accuracy()


OBJECTIVES: dict[str, Objective] = {
    "bce": Objective(_bce, samples_negatives=True, logq_correction=False, description=(
        "the paper's binary cross-entropy on k sampled negatives (Kang & McAuley 2018; k = 1 by default)")),
    "bpr": Objective(_bpr, samples_negatives=True, logq_correction=False, description=(
        "Bayesian personalised ranking: -log sigmoid(positive - negative), mean over k negatives")),
    "gbce": Objective(_gbce, samples_negatives=True, logq_correction=False, description=(
        "gSASRec's calibrated gBCE with gbce_t (Petrov & Macdonald 2023)")),
    "sampled_softmax": Objective(_sampled_softmax, samples_negatives=True, logq_correction=True, description=(
        "softmax over the positive and k sampled negatives, optional log-q correction")),
    "inbatch_softmax": Objective(_inbatch_softmax, samples_negatives=False, logq_correction=True, description=(
        "TFRS Retrieval's loss: the batch's other targets as negatives, accidental hits removed")),
    "full_softmax": Objective(_full_softmax, samples_negatives=False, logq_correction=False, description=(
        "cross-entropy over the whole catalogue (Klenitskiy & Vasilev 2023)")),
}


def get(name: str) -> Objective:
    """The objective called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {tuple(OBJECTIVES)}") from None


def describe() -> str:
    """One line per objective, for ``--help`` texts."""
    return "\n".join(f"{name}: {objective.description}" for name, objective in OBJECTIVES.items())
