"""Keras callback that adds validation ranking metrics (HR@k, NDCG@k, MRR) to the epoch logs."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.evaluation.metrics import ranking_metrics
from sasrec_tf.evaluation.protocols import PROTOCOLS, metrics_of_ranks
from sasrec_tf.evaluation.rankings import FullRanking, SampledRanking
from sasrec_tf.ranking.rules import check_repeated_targets

__all__ = ["RankingMetricsCallback"]


class RankingMetricsCallback(keras.callbacks.Callback):
    """Computes leave-one-out ranking metrics at epoch end and writes them into the epoch logs.

    Keys are ``f"{prefix}hr@{k}"``, ``f"{prefix}ndcg@{k}"`` for each k and ``f"{prefix}mrr"``
    (e.g. ``val_ndcg@10``). Every callback of a ``fit`` call receives the same logs dict in list
    order, so place this callback **before** the ones that read the keys:
    ``EarlyStopping(monitor="val_ndcg@10", mode="max")``, ``ModelCheckpoint``, ``TensorBoard``
    (which logs ``val_*`` keys under its validation run as ``epoch_ndcg@10``); ``History`` always
    runs last and records them.

    The metrics are computed every ``every_n_epochs`` epochs, on the first epoch of each ``fit``
    (a resumed one too) and on the last epoch. On the epochs
    in between, the last computed values are carried forward into the logs, so monitors never see a
    missing key; a carried value counts as "no improvement" for ``EarlyStopping``, so give it a
    ``patience`` of at least ``every_n_epochs``.

    Args:
      inputs, targets, user_ids: as for :func:`sasrec_tf.evaluation.evaluate_full` (typically a
        split's ``valid_inputs``, ``valid_targets`` and ``valid_users + 1``).
      every_n_epochs: compute every this many epochs.
      protocol: ``"full"`` (honest; the default) or ``"sampled"`` (the paper's; the same users and
        negatives every epoch, from ``seed``, so epochs are comparable).
      ks: cut-offs for HR and NDCG.
      prefix: prepended to every key.
      exclude_history, repeated_targets: full protocol only; see
        :func:`~sasrec_tf.evaluation.evaluate_full`.
      num_negatives, sampling, item_counts: sampled protocol only; see
        :func:`~sasrec_tf.evaluation.evaluate_sampled`.
      seed: seeds the user subset and the negatives.
      max_users: evaluate a fixed seeded subset of at most this many users (both protocols), to
        bound the cost per epoch.
      batch_size: users scored per step.
      verbose: print a one-line summary when the metrics are computed.
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        targets: Any,
        *,
        user_ids: Any = None,
        every_n_epochs: int = 1,
        protocol: str = "full",
        ks: Sequence[int] = (10,),
        prefix: str = "val_",
        exclude_history: bool = True,
        repeated_targets: str = "miss",
        num_negatives: int = 100,
        sampling: str = "uniform",
        item_counts: Any = None,
        seed: int = 0,
        max_users: int | None = None,
        batch_size: int = 1024,
        verbose: int = 1,
    ):
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be positive, got {every_n_epochs}")
        if len(inputs) != len(np.asarray(targets).reshape(-1)):
            raise ValueError(f"got {len(inputs)} input sequences but {len(np.asarray(targets).reshape(-1))} targets")
        ranking_metrics([1], ks)  # validates ks early
        self.inputs = list(inputs)
        self.targets = np.asarray(targets).reshape(-1)
        self.user_ids = user_ids
        self.every_n_epochs = int(every_n_epochs)
        self.protocol = protocol
        self.ks = tuple(ks)
        self.prefix = prefix
        self.exclude_history = bool(exclude_history)
        self.repeated_targets = check_repeated_targets(repeated_targets)
        self.num_negatives = int(num_negatives)
        self.sampling = sampling
        self.item_counts = item_counts
        self.seed = seed
        self.max_users = max_users
        self.batch_size = int(batch_size)
        self.verbose = verbose
        self.last_metrics: dict[str, float] = {}
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._ranking: FullRanking | SampledRanking | None = None

    def set_model(self, model) -> None:
        if model is not getattr(self, "model", None):
            self._reset_cache()
        super().set_model(model)

    def _should_run(self, epoch: int) -> bool:
        epochs = (self.params or {}).get("epochs")
        return (epoch + 1) % self.every_n_epochs == 0 or (epochs is not None and epoch + 1 == epochs)

    def _setup(self) -> None:
        """Pad the inputs, pick the users and (sampled) the negatives once per model."""
        common = dict(user_ids=self.user_ids, max_users=self.max_users, seed=self.seed, batch_size=self.batch_size)
        if self.protocol == "full":
            self._ranking = FullRanking(self.model, self.inputs, self.targets, exclude_history=self.exclude_history,
                                        repeated_targets=self.repeated_targets, **common)
        else:
            self._ranking = SampledRanking(self.model, self.inputs, self.targets, num_negatives=self.num_negatives,
                                           sampling=self.sampling, item_counts=self.item_counts, **common)

    def compute_metrics(self) -> dict[str, float]:
        """The prefixed metrics for the model's current weights."""
        if self._ranking is None:
            self._setup()
        ranks = self._ranking.ranks()
        return {self.prefix + name: value for name, value in metrics_of_ranks(ranks, self.ks).items()}

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.last_metrics = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Also run on the first epoch of every fit (a resumed one too), so that monitors such as
        # EarlyStopping never meet a missing key.
        if self._should_run(epoch) or not self.last_metrics:
            start = time.perf_counter()
            self.last_metrics = self.compute_metrics()
            if self.verbose:
                summary = " - ".join(f"{name}: {value:.4f}" for name, value in self.last_metrics.items())
                print(
                    f"Epoch {epoch + 1}: {summary} ({self.protocol} ranking, {self._ranking.num_users} users, "
                    f"{time.perf_counter() - start:.1f}s)"
                )
        if logs is not None:
            logs.update(self.last_metrics)  # fresh values, or the last ones carried forward
