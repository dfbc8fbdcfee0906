"""Leave-one-out evaluation of next-item models: full ranking and the paper's sampled protocol.

For each user the model sees the interaction history (``inputs``) and must rank the held-out next
item (``targets``). Both protocols reduce to one 1-based rank per user and report
:func:`sasrec_tf.metrics.ranking_metrics` of those ranks.

- **Full ranking** (:func:`evaluate_full`) ranks the target against *every* item ``1..N``. This is
  the honest protocol and the one to report and to select models with.
- **Sampled** (:func:`evaluate_sampled`) ranks the target against ``num_negatives`` (100) sampled
  items, as in SASRec (Kang & McAuley 2018) and its original code. Its numbers read several times
  higher than full-ranking numbers, are **not comparable** with them, and can even order models
  differently (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020). Use it
  only to compare with papers that used it, and always say which protocol a number comes from.

Shared rules:

- The padding id 0 is never a candidate.
- Ties never favour the true item: ``rank = 1 + #(candidates scoring > target) + #(other
  candidates scoring == target)`` (a NaN score counts as beating the target), so the rank does not
  depend on where the target sits among the candidates, and a constant model gets the worst rank.
- "History" means the whole given input sequence, not only the last ``model.max_len`` items the
  model reads.
- **Repeated targets** (full ranking with ``exclude_history``): a target that is already in the
  user's history is removed from the candidates with the rest of the history, as
  ``serving_default`` removes it, so by default (``repeated_targets="miss"``) it counts as a miss:
  offline numbers equal what the served model can return, and match the published code of
  S3-Rec / FMLP-Rec / BSARec, which blank every history score. ``"drop"`` leaves those users out
  (the RecTools / eSASRec benchmark); ``"rank"`` keeps the target a candidate (for data where
  re-consumption is the point). The Amazon files have no repeated targets; Yelp has 6.7%. The
  sampled protocol always ranks the target (the paper's code), whatever this setting.

The rules above are the ranking kernel's (:mod:`sasrec_tf.ranking.kernel`), shared with the
Keras metrics, the validation callback, the export and batch recommendations. Scoring runs in
TensorFlow, batched (:mod:`sasrec_tf.evaluation.rankings`). Memory per batch is about
``batch_size * (num_items + 1) * 4`` bytes for full ranking.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from sasrec_tf.data.cold_start import TARGET_GROUPS, cold_target_mask
from sasrec_tf.data.sequence_rules import item_counts
from sasrec_tf.evaluation.metrics import DEFAULT_KS, ranking_metrics
from sasrec_tf.evaluation.negatives import history_keys
from sasrec_tf.evaluation.rankings import FullRanking, JointRanking, SampledRanking
from sasrec_tf.choices import PROTOCOLS, STAGES
from sasrec_tf.ranking.rules import REPEATED_TARGETS, check_repeated_targets

__all__ = ["REPEATED_TARGETS", "STAGES", "PROTOCOLS", "evaluate", "evaluate_full", "evaluate_sampled",
           "metrics_of_ranks", "repeated_targets_mask", "target_group_metrics", "training_item_counts"]



def metrics_of_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """:func:`ranking_metrics` of the users that were ranked (rank 0 = left out: ``max_users``,
    ``repeated_targets="drop"``)."""
    ranked = ranks[ranks > 0]
    if not ranked.size:
        raise ValueError("no user left to evaluate: every target was left out (repeated_targets='drop'?)")
    return ranking_metrics(ranked, ks)


def target_group_metrics(ranks: np.ndarray, targets: Any, cold_items: Any, ks: Sequence[int]) -> dict[str, dict]:
    """The cold-start protocol's split of one ranking: ``{"cold": {...}, "warm": {...}}``, each
    :func:`metrics_of_ranks` of the users whose target is (not) one of ``cold_items`` plus
    ``"targets"``, how many targets the group has (the two add up to every target). A group
    without a ranked user has only ``"targets"``. ``ranks`` are computed once, for every user."""
    ranks = np.asarray(ranks).reshape(-1)
    cold = cold_target_mask(targets, cold_items)
    if len(cold) != len(ranks):
        raise ValueError(f"got {len(ranks)} ranks but {len(cold)} targets")
    groups = {}
    for group, members in zip(TARGET_GROUPS, (cold, ~cold)):
        ranked = ranks[members]
        groups[group] = {**(metrics_of_ranks(ranked, ks) if (ranked > 0).any() else {}),
                         "targets": int(members.sum())}
    return groups


def _finish(ranks: np.ndarray, ks: Sequence[int], return_ranks: bool):
    metrics = metrics_of_ranks(ranks, ks)
    return (metrics, ranks) if return_ranks else metrics


def evaluate_full(
    model: Any,
    inputs: Sequence[np.ndarray],
    targets: Any,
    *,
    user_ids: Any = None,
    exclude_history: bool = True,
    repeated_targets: str = "miss",
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """Full-ranking leave-one-out metrics: the target ranked against every item ``1..N``.

    Args:
      model: provides ``query_embeddings(item_ids, user_ids=None)``, ``item_embeddings()``,
        ``max_len``, ``num_items`` and optionally ``uses_user_embedding`` (see the module doc).
      inputs: per user, the chronological history of dense item ids; the model reads its most
        recent ``model.max_len`` items.
      targets: ``[n]`` held-out next item per user, in ``1..N``.
      user_ids: ``[n]`` dense user ids ``1..U``; required when ``model.uses_user_embedding``,
        ignored otherwise.
      exclude_history: drop the items of the user's whole input history from the candidates
        (the usual convention, and what ``serving_default`` does).
      repeated_targets: with ``exclude_history``, what a target that is itself in the history
        counts as: ``"miss"`` (it is not a candidate, as in what the served model can return:
        rank :data:`~sasrec_tf.metrics.NOT_A_CANDIDATE`, past every cut-off), ``"drop"`` (the
        user is left out of the metrics; rank 0 in ``return_ranks``) or ``"rank"`` (it stays a
        candidate, as a re-consumed item). See the module doc.
      batch_size: users scored per step; memory is about ``batch_size * (N + 1) * 4`` bytes.
      ks: cut-offs for HR@k and NDCG@k.
      return_ranks: also return the ``[n]`` int64 ranks, in input order (0 = left out).
      progress: called as ``progress(users_done, users_total)`` after every batch (e.g. to drive a
        Keras ``Progbar``).

    Returns:
      ``{"hr@k": ..., "ndcg@k": ..., "mrr": ...}``; with ``return_ranks``, ``(metrics, ranks)``.
    """
    ranks = FullRanking(model, inputs, targets, user_ids=user_ids, exclude_history=exclude_history,
                        repeated_targets=repeated_targets, batch_size=batch_size).ranks(progress)
    return _finish(ranks, ks, return_ranks)


def evaluate_sampled(
    model: Any,
    inputs: Sequence[np.ndarray],
    targets: Any,
    *,
    user_ids: Any = None,
    num_negatives: int = 100,
    sampling: str = "uniform",
    item_counts: Any = None,
    max_users: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    return_ranks: bool = False,
    progress: Callable[[int, int], None] | None = None,
):
    """The paper's sampled leave-one-out metrics: the target ranked among ``1 + num_negatives`` items.

    Negatives come from :func:`~sasrec_tf.evaluation.sample_evaluation_negatives` (uniform, or
    ``"popularity"`` in proportion to ``item_counts``; never padding, the target or a history item;
    no duplicates). ``max_users``
    evaluates a seeded random subset of at most that many users, like the original code's
    10,000-user sample. The same ``seed`` gives the same users, negatives and numbers. Not
    comparable with :func:`evaluate_full` (see the module doc).

    Returns:
      The metrics dict; with ``return_ranks``, ``(metrics, ranks)`` where ``ranks`` is ``[n]`` in
      input order and 0 for the users left out by ``max_users``.
    """
    ranks = SampledRanking(model, inputs, targets, user_ids=user_ids, num_negatives=num_negatives,
                           sampling=sampling, item_counts=item_counts, max_users=max_users, seed=seed,
                           batch_size=batch_size).ranks(progress)
    return _finish(ranks, ks, return_ranks)


def evaluate(
    model: Any,
    split: Any,
    *,
    stage: str = "valid",
    protocols: Sequence[str] = PROTOCOLS,
    exclude_history: bool = True,
    repeated_targets: str = "miss",
    num_negatives: int = 100,
    sampling: str = "uniform",
    max_users: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    ks: Sequence[int] = DEFAULT_KS,
    cold_items: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate ``model`` on a ``LeaveOneOutSplit`` stage with the given protocols.

    ``stage="valid"`` ranks ``valid_targets`` given ``valid_inputs``; ``"test"`` uses the test
    fields. Model user ids are the split's 0-based user indices + 1. Popularity sampling counts
    items in ``split.train``. ``max_users`` applies to the sampled protocol only; the full one
    always ranks every user. ``exclude_history`` and ``repeated_targets`` apply to the full
    protocol (see :func:`evaluate_full`).

    ``cold_items`` (the dense ids held out by :func:`sasrec_tf.data.cold_start.hold_out_items`)
    adds the full ranking split by target: ``"cold"`` and ``"warm"``
    (:func:`target_group_metrics`), from the same ranks as ``"full"``.

    With both protocols, each batch of users is encoded once and ranked by both
    (:class:`~sasrec_tf.evaluation.JointRanking`: the same ranks, users and negatives as the two
    protocols run alone, about half the encoder's cost). ``progress(protocol, users_done,
    users_total)`` is then called with ``"full"`` after every batch and with ``"sampled"`` once
    the pass is done; with one protocol, after every batch of it.

    Returns:
      ``{"full": {...}, "sampled": {...}}`` with one entry per requested protocol (and with
      ``cold_items``, ``"cold": {...}, "warm": {...}``).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    check_repeated_targets(repeated_targets)
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {protocols!r}")
    if cold_items is not None and "full" not in protocols:
        raise ValueError("cold_items splits the full ranking by target: include the 'full' protocol")
    inputs = getattr(split, f"{stage}_inputs")
    targets = getattr(split, f"{stage}_targets")
    user_ids = np.asarray(getattr(split, f"{stage}_users")) + 1
    item_counts = None
    if "sampled" in protocols and sampling == "popularity":
        item_counts = training_item_counts(split.train, int(model.num_items))
    if set(protocols) == set(PROTOCOLS):
        return _evaluate_jointly(model, inputs, targets, user_ids, protocols, progress, cold_items=cold_items, ks=ks,
                                 exclude_history=exclude_history, repeated_targets=repeated_targets,
                                 num_negatives=num_negatives, sampling=sampling, item_counts=item_counts,
                                 sampled_max_users=max_users, seed=seed, batch_size=batch_size)
    results: dict[str, dict[str, float]] = {}
    groups: dict[str, dict[str, float]] = {}
    for protocol in protocols:
        if protocol == "full":
            full = evaluate_full(
                model, inputs, targets, user_ids=user_ids, exclude_history=exclude_history,
                repeated_targets=repeated_targets, batch_size=batch_size, ks=ks, return_ranks=cold_items is not None,
                progress=None if progress is None else lambda done, total: progress("full", done, total),
            )
            if cold_items is None:
                results["full"] = full
            else:
                results["full"], ranks = full
                groups = target_group_metrics(ranks, targets, cold_items, ks)
        else:
            results["sampled"] = evaluate_sampled(
                model, inputs, targets, user_ids=user_ids, num_negatives=num_negatives,
                sampling=sampling, item_counts=item_counts, max_users=max_users, seed=seed,
                batch_size=batch_size, ks=ks,
                progress=None if progress is None else lambda done, total: progress("sampled", done, total),
            )
    return {**results, **groups}


def _evaluate_jointly(model: Any, inputs, targets, user_ids, protocols: Sequence[str], progress, *, cold_items: Any,
                      ks: Sequence[int], **ranking: Any) -> dict[str, dict[str, float]]:
    """:func:`evaluate` of both protocols from one encoder pass per batch (:class:`JointRanking`):
    the ranks :func:`evaluate_full` and :func:`evaluate_sampled` compute, each history encoded once.
    ``progress`` hears ``"full"`` after every batch and ``"sampled"`` once, when the pass ends
    (both finish together)."""
    ranking = JointRanking(model, inputs, targets, user_ids=user_ids, **ranking)
    full, sampled = ranking.ranks(None if progress is None else lambda done, total: progress("full", done, total))
    if progress is not None:
        progress("sampled", ranking.num_sampled_users, ranking.num_sampled_users)
    ranks = {"full": full, "sampled": sampled}
    results = {protocol: metrics_of_ranks(ranks[protocol], ks) for protocol in protocols}
    groups = {} if cold_items is None else target_group_metrics(full, targets, cold_items, ks)
    return {**results, **groups}


def repeated_targets_mask(inputs: Sequence[np.ndarray], targets: Any) -> np.ndarray:
    """``[n]`` bool: whether each user's target already occurs in their input history (the users
    that ``repeated_targets`` decides about)."""
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(inputs) != len(targets):
        raise ValueError(f"got {len(inputs)} input sequences but {len(targets)} targets")
    if not len(targets):
        return np.zeros(0, bool)
    histories = [np.asarray(h, dtype=np.int64).reshape(-1) for h in inputs]
    stride = int(max(targets.max(), max((h.max() for h in histories if len(h)), default=0))) + 1
    keys = history_keys(histories, stride - 1)  # (row, item) of every history item, unique
    repeated = np.zeros(len(targets), bool)
    repeated[keys[keys % stride == targets[keys // stride]] // stride] = True
    return repeated


def training_item_counts(sequences: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    """Interactions per item id in ``sequences``: ``[num_items + 1]`` int64, padding counted as 0
    (the rule :func:`sasrec_tf.data.rules.item_counts`, which the TFRecord writer applies too)."""
    return item_counts(sequences, num_items)
