"""A run's options besides the model's: how to read the log (:class:`DataOptions`) and how to
train and evaluate (:class:`TrainOptions`). TensorFlow-free, so the command line builds its flags
and their defaults from these dataclasses without importing TensorFlow.

Each rejects a wrong type or value in ``__post_init__`` with an
:class:`~sasrec_tf.config.OptionError` naming the option; :class:`~sasrec_tf.experiment.PipelineFile`
adds where the value came from.
"""

from __future__ import annotations

import dataclasses
import math

from sasrec_tf.config import REPEATED_TARGETS, OptionError, SASRecConfig, check_option_types

__all__ = ["DataOptions", "MONITORS", "SECTIONS", "TrainOptions"]


@dataclasses.dataclass
class DataOptions:
    """How to read an interaction log (:func:`sasrec_tf.data.ingest.read_interactions`) and filter
    it (:func:`~sasrec_tf.data.ingest.filter_interactions`). ``None`` means the reader's default."""

    format: str | None = None
    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None
    rating_col: str | None = None
    min_rating: float | None = None
    sep: str | None = None
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None
    duplicates: str | None = None

    def __post_init__(self) -> None:
        check_option_types(self)
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise OptionError("min_rating", f"DataOptions.min_rating must be a finite number, got {self.min_rating!r}")
        for name in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise OptionError(name, f"DataOptions.{name} must be >= 0, got {getattr(self, name)!r}")

    def read(self, path: str, vocab=None, *, grow: bool = False, progress=None):
        """Read, filter and sequence the log at ``path`` (:func:`sasrec_tf.data.load_dataset`).

        Args:
          path: the log.
          vocab: a trained model's vocabulary: interactions with items it does not know are
            dropped with a warning, or, with ``grow`` (a warm start), the items are added after the
            known ones (:func:`sasrec_tf.warmstart.extend_vocabulary`).
          progress: ``progress(what, done, total)`` after each step (see ``load_dataset``).

        Returns:
          A :class:`~sasrec_tf.data.sequences.SequenceData`.

        Raises:
          ValueError: no ``format``.
        """
        from sasrec_tf.data.sequences import load_dataset

        if self.format is None:
            raise ValueError("a data format is required (--format, or data.format in the --config file)")
        given = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "format"}
        return load_dataset(path, self.format, vocab=vocab, unknown_items="append" if grow else "drop",
                            progress=progress, **given)


# The validation metrics RankingMetricsCallback writes into the logs (without the "val_" prefix).
MONITORS = ("hr@10", "ndcg@10", "mrr")


@dataclasses.dataclass
class TrainOptions:
    """How :func:`~sasrec_tf.experiment.train_and_evaluate` runs ``fit`` (see
    :func:`sasrec_tf.training.fit`, whose defaults are these) and evaluates.

    ``eval_every`` validates (full ranking) every N epochs; ``patience`` stops after that many
    validations without improvement of ``val_<monitor>`` and restores the best weights; with it,
    ``smoothing`` judges improvement on the mean of the last that many validations, ``min_delta``
    is the least gain that counts, and ``min_epochs`` forbids a stop before that epoch (see
    :class:`~sasrec_tf.early_stopping.ValidatedEarlyStopping`; their defaults are Keras' rule);
    ``max_eval_users`` validates on a seeded sample; ``max_minutes`` stops training after that
    much wall time. With ``patience`` the best validated weights are the result however training
    ends (early, on the epoch limit or on the time limit); without it, the final weights.
    ``eval_negatives`` is the number of items each target is ranked against in the final sampled
    protocol (the paper's 100); each evaluated user needs that many items they never interacted with.
    ``repeated_targets`` is what full ranking (validation and the final metrics) makes of a target
    already in the user's history: ``"miss"`` (what the served model, which excludes history, can
    return), ``"drop"`` (those users left out, as RecTools) or ``"rank"`` (kept as a candidate);
    see :func:`sasrec_tf.evaluation.evaluate_full`.
    ``cold_items`` runs the cold-start protocol: that fraction of the catalogue (chosen with
    ``cold_seed``, independent of the model's seed) is held out of training and reported as cold
    targets (:mod:`sasrec_tf.data.cold_start`); 0 trains on every item.
    """

    eval_every: int = 5
    patience: int | None = None
    monitor: str = "ndcg@10"
    min_delta: float = 0.0
    smoothing: int = 1
    min_epochs: int = 0
    max_eval_users: int | None = None
    max_minutes: float | None = None
    eval_negatives: int = 100
    repeated_targets: str = "miss"
    cold_items: float = 0.0
    cold_seed: int = 0

    def __post_init__(self) -> None:
        check_option_types(self)
        if not (math.isfinite(self.cold_items) and 0 <= self.cold_items < 1):
            raise OptionError("cold_items", f"TrainOptions.cold_items must be a fraction in [0, 1), got "
                                            f"{self.cold_items!r}")
        for name in ("eval_every", "patience", "max_eval_users", "eval_negatives", "smoothing"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"TrainOptions.{name} must be a positive integer, got {value!r}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise OptionError("max_minutes",
                              f"TrainOptions.max_minutes must be a finite number > 0, got {self.max_minutes!r}")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise OptionError("min_delta", f"TrainOptions.min_delta must be a finite number >= 0, got {self.min_delta!r}")
        if self.min_epochs < 0:
            raise OptionError("min_epochs", f"TrainOptions.min_epochs must be >= 0, got {self.min_epochs!r}")
        if self.repeated_targets not in REPEATED_TARGETS:
            raise OptionError("repeated_targets", f"TrainOptions.repeated_targets must be one of {REPEATED_TARGETS}, "
                                                  f"got {self.repeated_targets!r}")
        if self.monitor not in MONITORS:
            raise OptionError("monitor", f"TrainOptions.monitor must be one of {MONITORS}, got {self.monitor!r}")


# A pipeline file's sections and the dataclass each one builds.
SECTIONS: dict[str, type] = {"model": SASRecConfig, "data": DataOptions, "train": TrainOptions}
