"""Hyperparameters of SASRec and its training, with the paper's names and defaults."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

# The named choices a configuration may take are declared in sasrec_tf.choices, and the generic
# option parsing lives in sasrec_tf.options; both are re-exported here, where they were first.
from sasrec_tf.choices import (COLD_NEGATIVES, EMBEDDING_INITIALIZERS, FEATURE_FUSIONS, FFN_ACTIVATIONS, LAYER_NORM_PLACEMENTS,  # noqa: F401
                               NEGATIVE_SAMPLING, OBJECTIVE_SPECS, OPTIMIZER_SPECS, REPEATED_TARGETS,
                               TRAINING_WINDOWS)
from sasrec_tf.files import atomic_write_text
from sasrec_tf.options import OptionError, _from_text, check_option_types, option_types, parse_option  # noqa: F401


@dataclasses.dataclass
class SASRecConfig:
    """Everything needed to rebuild and retrain a SASRec model.

    Defaults follow the reference implementation of Kang & McAuley (2018) (``main.py``: ``maxlen``
    50, ``hidden_units`` 50, 2 blocks, 1 head, dropout 0.5, ``l2_emb`` 0, Adam lr 1e-3, batch 128).
    The paper used dropout 0.2 and ``max_len`` 200 on dense data (MovieLens-1M).

    Ablations of the paper's Table IV are switches, not forks: ``use_positional_embedding``,
    ``share_item_embedding``, ``use_residual``, ``dropout_rate=0``, ``num_blocks`` 0..n,
    ``num_heads``, ``use_user_embedding``.

    ``loss`` names the training objective, an entry of :data:`sasrec_tf.choices.OBJECTIVE_SPECS`
    (computed by :data:`sasrec_tf.objectives.OBJECTIVES`: ``bce``, the paper's and the default; ``gbce`` with ``gbce_t``; ``sampled_softmax``;
    ``inbatch_softmax``; ``mixed_softmax``, in-batch targets plus ``num_negatives`` shared sampled items;
    ``full_softmax``). ``num_negatives`` is ``k`` for those that sample
    negatives, drawn ``"uniform"`` or by ``"popularity"`` (``negative_sampling``);
    ``logq_correction`` applies to the softmax objectives over sampled candidates.
    ``softmax_chunk_size`` makes ``full_softmax`` score the catalogue in chunks of that many items
    (:func:`sasrec_tf.losses.chunked_full_softmax_crossentropy`): the same loss and gradients,
    without the ``[positions, N + 1]`` logits; ``None`` (the default) materialises them.

    ``optimizer`` names an entry of :data:`sasrec_tf.choices.OPTIMIZER_SPECS` (Adam in a fused
    kernel by default) with ``learning_rate``, ``beta_1``, ``beta_2`` and ``epsilon`` (the
    reference code's Adam: ``beta_2`` 0.98); ``weight_decay`` > 0 selects its variant with
    decoupled weight decay (AdamW), not applied to biases or LayerNorm parameters.

    ``layer_norm`` places LayerNorm inside each block:
      * ``"original"`` -- the reference code: the attention query and the FFN input are normalised,
        the residual adds the normalised tensor, and a final LayerNorm follows the last block;
      * ``"pre"`` -- Pre-LN, ``x + f(LN(x))``, final LayerNorm;
      * ``"post"`` -- Post-LN (Vaswani et al.), ``LN(x + f(x))``;
      * ``"ligr"`` -- Pre-LN with gated residuals (LiGR, as in eSASRec):
        ``x + sigmoid(W x + b) * dropout(f(LN(x)))`` for attention and FFN, final LayerNorm.

    ``frequency_mixing`` ``alpha`` > 0 mixes BSARec's frequency filter into every block's attention
    sub-layer, ``alpha * filter + (1 - alpha) * attention``; the filter keeps the
    ``frequency_cutoff // 2 + 1`` lowest frequencies of a ``max_len`` window and rescales the
    rest by a learned ``beta^2``. BSARec's rFFT spans the whole window (non-causal, so it trains
    on the last position only); here each position gets BSARec's value for the window ending at
    it (:class:`sasrec_tf.layers.CausalFrequencyFilter`), causal and padding invariant. BSARec's
    Beauty setting is ``alpha`` 0.7, ``c`` 5.

    ``time_variant_mixing`` ``beta`` > 0 mixes TV-Rec's time-variant filter into every block's
    attention sub-layer after the frequency filter, ``beta * tv + (1 - beta) * (what came
    before)``: ``y[t] = sum_k w[p(t), k] x[t - k]`` over ``time_variant_taps`` lags (``None``:
    ``max_len``), with weights of rank ``time_variant_bases`` (TV-Rec's ``M``; 0: a full
    ``[max_len, taps]`` table) chosen by ``p(t)``, the number of items before ``t`` in the window
    (TV-Rec counts from the window's end; counting from the first item keeps it causal and
    padding invariant, :class:`sasrec_tf.layers.CausalTimeVariantFilter`). TV-Rec's Beauty
    setting is ``M`` 32 with the filter alone (``beta`` 1, no positional embedding).

    ``wavelet_mixing`` ``gamma`` > 0 mixes WEARec's layer into every block's attention sub-layer
    last, ``gamma * wearec + (1 - gamma) * (what came before)``: ``(1 - a) * haar(x) + a * dff(x)``
    with ``a`` = ``wavelet_frequency_weight``, a Haar smoothing of the most recent items with
    learned detail weights (``wavelet_levels`` deep; WEARec's is one level) and a frequency filter
    of the ``max_len`` window whose per-bin gains and offsets an MLP computes from the user's
    context, per group of ``hidden_units / wavelet_heads`` channels. WEARec's transforms span the
    window (non-causal, so it trains on the last position only); here each position gets WEARec's
    value at the last position of the window ending at it, its context being the mean of the real
    items so far (:class:`sasrec_tf.layers.CausalWaveletFilter`): causal and padding invariant.
    WEARec's Beauty setting is ``a`` 0.2 with 8 heads and the layer alone (``gamma`` 1).

    ``ffn_units`` and ``ffn_activation`` shape the point-wise feed-forward network: the paper's is
    ``d -> d`` with ReLU (``None``, ``"relu"``); later models (BERT4Rec, DuoRec, gSASRec) use a
    ``4d`` inner layer with GELU; ``"swiglu"`` gates the inner layer,
    ``swish(x W_gate) * (x W_up)`` (LLaMA's FFN), with one more ``d x ffn_units`` matrix.

    ``fused_attention`` computes each block's attention with plain matmuls (queries, keys and
    values from one concatenated kernel where they share an input) on ``MultiHeadAttention``'s own
    variables: the same outputs to float rounding, and checkpoints or saved models from either
    setting load in the other (:class:`sasrec_tf.layers.CausalSelfAttentionBlock`). On by default
    since it trains 1.15x faster and serves ~2x faster at batch 1 with equal per-epoch quality
    (parity benchmark, two logs, two seeds, ``docs/results.md``); ``False`` is the layer's own
    ``MultiHeadAttention`` call.

    The item embedding: ``scale_item_embedding`` multiplies it by ``sqrt(hidden_units)`` at the
    input (the paper's code; RecTools does not), ``embedding_initializer`` is one of
    :data:`EMBEDDING_INITIALIZERS`, and ``item_dropout_rate`` > 0 drops entries of the whole item
    table once per training step, one mask shared by the input and the prediction layer (RecTools
    0.13's ``IdEmbeddingsItemNet``, which the eSASRec benchmark ran): a regulariser of the
    catalogue-sized table that softmax objectives otherwise overfit within a few epochs.

    ``feature_fusion`` combines each item's id embedding with the mean of its attribute embeddings
    (item features, :class:`sasrec_tf.layers.ItemRepresentation`), in the input and the prediction
    layer alike: ``"none"`` (the default) is the id-only model; ``"sum"``, ``"concat"``
    (concatenation projected to ``hidden_units``) and ``"gate"`` (a learned gate) need item
    features; an item never trained on is represented by its features alone.
    ``feature_id_dropout`` drops the id part of an item in a training lookup with that
    probability (DropoutNet), so the model also learns to score items from their features alone;
    ``feature_id_dropout_count`` ``c`` > 0 makes that probability frequency-aware: an item that
    occurs ``n`` times in the training sequences is dropped with
    ``feature_id_dropout * max(0, 1 - n / c)``, so frequent items keep their id and rare ones
    learn to rely on their features (0: every item with ``feature_id_dropout``, as before).
    ``feature_cold_tower`` represents an item without its id part (cold, or id-dropped in
    training) by a second, separate mean of attribute embeddings instead of the fusion's own
    attribute part, so warm and cold vectors are learned apart (``ItemRepresentation``'s
    ``cold_tower``; measured in docs/results.md, "Item features and cold-start items").
    ``feature_cold_loss_weight`` ``w`` > 0 (needs the tower) adds ``w`` times the same objective
    with every candidate item scored by its tower vector (the queries held fixed in it): the tower
    then learns as a prediction layer from every training target, not only from the id-dropped
    lookups, and the rest of the model only from the main objective. ``feature_cold_negatives``
    says what the tower's vectors compete with there: ``"tower"`` (the default) only each other;
    ``"served"`` (``loss="inbatch_softmax"``) the batch's items as they are served, each by its
    trained vector (held fixed) and by its tower vector, a target's tower vector and its trained
    vector each against both kinds (:func:`sasrec_tf.losses.served_inbatch_softmax_crossentropy`);
    ``feature_cold_warm_weight`` weighs the second of these (warm targets must not lose to tower
    vectors) against the first: higher keeps warm rankings, lower lets cold items in more often.
    ``feature_cold_score_offset`` ``o`` >= 0 lowers the score of every item without a trained id
    row (a held-out cold item, or one added by ``sasrec-tf add-items``) by ``o`` wherever items are
    ranked (evaluation, recommendations, the export's signatures), never in the training loss: the
    exposure knob for new items, set without retraining (``sasrec-tf export --cold-score-offset``;
    the cold-start protocol's table of offsets on validation helps choose it; 0: cold items are
    ranked by their feature vectors as they are).

    ``contrastive_weight`` > 0 adds an auxiliary InfoNCE term (DuoRec / CL4SRec family): each
    training window is encoded twice under independent dropout, and the two last-position
    representations of a window are pulled together and pushed from the other windows of the
    batch, except windows with the same next item (:func:`sasrec_tf.losses.contrastive_infonce`,
    dot product over ``contrastive_temperature``). It costs a second encoder pass per step.

    ``bucket_by_length`` (default on) batches training windows of similar length and cuts each
    batch to its longest window: 2-3x faster on sparse data. It optimises the same objective as
    random batches because each batch holds about as many targets as a random batch of
    ``batch_size`` windows (more rows when they are short, fewer when long) and the loss is
    normalised by that expected number, not by the batch's own count (see
    :mod:`sasrec_tf.data.pipeline`; per-epoch quality beside
    unbucketed training and the PyTorch reference: docs/results.md, "Paper parity"). Turn it
    off for the reference code's fixed-width batches.
    """

    # Architecture.
    max_len: int = 50
    hidden_units: int = 50
    num_blocks: int = 2
    num_heads: int = 1
    dropout_rate: float = 0.5
    l2_emb: float = 0.0
    layer_norm: str = "original"
    use_positional_embedding: bool = True
    share_item_embedding: bool = True
    use_residual: bool = True
    use_user_embedding: bool = False
    ffn_units: int | None = None  # inner width of the point-wise FFN; None = hidden_units (the paper)
    ffn_activation: str = "relu"  # "relu" (the paper), "gelu" (BERT4Rec and most later models) or "swiglu"
    frequency_mixing: float = 0.0  # BSARec's alpha: weight of the frequency filter beside attention
    frequency_cutoff: int = 5  # BSARec's c: the filter keeps the c // 2 + 1 lowest frequencies
    time_variant_mixing: float = 0.0  # TV-Rec's filter beside attention (and the frequency filter); 0: none
    time_variant_taps: int | None = None  # TV-Rec's filter: lags read; None = max_len (every lag)
    time_variant_bases: int = 32  # TV-Rec's M: rank of the filter's position x lag weights; 0 = full table
    wavelet_mixing: float = 0.0  # WEARec's layer beside attention (and the filters above); 0: none
    wavelet_frequency_weight: float = 0.2  # WEARec's alpha: its frequency filter's share against its Haar part
    wavelet_heads: int = 1  # WEARec's num_heads: channel groups sharing one frequency filter (divides hidden_units)
    wavelet_levels: int = 1  # Haar levels of WEARec's wavelet part (WEARec: 1)
    fused_attention: bool = True  # attention as plain matmuls on MultiHeadAttention's weights (same outputs)
    scale_item_embedding: bool = True  # input item embeddings x sqrt(hidden_units), as the paper's code
    embedding_initializer: str = "uniform"
    item_dropout_rate: float = 0.0  # dropout on the item table, shared by input and output (RecTools)
    feature_fusion: str = "none"  # item features: none (ids only, the paper), sum, concat or gate
    feature_id_dropout: float = 0.5  # item features: P(a training lookup drops the id part), for cold items
    feature_id_dropout_count: int = 0  # > 0: item i dropped with feature_id_dropout * max(0, 1 - count_i / this)
    feature_cold_tower: bool = False  # id-less items (cold, id-dropped) from their own attribute embedding
    feature_cold_loss_weight: float = 0.0  # > 0: + this x the objective scored on the tower's vectors
    feature_cold_negatives: str = "tower"  # the cold objective's candidates: tower vectors, or served (both kinds)
    feature_cold_warm_weight: float = 1.0  # served: the weight of its warm-target term against the cold one
    feature_cold_score_offset: float = 0.0  # ranking only: cold items' scores lowered by this (new-item exposure)
    # Training.
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay (not on biases or LayerNorm)
    optimizer: str = "adam"  # an entry of sasrec_tf.choices.OPTIMIZER_SPECS ("lazy_adam": row-sparse)
    beta_1: float = 0.9  # Adam's first-moment decay: the reference code's (TF1's default)
    beta_2: float = 0.98  # Adam's second-moment decay: the reference code's 0.98, not Adam's usual 0.999
    epsilon: float = 1e-7  # Adam's epsilon: Keras' default (the TF1 reference and PyTorch use 1e-8)
    batch_size: int = 128
    epochs: int = 200
    num_negatives: int = 1
    training_windows: str = "last"
    exclude_history_negatives: bool = False
    bucket_by_length: bool = True
    seed: int = 42
    # Training objective (sasrec_tf.losses): "bce" with 1 negative is the paper's.
    loss: str = "bce"
    gbce_t: float = 0.75  # gBCE calibration t in [0, 1]: 0 = plain BCE, 1 = fully calibrated
    negative_sampling: str = "uniform"  # or "popularity" (training-target frequencies)
    logq_correction: bool = False  # subtract log of the sampling probability (softmax objectives)
    softmax_chunk_size: int | None = None  # full_softmax: items scored at once; None = all (one [M, N + 1])
    contrastive_weight: float = 0.0  # > 0: weight of the auxiliary InfoNCE between two dropout views
    contrastive_temperature: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OptionError` (a ``ValueError``) naming the first invalid field: a value of
        the wrong type (``"0.2"`` for a number, ``"False"`` for a boolean), out of range, or not
        finite."""
        check_option_types(self)
        positive = ("max_len", "hidden_units", "num_heads", "batch_size", "epochs", "num_negatives")
        for name in positive:
            if getattr(self, name) < 1:
                raise OptionError(name, f"SASRecConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.num_blocks < 0:
            raise OptionError("num_blocks", f"SASRecConfig.num_blocks must be >= 0, got {self.num_blocks!r}")
        if not 0 <= self.seed < 2**32:  # what Keras' and NumPy's seeding accept
            raise OptionError("seed", f"SASRecConfig.seed must be an integer in 0..{2**32 - 1}, got {self.seed!r}")
        # Comparisons are false for NaN, so each range is written to fail for it (and for infinity).
        if not 0.0 <= self.dropout_rate < 1.0:
            raise OptionError("dropout_rate", f"SASRecConfig.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if not (math.isfinite(self.contrastive_weight) and self.contrastive_weight >= 0):
            raise OptionError("contrastive_weight",
                              f"SASRecConfig.contrastive_weight must be a finite number >= 0, got {self.contrastive_weight!r}")
        if not (math.isfinite(self.contrastive_temperature) and self.contrastive_temperature > 0):
            raise OptionError("contrastive_temperature", "SASRecConfig.contrastive_temperature must be a finite "
                              f"number > 0, got {self.contrastive_temperature!r}")
        if not 0.0 <= self.frequency_mixing <= 1.0:
            raise OptionError("frequency_mixing",
                              f"SASRecConfig.frequency_mixing must be in [0, 1], got {self.frequency_mixing!r}")
        if self.frequency_cutoff < 1:
            raise OptionError("frequency_cutoff",
                              f"SASRecConfig.frequency_cutoff must be a positive integer, got {self.frequency_cutoff!r}")
        if not 0.0 <= self.time_variant_mixing <= 1.0:
            raise OptionError("time_variant_mixing",
                              f"SASRecConfig.time_variant_mixing must be in [0, 1], got {self.time_variant_mixing!r}")
        if self.time_variant_taps is not None and not 1 <= self.time_variant_taps <= self.max_len:
            raise OptionError("time_variant_taps", "SASRecConfig.time_variant_taps must be None or an integer in "
                              f"1..max_len ({self.max_len}), got {self.time_variant_taps!r}")
        if self.time_variant_bases < 0:
            raise OptionError("time_variant_bases", "SASRecConfig.time_variant_bases must be an integer >= 0, "
                              f"got {self.time_variant_bases!r}")
        if not 0.0 <= self.wavelet_mixing <= 1.0:
            raise OptionError("wavelet_mixing",
                              f"SASRecConfig.wavelet_mixing must be in [0, 1], got {self.wavelet_mixing!r}")
        if not 0.0 <= self.wavelet_frequency_weight <= 1.0:
            raise OptionError("wavelet_frequency_weight", "SASRecConfig.wavelet_frequency_weight must be in [0, 1], "
                              f"got {self.wavelet_frequency_weight!r}")
        if self.wavelet_heads < 1 or (self.wavelet_mixing > 0 and self.hidden_units % self.wavelet_heads):
            raise OptionError("wavelet_heads", "SASRecConfig.wavelet_heads must be a positive integer dividing "
                              f"hidden_units ({self.hidden_units}), got {self.wavelet_heads!r}")
        if not 1 <= self.wavelet_levels <= self.max_len.bit_length() - 1:  # 2 ** levels <= max_len
            raise OptionError("wavelet_levels", "SASRecConfig.wavelet_levels must be a positive integer with "
                              f"2 ** wavelet_levels <= max_len ({self.max_len}), got {self.wavelet_levels!r}")
        if not 0.0 <= self.feature_id_dropout < 1.0:
            raise OptionError("feature_id_dropout",
                              f"SASRecConfig.feature_id_dropout must be in [0, 1), got {self.feature_id_dropout!r}")
        if self.feature_id_dropout_count < 0:
            raise OptionError("feature_id_dropout_count", "SASRecConfig.feature_id_dropout_count must be an integer "
                              f">= 0 (training-target count), got {self.feature_id_dropout_count!r}")
        if not (math.isfinite(self.feature_cold_loss_weight) and self.feature_cold_loss_weight >= 0):
            raise OptionError("feature_cold_loss_weight", "SASRecConfig.feature_cold_loss_weight must be a finite "
                              f"number >= 0, got {self.feature_cold_loss_weight!r}")
        if self.feature_cold_loss_weight > 0 and not self.feature_cold_tower:
            raise OptionError("feature_cold_loss_weight", "SASRecConfig.feature_cold_loss_weight > 0 trains the "
                              "cold tower: set feature_cold_tower=true")
        if self.feature_cold_negatives not in COLD_NEGATIVES:
            raise OptionError("feature_cold_negatives", f"SASRecConfig.feature_cold_negatives must be one of "
                              f"{COLD_NEGATIVES}, got {self.feature_cold_negatives!r}")
        if self.feature_cold_negatives == "served":
            if self.feature_cold_loss_weight == 0:
                raise OptionError("feature_cold_negatives", "SASRecConfig.feature_cold_negatives applies to the "
                                  "cold loss: set feature_cold_loss_weight > 0")
            if self.loss != "inbatch_softmax":
                raise OptionError("feature_cold_negatives", "SASRecConfig.feature_cold_negatives='served' is "
                                  f"implemented for loss='inbatch_softmax', not loss={self.loss!r}")
        if not (math.isfinite(self.feature_cold_warm_weight) and self.feature_cold_warm_weight >= 0):
            raise OptionError("feature_cold_warm_weight", "SASRecConfig.feature_cold_warm_weight must be a finite "
                              f"number >= 0, got {self.feature_cold_warm_weight!r}")
        if self.feature_cold_warm_weight != 1.0 and self.feature_cold_negatives != "served":
            raise OptionError("feature_cold_warm_weight", "SASRecConfig.feature_cold_warm_weight weighs a term of "
                              "feature_cold_negatives='served'")
        if not (math.isfinite(self.feature_cold_score_offset) and self.feature_cold_score_offset >= 0):
            raise OptionError("feature_cold_score_offset", "SASRecConfig.feature_cold_score_offset must be a finite "
                              f"number >= 0, got {self.feature_cold_score_offset!r}")
        if self.feature_cold_score_offset > 0 and self.feature_fusion == "none":
            raise OptionError("feature_cold_score_offset", "SASRecConfig.feature_cold_score_offset lowers the scores "
                              "of items served from their features: it needs item features (feature_fusion sum, "
                              "concat or gate)")
        if not 0.0 <= self.item_dropout_rate < 1.0:
            raise OptionError("item_dropout_rate",
                              f"SASRecConfig.item_dropout_rate must be in [0, 1), got {self.item_dropout_rate!r}")
        if not (math.isfinite(self.l2_emb) and self.l2_emb >= 0):
            raise OptionError("l2_emb", f"SASRecConfig.l2_emb must be a finite number >= 0, got {self.l2_emb!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise OptionError("learning_rate",
                              f"SASRecConfig.learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if not 0.0 <= self.weight_decay < 1.0:
            raise OptionError("weight_decay", f"SASRecConfig.weight_decay must be in [0, 1), got {self.weight_decay!r}")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise OptionError(name, f"SASRecConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise OptionError("epsilon", f"SASRecConfig.epsilon must be a finite number > 0, got {self.epsilon!r}")
        if self.hidden_units % self.num_heads:
            raise OptionError(
                "num_heads",
                f"SASRecConfig.hidden_units ({self.hidden_units}) must be divisible by num_heads ({self.num_heads})",
            )
        for name, allowed in (("layer_norm", LAYER_NORM_PLACEMENTS), ("ffn_activation", FFN_ACTIVATIONS),
                              ("training_windows", TRAINING_WINDOWS), ("negative_sampling", NEGATIVE_SAMPLING),
                              ("embedding_initializer", EMBEDDING_INITIALIZERS),
                              ("feature_fusion", FEATURE_FUSIONS)):
            if getattr(self, name) not in allowed:
                raise OptionError(name, f"SASRecConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.ffn_units is not None and self.ffn_units < 1:
            raise OptionError("ffn_units",
                              f"SASRecConfig.ffn_units must be a positive integer or None, got {self.ffn_units!r}")

        self._validate_objective()
        self._validate_optimizer()

    def _validate_optimizer(self) -> None:
        if self.optimizer not in OPTIMIZER_SPECS:
            raise OptionError("optimizer",
                              f"SASRecConfig.optimizer must be one of {tuple(OPTIMIZER_SPECS)}, got {self.optimizer!r}")
        if self.weight_decay and not OPTIMIZER_SPECS[self.optimizer].weight_decay:
            with_decay = tuple(name for name, spec in OPTIMIZER_SPECS.items() if spec.weight_decay)
            raise OptionError("optimizer", f"SASRecConfig.optimizer={self.optimizer!r} has no variant with "
                              f"weight_decay; use one of {with_decay}")

    def _validate_objective(self) -> None:
        if self.loss not in OBJECTIVE_SPECS:
            raise OptionError("loss", f"SASRecConfig.loss must be one of {tuple(OBJECTIVE_SPECS)}, got {self.loss!r}")
        if not 0.0 <= self.gbce_t <= 1.0:
            raise OptionError("gbce_t", f"SASRecConfig.gbce_t must be a number in [0, 1], got {self.gbce_t!r}")
        objective = OBJECTIVE_SPECS[self.loss]
        if self.softmax_chunk_size is not None:
            if self.softmax_chunk_size < 1:
                raise OptionError("softmax_chunk_size", "SASRecConfig.softmax_chunk_size must be a positive integer "
                                  f"or None, got {self.softmax_chunk_size!r}")
            if self.loss != "full_softmax":
                raise OptionError("softmax_chunk_size", "SASRecConfig.softmax_chunk_size applies to "
                                  f"loss='full_softmax', not to loss={self.loss!r}")
        if self.negative_sampling == "popularity" and not objective.samples_negatives:
            sampled = tuple(name for name, o in OBJECTIVE_SPECS.items() if o.samples_negatives)
            raise OptionError(
                "negative_sampling",
                f"SASRecConfig.negative_sampling='popularity' needs an objective with sampled negatives "
                f"({', '.join(sampled)}); loss={self.loss!r} does not sample negatives",
            )
        if self.logq_correction and not objective.logq_correction:
            corrected = tuple(name for name, o in OBJECTIVE_SPECS.items() if o.logq_correction)
            raise OptionError(
                "logq_correction",
                "SASRecConfig.logq_correction applies to the softmax objectives with sampled candidates "
                f"({', '.join(corrected)}), not to loss={self.loss!r}",
            )
        if self.logq_correction and self.loss == "sampled_softmax" and self.negative_sampling == "uniform":
            # The correction subtracts the log probability with which the sampler drew each
            # candidate: the same for every item under uniform sampling, so it changes nothing; what
            # the code once did here (subtracting popularity) is a popularity penalty, not a correction.
            raise OptionError(
                "logq_correction",
                "SASRecConfig.logq_correction with loss='sampled_softmax' corrects for popularity-sampled "
                "negatives; with negative_sampling='uniform' every item is drawn with the same probability and "
                "there is nothing to correct: set negative_sampling='popularity' or logq_correction=false",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SASRecConfig":
        """Build from a dict (JSON values: a string is never taken for a number or a boolean),
        rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OptionError(unknown[0], f"Unknown SASRecConfig field(s): {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "SASRecConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "SASRecConfig":
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))
