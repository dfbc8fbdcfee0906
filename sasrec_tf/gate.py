"""The publish gate: whether a new model may replace the published one, judged on their cards.

A daily loop publishes a version only when it is at least as good as the one serving
(:func:`sasrec_tf.export.export_saved_model` with ``gate_on``). The rule reads the **validation**
metric of both model cards (:mod:`sasrec_tf.card`): a gate on the test stage would select models
on the test set. TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from sasrec_tf.choices import PROTOCOLS

__all__ = ["GateDecision", "GateRefused", "gate_decision", "gate_value"]


class GateRefused(ValueError):
    """A version was not published: its validation metric is worse than the serving one's."""


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """The publish gate's verdict on a new model against the latest published version.

    ``old`` and ``old_version`` are None when there is nothing to compare with (no earlier
    version, or one without a card or without the metric); the new model then passes.
    """

    passed: bool
    metric: str
    new: float
    old: float | None
    old_version: int | None
    tolerance: float
    message: str


def gate_value(card: Mapping[str, Any], metric: str) -> float | None:
    """The validation value of ``metric`` in a card, or None if it has none.

    Args:
      card: a model card (:func:`sasrec_tf.card.read_card`).
      metric: ``NAME`` (full ranking, e.g. ``ndcg@10``) or ``PROTOCOL.NAME`` with protocol
        ``full`` or ``sampled`` (e.g. ``sampled.hr@10``). Always the validation stage.

    Raises:
      ValueError: a malformed metric.
    """
    protocol, _, name = metric.rpartition(".")
    protocol = protocol or "full"
    if protocol not in PROTOCOLS or not name:
        raise ValueError(f"gate metric must be NAME or PROTOCOL.NAME with protocol in {PROTOCOLS}, got {metric!r}")
    value = ((card.get("metrics") or {}).get("valid") or {}).get(protocol, {}).get(name)
    return None if value is None else float(value)


def gate_decision(new_card: Mapping[str, Any], old_card: Mapping[str, Any] | None, metric: str, *,
                  tolerance: float = 0.0, old_version: int | None = None) -> GateDecision:
    """The gate's rule: pass unless ``new`` < ``old`` - ``tolerance`` on the validation ``metric``.

    Args:
      new_card: the card of the model to publish.
      old_card: the card of the latest published version; None when it has none (or there is none).
      metric: the validation metric (see :func:`gate_value`).
      tolerance: how much worse than the old value the new one may be.
      old_version: the latest published version's number, for the message; None: no earlier version.

    Returns:
      A :class:`GateDecision`; a new model passes when there is nothing to compare with.

    Raises:
      ValueError: a negative or non-finite tolerance, a malformed metric, or a new card without
        that metric (nothing to compare: pass ``--force`` to publish without the gate).
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the gate tolerance must be a finite number >= 0, got {tolerance!r}")
    new = gate_value(new_card, metric)
    if new is None:
        raise ValueError(f"the model's card has no validation {metric} to gate on (metrics.valid in its card or "
                         "metrics.json); train with evaluation, or publish without the gate (--force)")
    where = f"version {old_version}" if old_version is not None else "the latest version"
    old = gate_value(old_card, metric) if old_card is not None else None
    if old_card is None or old is None:
        reason = ("no earlier version" if old_version is None else
                  f"{where} has no card" if old_card is None else f"{where}'s card has no validation {metric}")
        return GateDecision(True, metric, new, None, old_version, tolerance,
                            f"gate: {reason}: publishing (validation {metric} {new:.6g})")
    passed = new >= old - tolerance
    if passed:
        message = (f"gate: validation {metric} {new:.6g} against {old:.6g} of {where} "
                   f"(tolerance {tolerance:g}): publishing")
    else:
        message = (f"refusing to publish: validation {metric} {new:.6g} is worse than {old:.6g} of {where} "
                   f"by more than the tolerance {tolerance:g}")
    return GateDecision(passed, metric, new, old, old_version, tolerance, message)
