"""Hyperparameters of SASRec and its training, with the paper's names and defaults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

LAYER_NORM_PLACEMENTS = ("original", "pre", "post")
TRAINING_WINDOWS = ("last", "all")
FFN_ACTIVATIONS = ("relu", "gelu")
# How sampled negatives are drawn. (The objectives themselves: the registry in sasrec_tf.objectives.)
NEGATIVE_SAMPLING = ("uniform", "popularity")


@dataclasses.dataclass
class SASRecConfig:
    """Everything needed to rebuild and retrain a SASRec model.

    Defaults follow the reference implementation of Kang & McAuley (2018) (``main.py``: ``maxlen``
    50, ``hidden_units`` 50, 2 blocks, 1 head, dropout 0.5, ``l2_emb`` 0, Adam lr 1e-3, batch 128).
    The paper used dropout 0.2 and ``max_len`` 200 on dense data (MovieLens-1M).

    Ablations of the paper's Table IV are switches, not forks: ``use_positional_embedding``,
    ``share_item_embedding``, ``use_residual``, ``dropout_rate=0``, ``num_blocks`` 0..n,
    ``num_heads``, ``use_user_embedding``.

    ``loss`` names the training objective, an entry of :data:`sasrec_tf.objectives.OBJECTIVES`
    (``bce``, the paper's and the default; ``gbce`` with ``gbce_t``; ``sampled_softmax``;
    ``inbatch_softmax``; ``full_softmax``). ``num_negatives`` is ``k`` for those that sample
    negatives, drawn ``"uniform"`` or by ``"popularity"`` (``negative_sampling``);
    ``logq_correction`` applies to the softmax objectives over sampled candidates.

    ``layer_norm`` places LayerNorm inside each block:
      * ``"original"`` -- the reference code: the attention query and the FFN input are normalised,
        the residual adds the normalised tensor, and a final LayerNorm follows the last block;
      * ``"pre"`` -- Pre-LN, ``x + f(LN(x))``, final LayerNorm;
      * ``"post"`` -- Post-LN (Vaswani et al.), ``LN(x + f(x))``.

    ``ffn_units`` and ``ffn_activation`` shape the point-wise feed-forward network: the paper's is
    ``d -> d`` with ReLU (``None``, ``"relu"``); later models (BERT4Rec, DuoRec, gSASRec) use a
    ``4d`` inner layer with GELU.

    ``bucket_by_length`` (default on) batches training windows of similar length and cuts each
    batch to its longest window: 2-3x faster on sparse data. It optimises the same objective as
    random batches because the loss is normalised by the expected number of targets of a batch,
    not by the batch's own count (see :mod:`sasrec_tf.data.pipeline`; per-epoch quality beside
    unbucketed training and the PyTorch reference: benchmarks/README.md, "Paper parity"). Turn it
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
    ffn_activation: str = "relu"  # "relu" (the paper) or "gelu" (BERT4Rec and most later models)
    # Training.
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay (not on biases or LayerNorm)
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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        positive = ("max_len", "hidden_units", "num_heads", "batch_size", "epochs", "num_negatives")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SASRecConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise ValueError(f"SASRecConfig.num_blocks must be >= 0, got {self.num_blocks!r}")
        if not 0.0 <= float(self.dropout_rate) < 1.0:
            raise ValueError(f"SASRecConfig.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if self.l2_emb < 0 or self.learning_rate <= 0:
            raise ValueError("SASRecConfig.l2_emb must be >= 0 and learning_rate > 0")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) \
                or not 0.0 <= self.weight_decay < 1.0:
            raise ValueError(f"SASRecConfig.weight_decay must be a number in [0, 1), got {self.weight_decay!r}")
        if self.hidden_units % self.num_heads:
            raise ValueError(
                f"SASRecConfig.hidden_units ({self.hidden_units}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if self.layer_norm not in LAYER_NORM_PLACEMENTS:
            raise ValueError(
                f"SASRecConfig.layer_norm must be one of {LAYER_NORM_PLACEMENTS}, got {self.layer_norm!r}"
            )
        if self.ffn_units is not None and (
            not isinstance(self.ffn_units, int) or isinstance(self.ffn_units, bool) or self.ffn_units < 1
        ):
            raise ValueError(f"SASRecConfig.ffn_units must be a positive integer or None, got {self.ffn_units!r}")
        if self.ffn_activation not in FFN_ACTIVATIONS:
            raise ValueError(
                f"SASRecConfig.ffn_activation must be one of {FFN_ACTIVATIONS}, got {self.ffn_activation!r}"
            )
        if self.training_windows not in TRAINING_WINDOWS:
            raise ValueError(
                f"SASRecConfig.training_windows must be one of {TRAINING_WINDOWS}, "
                f"got {self.training_windows!r}"
            )

        self._validate_objective()

    def _validate_objective(self) -> None:
        from sasrec_tf.objectives import OBJECTIVES  # TensorFlow: imported when a config is checked

        if self.loss not in OBJECTIVES:
            raise ValueError(f"SASRecConfig.loss must be one of {tuple(OBJECTIVES)}, got {self.loss!r}")
        if isinstance(self.gbce_t, bool) or not isinstance(self.gbce_t, (int, float)) or not 0.0 <= self.gbce_t <= 1.0:
            raise ValueError(f"SASRecConfig.gbce_t must be a number in [0, 1], got {self.gbce_t!r}")
        if self.negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(
                f"SASRecConfig.negative_sampling must be one of {NEGATIVE_SAMPLING}, got {self.negative_sampling!r}"
            )
        objective = OBJECTIVES[self.loss]
        if self.negative_sampling == "popularity" and not objective.samples_negatives:
            sampled = tuple(name for name, o in OBJECTIVES.items() if o.samples_negatives)
            raise ValueError(
                f"SASRecConfig.negative_sampling='popularity' needs an objective with sampled negatives "
                f"({', '.join(sampled)}); loss={self.loss!r} does not sample negatives"
            )
        if not isinstance(self.logq_correction, bool):
            raise ValueError(f"SASRecConfig.logq_correction must be true or false, got {self.logq_correction!r}")
        if self.logq_correction and not objective.logq_correction:
            corrected = tuple(name for name, o in OBJECTIVES.items() if o.logq_correction)
            raise ValueError(
                "SASRecConfig.logq_correction applies to the softmax objectives with sampled candidates "
                f"({', '.join(corrected)}), not to loss={self.loss!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SASRecConfig":
        """Build from a dict, rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown SASRecConfig field(s): {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "SASRecConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "SASRecConfig":
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))
