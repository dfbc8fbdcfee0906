"""Keras callback that adds validation ranking metrics (HR@k, NDCG@k, MRR) to the epoch logs."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from sasrec_tf._compat import keras
from sasrec_tf.evaluation.metrics import ranking_metrics
from sasrec_tf.evaluation.protocols import PROTOCOLS, metrics_of_ranks
from sasrec_tf.evaluation.rankings import FullRanking, JointRanking, SampledRanking
from sasrec_tf.ranking.rules import check_repeated_targets

__all__ = ["RankingMetricsCallback", "align_history", "users_progress"]


class RankingMetricsCallback(keras.callbacks.Callback):
    """Computes leave-one-out ranking metrics at epoch end and writes them into the epoch logs.

    Keys are ``f"{prefix}hr@{k}"``, ``f"{prefix}ndcg@{k}"`` for each k and ``f"{prefix}mrr"``
    (e.g. ``val_ndcg@10``). Every callback of a ``fit`` call receives the same logs dict in list
    order, so place this callback **before** the ones that read the keys:
    ``EarlyStopping(monitor="val_ndcg@10", mode="max")``, ``ModelCheckpoint``, ``TensorBoard``
    (which logs ``val_*`` keys under its validation run as ``epoch_ndcg@10``); ``History`` always
    runs last and records them.

    The metrics are computed every ``every_n_epochs`` epochs, on the first epoch of each ``fit``
    (a resumed one too) and on the last epoch; :attr:`validated_epochs` lists those epochs. An
    epoch that did not validate gets **no** ``val_*`` key: the console, TensorBoard (which then
    writes validation scalars only at validated epochs) and every monitor see only what was
    measured. Keras' ``EarlyStopping`` would warn on such an epoch and count it as "no
    improvement": use :class:`sasrec_tf.early_stopping.ValidatedEarlyStopping` (what
    :func:`sasrec_tf.training.fit` uses), whose patience counts evaluations.

    At the end of training the model's ``History`` is aligned: Keras appends a key only at the
    epochs that logged it, so each ``val_*`` list would be shorter than ``loss`` and its i-th value
    would not be epoch ``history.epoch[i]``'s (``np.argmax`` of it would silently name a wrong
    epoch). Every ``val_*`` list instead holds one value per epoch, ``NaN`` where nothing was
    measured (``np.nanargmax``, ``pandas.DataFrame(history.history).dropna()`` and plots see
    the gaps), and ``history.validated_epochs`` lists the validated epochs (0-based, as
    ``history.epoch``).

    With ``verbose``, a validation prints one line with its metrics, protocol, users and time;
    with ``verbose=1`` and a terminal on stdout, the pass over the users also shows a Keras
    ``Progbar`` (nothing per batch in a log). Put a ``ProgbarLogger`` before this callback
    (:func:`~sasrec_tf.training.fit` does) so that the epoch's bar is finished before.

    Args:
      inputs, targets, user_ids: as for :func:`sasrec_tf.evaluation.evaluate_full` (typically a
        split's ``valid_inputs``, ``valid_targets`` and ``valid_users + 1``).
      every_n_epochs: compute every this many epochs.
      protocol: ``"full"`` (honest; the default) or ``"sampled"`` (the paper's; the same users and
        negatives every epoch, from ``seed``, so epochs are comparable), or both,
        ``("full", "sampled")``: each batch of users is then encoded once and ranked by both
        (:class:`~sasrec_tf.evaluation.JointRanking`; the ranks each protocol gives alone), the
        full protocol's keys as above and the sampled one's ``f"{prefix}sampled_{name}"``
        (e.g. ``val_sampled_ndcg@10``).
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
      verbose: 0 silent; 1 a ``Progbar`` on a terminal and a one-line summary; 2 the summary only.

    Attributes:
      last_metrics: the metrics of the last validation of this ``fit`` (``{}`` before it).
      validated_epochs: the epochs (0-based) this ``fit`` validated.
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        targets: Any,
        *,
        user_ids: Any = None,
        every_n_epochs: int = 1,
        protocol: str | Sequence[str] = "full",
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
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        if not protocols or len(set(protocols)) != len(protocols) or any(p not in PROTOCOLS for p in protocols):
            raise ValueError(f"protocol must be one of {PROTOCOLS} or both of them, got {protocol!r}")
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs must be positive, got {every_n_epochs}")
        if len(inputs) != len(np.asarray(targets).reshape(-1)):
            raise ValueError(f"got {len(inputs)} input sequences but {len(np.asarray(targets).reshape(-1))} targets")
        ranking_metrics([1], ks)  # validates ks early
        self.inputs = list(inputs)
        self.targets = np.asarray(targets).reshape(-1)
        self.user_ids = user_ids
        self.every_n_epochs = int(every_n_epochs)
        self.protocol = protocol if isinstance(protocol, str) else protocols
        self._protocols = protocols
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
        self.validated_epochs: list[int] = []
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._ranking: FullRanking | SampledRanking | JointRanking | None = None

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
        if len(self._protocols) == 2:  # one encoder pass for both, on the same users
            self._ranking = JointRanking(self.model, self.inputs, self.targets, exclude_history=self.exclude_history,
                                         repeated_targets=self.repeated_targets, num_negatives=self.num_negatives,
                                         sampling=self.sampling, item_counts=self.item_counts, user_ids=self.user_ids,
                                         full_max_users=self.max_users, sampled_max_users=self.max_users,
                                         seed=self.seed, batch_size=self.batch_size)
        elif self.protocol == "full":
            self._ranking = FullRanking(self.model, self.inputs, self.targets, exclude_history=self.exclude_history,
                                        repeated_targets=self.repeated_targets, **common)
        else:
            self._ranking = SampledRanking(self.model, self.inputs, self.targets, num_negatives=self.num_negatives,
                                           sampling=self.sampling, item_counts=self.item_counts, **common)

    def compute_metrics(self, progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """The prefixed metrics for the model's current weights; ``progress(users_done,
        users_total)`` is called after every batch."""
        if self._ranking is None:
            self._setup()
        ranks = self._ranking.ranks(progress)
        if not isinstance(ranks, tuple):
            return {self.prefix + name: value for name, value in metrics_of_ranks(ranks, self.ks).items()}
        full, sampled = ranks
        return {**{self.prefix + name: value for name, value in metrics_of_ranks(full, self.ks).items()},
                **{f"{self.prefix}sampled_{name}": value for name, value in metrics_of_ranks(sampled, self.ks).items()}}

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.last_metrics, self.validated_epochs = {}, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Also run on the first epoch of every fit (a resumed one too), so that every fit has a
        # validated epoch to restore and report.
        if not (self._should_run(epoch) or not self.validated_epochs):
            return  # nothing measured: no val_* key in the logs
        start = time.perf_counter()
        self.last_metrics = self.compute_metrics(users_progress(self.verbose))
        self.validated_epochs.append(epoch)
        if self.verbose:
            summary = " - ".join(f"{name}: {value:.4f}" for name, value in self.last_metrics.items())
            print(
                f"Epoch {epoch + 1}: {summary} ({' and '.join(self._protocols)} ranking, {self._ranking.num_users} users, "
                f"{time.perf_counter() - start:.1f}s)", flush=True
            )
        if logs is not None:
            logs.update(self.last_metrics)

    def on_train_end(self, logs: dict | None = None) -> None:
        history = getattr(self.model, "history", None)
        if isinstance(history, keras.callbacks.History) and getattr(history, "epoch", None) is not None:
            align_history(history, self.validated_epochs, self.last_metrics)


def align_history(history: keras.callbacks.History, validated_epochs: Sequence[int], keys) -> None:
    """Give each of ``keys`` in ``history.history`` one value per epoch of ``history.epoch``,
    ``NaN`` at the epochs not in ``validated_epochs``, and set ``history.validated_epochs``
    (see :class:`RankingMetricsCallback`). A list of another length (a ``History`` reused
    across ``fit`` calls) is left as Keras wrote it."""
    validated = set(validated_epochs)
    history.validated_epochs = [epoch for epoch in history.epoch if epoch in validated]
    for key in keys:
        values = history.history.get(key)
        if values is None or len(values) != len(history.validated_epochs) or len(values) == len(history.epoch):
            continue
        measured = iter(values)
        history.history[key] = [next(measured) if epoch in validated else float("nan") for epoch in history.epoch]


def users_progress(verbose: int | str, *, stream=None) -> Callable[[int, int], None] | None:
    """A ``progress(users_done, users_total)`` callback drawing a Keras ``Progbar`` (unit: user)
    when ``verbose == 1`` and ``stream`` (stdout) is a terminal; ``None`` otherwise (in a log a
    long step prints at most its own summary line, never one per batch)."""
    stream = sys.stdout if stream is None else stream
    if verbose != 1 or not getattr(stream, "isatty", lambda: False)():
        return None
    bar = keras.utils.Progbar(None, unit_name="user")  # its clock starts now; the total comes with the first call

    def progress(done: int, total: int) -> None:
        bar.target = total  # as Keras' ProgbarLogger sets it once known
        bar.update(done)

    return progress
