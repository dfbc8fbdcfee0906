"""The cold-start protocol's table of cold-score offsets: what serving new items costs and buys.

A model with item features serves a cold item (no trained id row) from its features, and those
items then take top-k places from warm targets (measured in docs/results.md, "Where the warm
targets' loss goes"). ``feature_cold_score_offset`` (``sasrec-tf export --cold-score-offset``)
lowers every cold item's score by a constant: a larger offset gives new items fewer places and
warm targets more, without retraining. :func:`cold_offset_table` ranks one stage (validation, so
that the choice never sees the test split) at several offsets, a full-ranking pass each, and reports
cold, warm and all targets at each, plus the cold items not served at all, which bounds what any
offset can give back to warm targets.
"""

from __future__ import annotations

from typing import Any, Sequence

from sasrec_tf.evaluation.metrics import DEFAULT_KS
from sasrec_tf.ranking.rules import check_cold_score_offset

__all__ = ["DEFAULT_COLD_OFFSETS", "NOT_SERVED_OFFSET", "cold_offset_table", "format_cold_offset_table"]

# Offsets the table tries by default: scores of the trained recipes spread over a few units.
DEFAULT_COLD_OFFSETS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
# An offset no score difference reaches (float32 scores stay finite): cold items are never above a
# warm item. Used for the table's "not served" row, never exported.
NOT_SERVED_OFFSET = 1e30


class _Offset:
    """``model`` ranked with its cold items' scores lowered by ``offset``: every member is the
    model's, except ``item_score_bias`` (read by :class:`~sasrec_tf.ranking.Ranker`)."""

    def __init__(self, model: Any, offset: float):
        self._model, self._offset = model, float(offset)

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def item_score_bias(self):
        return self._model.item_score_bias(self._offset)


def _row(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"all" if group == "full" else group: dict(metrics[group]) for group in ("full", "cold", "warm")}


def cold_offset_table(model: Any, split: Any, cold_items: Any, *, offsets: Sequence[float] = DEFAULT_COLD_OFFSETS,
                      stage: str = "valid", repeated_targets: str = "miss", batch_size: int = 1024,
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Full ranking of ``split``'s ``stage`` at each cold-score offset, split by target.

    Args:
      model: a :class:`~sasrec_tf.SASRec` with item features (``item_score_bias(offset)``).
      split: the cold-start protocol's split (:func:`sasrec_tf.data.cold_start.hold_out_items`).
      cold_items: the dense ids held out (``ColdStart.items``).
      offsets: the offsets to try, each finite and >= 0.
      stage: ``"valid"`` (the default: the offset is a choice) or ``"test"``.

    Returns:
      ``{"stage": ..., "offsets": [{"offset": o, "cold": {...}, "warm": {...}, "all": {...}}, ...],
      "not_served": {"cold": ..., "warm": ..., "all": ...}}``, each group's HR / NDCG / MRR at
      ``ks`` and its number of targets; ``not_served`` ranks with cold items below every warm one.

    Raises:
      ValueError: a model without item features, or a negative or non-finite offset.
    """
    from sasrec_tf.evaluation.protocols import evaluate

    if not getattr(model, "uses_item_features", False):
        raise ValueError("the cold-score offset applies to a model with item features (feature_fusion sum, concat "
                         "or gate)")
    if not len(offsets):
        raise ValueError("give at least one offset")
    offsets = [check_cold_score_offset(o, "offsets") for o in offsets]

    def ranked(offset: float) -> dict[str, Any]:
        metrics = evaluate(_Offset(model, offset), split, stage=stage, protocols=("full",), cold_items=cold_items,
                           repeated_targets=repeated_targets, batch_size=batch_size, ks=ks)
        return _row(metrics)

    return {"stage": stage, "offsets": [{"offset": o, **ranked(o)} for o in offsets],
            "not_served": ranked(NOT_SERVED_OFFSET)}


def format_cold_offset_table(table: dict[str, Any], metric: str = "ndcg@10") -> str:
    """The table as text: a line per offset with ``metric`` on cold, warm and all targets, and the
    warm targets' loss against cold items not served (what exposing new items costs them)."""
    lines = [f"cold-score offsets ({table['stage']}, full ranking, {metric}): cold / warm / all targets, "
             "warm vs cold not served"]
    rows = [(f"{row['offset']:g}", row) for row in table["offsets"]] + [("not served", table["not_served"])]
    best_warm = table["not_served"]["warm"].get(metric)
    for label, row in rows:
        values = [row[group].get(metric) for group in ("cold", "warm", "all")]
        line = f"  {label:>10}  " + " / ".join("-" if v is None else f"{v:.4f}" for v in values)
        if best_warm and values[1] is not None:
            line += f"  {100 * (values[1] / best_warm - 1):+.1f}%"
        lines.append(line)
    return "\n".join(lines)
