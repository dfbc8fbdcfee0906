"""Pictures of training runs and ablations, as PNG files (matplotlib's Agg renderer, no display, no pyplot).

* :func:`plot_run`: a run directory's training loss per epoch and its validation HR@10 / NDCG@10 /
  MRR on the epochs that validated, read from the TensorBoard event files under ``DIR/logs``.
* :func:`plot_bars` / :func:`plot_ablation`: test metrics of several configurations as bars
  (``sasrec-tf ablation``'s ``ablation.png``, ``benchmarks/quality.py``'s charts).
* :func:`plot_validation_curves` / :func:`plot_ablation_curves`: several runs' curves overlaid.

Only what was measured is drawn: a validation point exists for an epoch that validated, and a
line joins two points only when they are on consecutive epochs, so no line crosses an epoch that
did not validate. The series a picture shows are :class:`Curves`, which :func:`read_curves` and
:meth:`Curves.from_epoch_logs` build and the tests read. Nothing here imports TensorFlow at
import time (reading event files does, through TensorBoard).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sasrec_tf.files import write_with
from sasrec_tf.layout import LOGS_DIR, METRICS_FILE

__all__ = ["Curves", "VALIDATION_PREFIX", "read_curves", "plot_run", "plot_curves", "plot_bars", "plot_ablation",
           "plot_validation_curves", "plot_ablation_curves", "TEST_PANELS", "metric_panels"]

VALIDATION_PREFIX = "val_"
# TensorBoard's run directories and the prefix Keras' callback gives every logged key
_TRAIN_RUN, _VALIDATION_RUN, _TAG_PREFIX = "train", "validation", "epoch_"
# the bar charts' panels: panel title → (bar label → the column of a row, as the ablation and the
# quality benchmark name their test metrics)
TEST_PANELS: dict[str, dict[str, str]] = {
    "full ranking (every item; history excluded)": {"NDCG@10": "full_ndcg@10", "HR@10": "full_hr@10"},
    "sampled protocol (100 uniform negatives)": {"NDCG@10": "sampled_ndcg@10", "HR@10": "sampled_hr@10"},
}
_DPI = 110
_COLOURS = {"hr@10": "tab:blue", "ndcg@10": "tab:orange", "mrr": "tab:green"}


@dataclasses.dataclass(frozen=True)
class Curves:
    """What one run measured, per epoch (numbered from 1, as Keras prints them).

    Attributes:
      loss: ``(epoch, training loss)`` for every epoch that logged one.
      validation: metric name (``"hr@10"``, ``"ndcg@10"``, ``"mrr"``, without ``val_``) →
        ``(epoch, value)`` on the epochs that validated only.
    """

    loss: list[tuple[int, float]]
    validation: dict[str, list[tuple[int, float]]]

    @property
    def validated_epochs(self) -> list[int]:
        """The epochs with a validation measurement, in order."""
        return sorted({epoch for points in self.validation.values() for epoch, _ in points})

    @classmethod
    def from_epoch_logs(cls, logs: Iterable[tuple[int, Mapping[str, Any]]]) -> "Curves":
        """Curves from ``(epoch, logs)`` pairs: ``epoch`` as Keras counts it (from 0), ``logs`` the
        epoch-end dictionary (``loss``, ``val_hr@10``, ...); a later pair for the same epoch
        replaces an earlier one (a resumed run repeats the epochs after its last backup).

        A validation value that is missing, ``None`` or NaN is no measurement. Where every epoch
        holds validation values and an epoch's are all exactly those of the epoch before, they are
        the validation callback's values carried forward over an epoch that did not validate (what
        it did before issue 25) and are dropped: a run whose validation really repeats itself to
        the last bit on every metric then shows its first such point only.
        """
        by_epoch: dict[int, dict[str, float]] = {}
        for epoch, values in logs:
            by_epoch[int(epoch) + 1] = {k: float(v) for k, v in values.items() if _is_number(v)}
        epochs = sorted(by_epoch)
        loss = [(e, by_epoch[e]["loss"]) for e in epochs if "loss" in by_epoch[e]]
        measured = {e: {k[len(VALIDATION_PREFIX):]: v for k, v in by_epoch[e].items()
                        if k.startswith(VALIDATION_PREFIX) and k != VALIDATION_PREFIX + "loss"}
                    for e in epochs}
        carried_forward = bool(epochs) and all(measured[e] for e in epochs)
        validation: dict[str, list[tuple[int, float]]] = {}
        previous = None
        for epoch in epochs:
            values = measured[epoch]
            if not values or (carried_forward and values == previous):
                continue
            previous = values
            for name, value in values.items():
                validation.setdefault(name, []).append((epoch, value))
        return cls(loss=loss, validation=validation)


def _is_number(value: Any) -> bool:
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _read_scalars(directory: Path) -> dict[int, dict[str, float]]:
    """``{step: {tag: value}}`` of one TensorBoard run directory's scalar summaries (TF2 writes
    them as tensors; older writers as simple values). The accumulator drops the events a restarted
    writer logged again (its ``purge_orphaned_data``), so a resumed run's epochs appear once."""
    if not directory.is_dir():
        return {}
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    events = event_accumulator.EventAccumulator(
        str(directory), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    events.Reload()
    tags = events.Tags()
    steps: dict[int, dict[str, float]] = {}
    for tag in tags.get(event_accumulator.TENSORS, []):
        for event in events.Tensors(tag):
            steps.setdefault(event.step, {})[tag] = float(tensor_util.make_ndarray(event.tensor_proto))
    for tag in tags.get(event_accumulator.SCALARS, []):
        for event in events.Scalars(tag):
            steps.setdefault(event.step, {})[tag] = float(event.value)
    return steps


def read_curves(run_dir: str | Path) -> Curves:
    """The curves of a ``sasrec-tf train --out DIR`` run from its TensorBoard logs: ``epoch_loss``
    under ``DIR/logs/train`` and ``epoch_hr@10`` etc. under ``DIR/logs/validation`` (Keras'
    ``TensorBoard`` callback, one step per epoch).

    Raises:
      FileNotFoundError: ``DIR/logs`` holds no event file.
    """
    logs = Path(run_dir) / LOGS_DIR
    if not any(logs.glob("*/events.out.tfevents.*")):
        raise FileNotFoundError(f"{logs} holds no TensorBoard event file: is {run_dir} a `sasrec-tf train --out` "
                                "directory?")
    epochs: dict[int, dict[str, float]] = {}
    for run, prefix in ((_TRAIN_RUN, ""), (_VALIDATION_RUN, VALIDATION_PREFIX)):
        for step, values in _read_scalars(logs / run).items():
            epochs.setdefault(step, {}).update({prefix + tag[len(_TAG_PREFIX):]: v for tag, v in values.items()
                                                if tag.startswith(_TAG_PREFIX)})
    return Curves.from_epoch_logs(sorted(epochs.items()))


def _figure(columns: int, size: tuple[float, float], **subplots):
    """A figure with one row of ``columns`` panels, drawn by matplotlib's Agg renderer without
    pyplot: no display needed, and a caller's pyplot backend and figures are left alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(1, columns, squeeze=False, **subplots)[0]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda handle: fig.savefig(handle, format="png", dpi=_DPI))
    return path


def _gapped(points: Sequence[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """x and y with a NaN between points on non-consecutive epochs: matplotlib breaks the line
    there, so a line only joins measurements of neighbouring epochs."""
    xs: list[float] = []
    ys: list[float] = []
    for epoch, value in points:
        if xs and epoch != xs[-1] + 1:
            xs.append(math.nan)
            ys.append(math.nan)
        xs.append(epoch)
        ys.append(value)
    return xs, ys


def _legend_below(fig, handles_labels, columns: int = 4) -> None:
    """One legend for the whole figure, centred below the panels (it hides no data), then the
    layout tightened around both."""
    handles, labels = handles_labels
    rows = math.ceil(len(labels) / columns) if labels else 0
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=min(columns, len(labels)), fontsize="small",
                   frameon=False)
    fig.tight_layout(rect=(0, (0.08 + 0.22 * rows) / fig.get_figheight(), 1, 1))


def _epoch_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.grid(alpha=0.3)


def plot_curves(curves: Curves, path: str | Path, *, title: str | None = None, best_epoch: int | None = None) -> Path:
    """Two panels: the training loss per epoch, and the validation metrics on the epochs that
    validated (markers; lines only between consecutive epochs). ``best_epoch`` draws a dotted
    line at the epoch whose weights the run kept. Returns ``path``."""
    fig, (left, right) = _figure(2, (11, 4.2))
    if curves.loss:
        left.plot(*_gapped(curves.loss), marker=".", color="tab:gray")
    left.set_title("training loss")
    left.set_ylabel("loss")
    _epoch_axis(left)
    for name, points in curves.validation.items():
        right.plot(*_gapped(points), marker="o", markersize=5, label=name.upper(),
                   color=_COLOURS.get(name))
    validated = len(curves.validated_epochs)
    right.set_title(f"validation, full ranking ({validated} validated epoch{'s' * (validated != 1)})")
    right.set_ylabel("metric (0–1)")
    _epoch_axis(right)
    if best_epoch:
        for axis in (left, right):
            axis.axvline(best_epoch, color="black", linestyle=":", linewidth=1,
                         label=f"best validation epoch ({best_epoch})" if axis is right else None)
    if curves.validation or best_epoch:
        right.legend(loc="best", fontsize="small")
    if curves.loss and curves.validation:  # one epoch range for both panels
        epochs = [e for e, _ in curves.loss] + curves.validated_epochs
        for axis in (left, right):
            axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_run(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw a trained run's curves (:func:`read_curves`) into ``path`` (default ``DIR/curves.png``):
    the training loss per epoch, validation HR@10 / NDCG@10 / MRR where measured, and the best
    epoch and test NDCG@10 from ``metrics.json`` when the run has one. Returns the PNG's path."""
    run_dir = Path(run_dir)
    curves = read_curves(run_dir)
    title, best = run_dir.absolute().name, None
    metrics_file = run_dir / METRICS_FILE
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        best = (metrics.get("training") or {}).get("best_epoch")
        test = (metrics.get("test") or {}).get("full") or {}
        if "ndcg@10" in test:
            title += f": test NDCG@10 {test['ndcg@10']:.4f}, HR@10 {test.get('hr@10', math.nan):.4f} (full ranking)"
    return plot_curves(curves, run_dir / "curves.png" if path is None else path, title=title, best_epoch=best)


def _value(row: Mapping[str, Any], column: str) -> float:
    return float(row[column]) if _is_number(row.get(column)) else math.nan


def plot_bars(labels: Sequence[str], panels: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, *,
              highlight: Iterable[int] = (), title: str | None = None, xlabel: str = "test metric (0–1)") -> Path:
    """Horizontal grouped bars, one row per label (top to bottom in order), one panel per entry of
    ``panels`` (panel title → bar name → one value per label; NaN draws nothing). Rows whose
    index is in ``highlight`` get a shaded band and a bold label. Each bar is annotated with its
    value. Returns ``path``."""
    import numpy as np

    highlight = set(highlight)
    rows = len(labels)
    per_row = max(len(bars) for bars in panels.values())
    fig, axes = _figure(len(panels), (6.2 * len(panels) + 1.5, 2.1 + 0.28 * per_row * rows), sharey=True)
    positions = np.arange(rows)
    height = 0.8 / max(1, per_row)
    for axis, (panel, bars) in zip(axes, panels.items()):
        top = max([v for values in bars.values() for v in values if _is_number(v)] or [1.0])
        for index, (name, values) in enumerate(bars.items()):
            offsets = positions - 0.4 + height * (index + 0.5)
            drawn = axis.barh(offsets, values, height=height * 0.92, label=name,
                              color=f"C{index}", edgecolor=["black" if i in highlight else "none" for i in range(rows)])
            axis.bar_label(drawn, labels=[f"{v:.4f}" if _is_number(v) else "" for v in values],
                           padding=2, fontsize="x-small")
        for row in highlight:
            axis.axhspan(row - 0.5, row + 0.5, color="gold", alpha=0.18, zorder=0)
        axis.set_xlim(0, top * 1.22)
        axis.set_title(panel, fontsize="medium")
        axis.set_xlabel(xlabel)
        axis.grid(axis="x", alpha=0.3)
    first = axes[0]
    first.set_yticks(positions, labels)
    first.set_ylim(rows - 0.5, -0.5)  # first label on top
    for index, tick in enumerate(first.get_yticklabels()):
        if index in highlight:
            tick.set_fontweight("bold")
    if title:
        fig.suptitle(title)
    _legend_below(fig, first.get_legend_handles_labels())
    return _save(fig, path)


def metric_panels(rows: Sequence[Mapping[str, Any]],
                panels: Mapping[str, Mapping[str, str]] = TEST_PANELS) -> dict[str, dict[str, list[float]]]:
    """:func:`plot_bars`' ``panels`` from table rows: panel title → bar name → the rows' values
    of that column (``TEST_PANELS``: NDCG@10 and HR@10, full ranking and sampled)."""
    return {panel: {bar: [_value(row, column) for row in rows] for bar, column in bars.items()}
            for panel, bars in panels.items()}


def _ablation_label(row: Mapping[str, Any]) -> str:
    name = str(row.get("paper_name") or row["variant"])
    if str(row.get("changes", "")).startswith("same as "):
        name += f" (= {row['changes'][len('same as '):]})"
    return name


def plot_ablation(rows: Sequence[Mapping[str, Any]], path: str | Path, *, highlight: str = "default",
                  title: str | None = None) -> Path:
    """``sasrec-tf ablation``'s bars: per variant (rows as :func:`sasrec_tf.ablation.run_ablation`
    returns them or ``ablation.csv`` holds them), test NDCG@10 and HR@10 under full ranking and
    under the sampled protocol, the ``highlight`` variant (the default configuration) marked.
    Returns ``path``."""
    labels = [_ablation_label(row) for row in rows]
    marked = [i for i, row in enumerate(rows) if row.get("variant") == highlight]
    return plot_bars(labels, metric_panels(rows), path, highlight=marked,
                     title=title or "SASRec ablation: test split, leave-one-out, all users")


def plot_validation_curves(curves: Mapping[str, Curves], path: str | Path, *, highlight: str | None = None,
                           metrics: Sequence[str] = ("ndcg@10", "hr@10"), title: str | None = None) -> Path:
    """Several runs overlaid, one colour each: the training loss and each of ``metrics`` on the
    validated epochs (markers; lines only between consecutive epochs). The ``highlight`` run is
    drawn thick and black. Returns ``path``."""
    from matplotlib import colormaps

    names = ["loss", *metrics]
    fig, axes = _figure(len(names), (4.6 * len(names), 4.4 + 0.22 * math.ceil(len(curves) / 6)))
    tab20 = colormaps["tab20"]  # its 10 dark colours first, then their light partners
    colours = [tab20(2 * i) for i in range(10)] + [tab20(2 * i + 1) for i in range(10)]
    for index, (label, run) in enumerate(curves.items()):
        marked = label == highlight
        style = dict(color="black" if marked else colours[index % 20], linewidth=2.4 if marked else 1.2,
                     zorder=3 if marked else 2, label=label)
        for axis, name in zip(axes, names):
            points = run.loss if name == "loss" else run.validation.get(name, [])
            if points:
                axis.plot(*_gapped(points), marker="." if name == "loss" else "o", markersize=4, **style)
    for axis, name in zip(axes, names):
        axis.set_title("training loss" if name == "loss" else f"validation {name.upper()} (full ranking)",
                       fontsize="medium")
        axis.set_ylabel("loss" if name == "loss" else "metric (0–1)")
        _epoch_axis(axis)
    legend: dict[str, Any] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if title:
        fig.suptitle(title)
    _legend_below(fig, (list(legend.values()), list(legend)), columns=6)
    return _save(fig, path)


def plot_ablation_curves(curves: Mapping[str, Curves], path: str | Path, *, highlight: str = "default",
                         title: str | None = None) -> Path:
    """The ablation variants' curves overlaid (:func:`plot_validation_curves`), the default
    configuration highlighted. Returns ``path``."""
    return plot_validation_curves(curves, path, highlight=highlight,
                                  title=title or "SASRec ablation: training loss and validation per variant")
