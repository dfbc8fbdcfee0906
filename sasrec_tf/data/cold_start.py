"""The cold-start protocol: a seeded random fraction of items held out of training.

A catalogue grows every day, and a new item has no interactions yet. To measure how a model
recommends such items, :func:`hold_out_items` takes the leave-one-out split and removes every
interaction with the chosen items (:func:`choose_cold_items`) from what the model reads:

- the **training sequences** (so the model never trains on them as inputs or positive targets);
- the **validation and test input histories** too: on the day an item arrives nobody has it in
  their history, and a history item the model never trained on would only be noise (it would also
  be excluded from the candidates, which a real new item is not);
- but **not the targets**: a validation or test target that is a held-out item stays, and is a
  *cold target*; the others are *warm targets*. Users, targets and the leave-one-out split are
  otherwise unchanged, so the cold and warm targets together are today's targets.

The held-out items stay in the vocabulary (dense ids ``1..N`` are unchanged), so a model whose
item representation comes from features can score them. An id-only model still has a row for
each (trained only where the objective samples it as a negative). TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from sasrec_tf.choices import TARGET_GROUPS

__all__ = ["TARGET_GROUPS", "ColdStart", "check_fraction", "choose_cold_items", "cold_target_mask", "hold_out_as_recorded",
           "hold_out_items", "remove_items"]

def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in ``[0, 1)``; ``ValueError`` otherwise."""
    fraction = float(fraction)
    if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise ValueError(f"the fraction of cold items must be in [0, 1), got {fraction!r}")
    return fraction


def choose_cold_items(num_items: int, fraction: float, seed: int = 0) -> np.ndarray:
    """The held-out items: ``round(fraction * num_items)`` dense ids drawn uniformly without
    replacement from ``1..num_items`` (at least one when ``fraction > 0``, at most all but one),
    sorted, int64. The same ``(num_items, fraction, seed)`` gives the same items.

    Raises:
      ValueError: ``fraction`` outside ``[0, 1)``, or a catalogue of fewer than 2 items with
        ``fraction > 0``.
    """
    fraction = check_fraction(fraction)
    num_items = int(num_items)
    if fraction == 0.0:
        return np.zeros(0, np.int64)
    if num_items < 2:
        raise ValueError(f"holding out cold items needs at least 2 items, the catalogue has {num_items}")
    count = min(max(int(round(fraction * num_items)), 1), num_items - 1)
    chosen = np.random.default_rng(seed).choice(num_items, size=count, replace=False) + 1
    return np.sort(chosen).astype(np.int64)


def cold_target_mask(targets: Any, cold_items: Any) -> np.ndarray:
    """``[n]`` bool: whether each target is one of ``cold_items``."""
    return np.isin(np.asarray(targets, np.int64).reshape(-1), np.asarray(cold_items, np.int64))


def remove_items(sequences: Sequence[np.ndarray], items: Any) -> tuple[list[np.ndarray], int]:
    """``sequences`` without any occurrence of ``items`` (order kept; read-only arrays), and how
    many occurrences were removed."""
    lengths = np.fromiter((len(s) for s in sequences), np.int64, count=len(sequences))
    if not len(sequences) or not lengths.sum():
        return [np.asarray(s, np.int64) for s in sequences], 0
    flat = np.concatenate([np.asarray(s, np.int64) for s in sequences])
    keep = ~np.isin(flat, np.asarray(items, np.int64))
    rows = np.repeat(np.arange(len(sequences)), lengths)
    kept = flat[keep]
    kept.flags.writeable = False
    new_lengths = np.bincount(rows[keep], minlength=len(sequences))
    return np.split(kept, np.cumsum(new_lengths)[:-1]), int(len(flat) - len(kept))


@dataclasses.dataclass(frozen=True)
class ColdStart:
    """What :func:`hold_out_items` did: the held-out items and how much it removed.

    Attributes:
      items: the held-out dense item ids, sorted int64.
      fraction, seed: how they were chosen (:func:`choose_cold_items`).
      num_items: the catalogue's size.
      removed_training_interactions: interactions removed from the training sequences.
      removed_history_items: items removed from the validation and test input histories.
      cold_targets: ``{stage: number of cold targets}`` for ``valid`` and ``test``.
    """

    items: np.ndarray
    fraction: float
    seed: int
    num_items: int
    removed_training_interactions: int
    removed_history_items: dict[str, int]
    cold_targets: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of a run (``metrics.json``'s ``cold_start``, the model card's)."""
        return {"fraction": self.fraction, "seed": self.seed, "cold_items": int(len(self.items)),
                "catalogue_items": self.num_items,
                "removed_training_interactions": self.removed_training_interactions,
                "removed_history_items": dict(self.removed_history_items),
                "cold_targets": dict(self.cold_targets),
                "histories": "held-out items removed from validation and test inputs"}


def hold_out_items(split: Any, fraction: float, seed: int = 0) -> tuple[Any, ColdStart]:
    """The leave-one-out ``split`` with a seeded random ``fraction`` of its items held out.

    Every occurrence of a held-out item is removed from ``split.train`` and from the validation
    and test input histories; the targets, the evaluated users and ``num_items`` are unchanged
    (see the module doc). ``fraction == 0`` returns ``split`` itself.

    Args:
      split: a :class:`~sasrec_tf.data.sequences.LeaveOneOutSplit`.
      fraction: the share of the catalogue held out, in ``[0, 1)``.
      seed: seeds the choice (:func:`choose_cold_items`), independent of the model's seed, so
        models trained with different seeds are compared on the same split.

    Returns:
      ``(split, ColdStart)``.
    """
    items = choose_cold_items(split.num_items, fraction, seed)
    if not len(items):
        removed = {"valid": 0, "test": 0}
        return split, ColdStart(items, 0.0, int(seed), int(split.num_items), 0, removed, dict(removed))
    train, removed_train = remove_items(split.train, items)
    valid_inputs, removed_valid = remove_items(split.valid_inputs, items)
    test_inputs, removed_test = remove_items(split.test_inputs, items)
    held_out = dataclasses.replace(split, train=train, valid_inputs=valid_inputs, test_inputs=test_inputs)
    cold = ColdStart(
        items=items, fraction=float(fraction), seed=int(seed), num_items=int(split.num_items),
        removed_training_interactions=removed_train,
        removed_history_items={"valid": removed_valid, "test": removed_test},
        cold_targets={stage: int(cold_target_mask(getattr(split, f"{stage}_targets"), items).sum())
                      for stage in ("valid", "test")})
    return held_out, cold


def hold_out_as_recorded(split: Any, record: Any, source: str = "the run's record") -> tuple[Any, ColdStart]:
    """:func:`hold_out_items` again, as a training run recorded it (:meth:`ColdStart.to_dict`:
    ``metrics.json``'s and the model card's ``cold_start``), so a model is re-evaluated on the
    split it was trained and evaluated on (``sasrec-tf evaluate``).

    The fraction and seed choose the same items for the same catalogue; the catalogue size and the
    number of held-out items are checked against the record.

    Raises:
      ValueError: a record without a fraction and seed, of another catalogue size, or whose items
        cannot be chosen again (named by ``source``).
    """
    if not isinstance(record, dict):
        raise ValueError(f"{source}: cold_start must be an object with fraction and seed, got {record!r}")
    try:
        fraction, seed = check_fraction(record["fraction"]), int(record["seed"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: cold_start needs a fraction in [0, 1) and an integer seed ({err})") from None
    catalogue = record.get("catalogue_items")
    if catalogue is not None and int(catalogue) != int(split.num_items):
        raise ValueError(f"{source}: the training run held out items of a catalogue of {catalogue} items, this "
                         f"log's has {split.num_items}: the hold-out cannot be applied again")
    held_out, cold = hold_out_items(split, fraction, seed)
    expected = record.get("cold_items")
    if expected is not None and int(expected) != len(cold.items):
        raise ValueError(f"{source}: the training run held out {expected} items, fraction {fraction} and seed {seed} "
                         f"choose {len(cold.items)} here")
    return held_out, cold
