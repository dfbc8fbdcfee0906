"""What a configuration may name, declared once and without TensorFlow: the objectives and
optimizers, the layer-norm placements, training windows, activations, initialisers, sampling
modes, repeated-target rules, and the evaluation's stages and protocols.

``SASRecConfig.validate`` checks ``loss`` and ``optimizer`` against these declarations, so a
configuration is built, checked and read back from JSON without importing TensorFlow (the
command line's help and argument errors stay fast). The TensorFlow registries,
:data:`sasrec_tf.objectives.OBJECTIVES` and :data:`sasrec_tf.optimizers.OPTIMIZERS`, are built
from them and refuse to import if an entry is missing on either side (:func:`check_registry`):
one list of names, one statement of what each needs.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

__all__ = ["OBJECTIVE_SPECS", "OPTIMIZER_SPECS", "ObjectiveSpec", "OptimizerSpec", "check_registry",
           "LAYER_NORM_PLACEMENTS", "TRAINING_WINDOWS", "FFN_ACTIVATIONS", "EMBEDDING_INITIALIZERS",
           "NEGATIVE_SAMPLING", "REPEATED_TARGETS", "STAGES", "PROTOCOLS", "TARGET_GROUPS",
           "FEATURE_FUSIONS", "COLD_NEGATIVES"]

# The layer-norm placement of each block: the paper's code, Pre-LN, Post-LN, eSASRec's LiGR.
LAYER_NORM_PLACEMENTS = ("original", "pre", "post", "ligr")
# Which windows of each training sequence are trained on: the last max_len items, or every one.
TRAINING_WINDOWS = ("last", "all")
# The point-wise FFN's inner activation: the paper's ReLU, GELU (BERT4Rec and most later models),
# SwiGLU (a swish-gated linear unit, three weight matrices; Shazeer 2020).
FFN_ACTIVATIONS = ("relu", "gelu", "swiglu")
# How the item embedding table starts: Keras' default uniform(-0.05, 0.05); Glorot-uniform (the
# paper's TF1 code); Xavier-normal (the PyTorch port and RecTools).
EMBEDDING_INITIALIZERS = ("uniform", "glorot_uniform", "xavier_normal")
# How sampled negatives are drawn, in training and in the sampled evaluation protocol.
NEGATIVE_SAMPLING = ("uniform", "popularity")
# What full ranking makes of a target already in the user's history (sasrec_tf.ranking.rules).
REPEATED_TARGETS = ("miss", "drop", "rank")
# How an item's id embedding and its pooled attribute embeddings combine (item features): none
# (the id alone, today's model), their sum, concatenation projected to d, a learned gate.
FEATURE_FUSIONS = ("none", "sum", "concat", "gate")
# What the cold loss scores a target's tower vector against (SASRecConfig.feature_cold_negatives).
COLD_NEGATIVES = ("tower", "served")
# The evaluation's stages (each user's second-to-last and last item) and protocols (full ranking
# against the whole catalogue; the paper's sampled negatives): metrics.json, the model card and
# the publish gate are keyed by these names.
STAGES = ("valid", "test")
PROTOCOLS = ("full", "sampled")
# The cold-start protocol's targets (sasrec_tf.data.cold_start), each ranked by full ranking:
# held-out items never trained on, and the rest. metrics.json and the card key them by stage.
TARGET_GROUPS = ("cold", "warm")


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """What a training objective needs from the configuration.

    Attributes:
      samples_negatives: scores ``num_negatives`` sampled negatives per position, so
        ``num_negatives`` and ``negative_sampling`` apply to it.
      logq_correction: accepts ``logq_correction`` (it samples candidates non-uniformly).
      description: one line for documentation.
    """

    samples_negatives: bool
    logq_correction: bool
    description: str


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """What an optimizer offers the configuration.

    Attributes:
      weight_decay: has a variant with decoupled weight decay, so ``weight_decay`` > 0 applies to it.
      description: one line for documentation.
    """

    weight_decay: bool
    description: str


# SASRecConfig.loss -> what it needs; the arithmetic: sasrec_tf.objectives and sasrec_tf.losses.
OBJECTIVE_SPECS: dict[str, ObjectiveSpec] = {
    "bce": ObjectiveSpec(samples_negatives=True, logq_correction=False, description=(
        "the paper's binary cross-entropy on k sampled negatives (Kang & McAuley 2018; k = 1 by default)")),
    "bpr": ObjectiveSpec(samples_negatives=True, logq_correction=False, description=(
        "Bayesian personalised ranking: -log sigmoid(positive - negative), mean over k negatives")),
    "gbce": ObjectiveSpec(samples_negatives=True, logq_correction=False, description=(
        "gSASRec's calibrated gBCE with gbce_t (Petrov & Macdonald 2023)")),
    "sampled_softmax": ObjectiveSpec(samples_negatives=True, logq_correction=True, description=(
        "softmax over the positive and k sampled negatives, optional log-q correction")),
    "inbatch_softmax": ObjectiveSpec(samples_negatives=False, logq_correction=True, description=(
        "TFRS Retrieval's loss: the batch's other targets as negatives, accidental hits removed")),
    "mixed_softmax": ObjectiveSpec(samples_negatives=True, logq_correction=True, description=(
        "Mixed Negative Sampling: the batch's targets plus k sampled items shared by the batch (Yang et al. 2020)")),
    "full_softmax": ObjectiveSpec(samples_negatives=False, logq_correction=False, description=(
        "cross-entropy over the whole catalogue (Klenitskiy & Vasilev 2023)")),
}

# SASRecConfig.optimizer -> what it offers; the classes: sasrec_tf.optimizers.
OPTIMIZER_SPECS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec(weight_decay=True, description=(
        "Adam (AdamW with weight_decay) in one fused kernel per variable, Keras' arithmetic")),
    "lazy_adam": OptimizerSpec(weight_decay=False, description=(
        "Adam that updates only the rows of a sparse gradient (TF Addons' LazyAdam); opt-in")),
    "keras_adam": OptimizerSpec(weight_decay=True, description=(
        "Keras' own Adam / AdamW: the same arithmetic, unfused (earlier runs bit for bit; speed comparisons)")),
}


def check_registry(kind: str, specs: Mapping[str, object], implemented: Mapping[str, object]) -> None:
    """Raise ``ImportError`` unless ``implemented`` has exactly the names declared in ``specs``.

    Args:
      kind: what the names are (``"objective"``, ``"optimizer"``), for the message.
      specs: the declarations of this module.
      implemented: the TensorFlow registry's entries by name.

    Raises:
      ImportError: a name is declared but not implemented, or implemented but not declared.
    """
    missing, undeclared = sorted(set(specs) - set(implemented)), sorted(set(implemented) - set(specs))
    if missing or undeclared:
        raise ImportError(f"the {kind} registry and sasrec_tf.choices disagree: declared but not implemented "
                          f"{missing}, implemented but not declared {undeclared}")
