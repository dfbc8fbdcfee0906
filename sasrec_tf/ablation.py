"""The paper's ablation study (Kang & McAuley 2018, Table IV) as one command.

Each variant changes one switch of a base :class:`SASRecConfig` (the paper's Amazon or MovieLens
recipe, or any pipeline file): no positional embedding, unshared item embedding, no residual
connections, no dropout, 0 / 1 / 2 / 3 blocks, multi-head attention (2 heads), and the LayerNorm
placements Pre-LN and Post-LN. Every variant is trained with ``model.fit`` like ``sasrec-tf train``
and evaluated on the test split under full ranking and the paper's 100 sampled negatives; the
results go to ``ablation.md`` and ``ablation.csv``, their bars to ``ablation.png`` and every
variant's training loss and validation curves to ``ablation_curves.png`` (:mod:`sasrec_tf.plots`).

``sasrec-tf ablation --data PATH --format F --out DIR [--epochs N] [--variants ...]``
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sasrec_tf.config import SASRecConfig
from sasrec_tf.choices import PROTOCOLS
from sasrec_tf.files import atomic_write_text
from sasrec_tf.plots import Curves

# name → (SASRecConfig changes, what the paper's Table IV calls it)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, "(1) Default"),
    "no_positional_embedding": ({"use_positional_embedding": False}, "(3) Remove PE"),
    "unshared_item_embedding": ({"share_item_embedding": False}, "(4) Unshared IE"),
    "no_residual": ({"use_residual": False}, "(5) Remove RC"),
    "no_dropout": ({"dropout_rate": 0.0}, "(6) Remove Dropout"),
    "blocks_0": ({"num_blocks": 0}, "(7) 0 Block (b=0)"),
    "blocks_1": ({"num_blocks": 1}, "(8) 1 Block (b=1)"),
    "blocks_2": ({"num_blocks": 2}, "2 Blocks (b=2)"),
    "blocks_3": ({"num_blocks": 3}, "(9) 3 Blocks (b=3)"),
    "multi_head": ({"num_heads": 2}, "(10) Multi-Head (2 heads)"),
    "pre_ln": ({"layer_norm": "pre"}, "Pre-LN"),
    "post_ln": ({"layer_norm": "post"}, "Post-LN"),
}
DEFAULT_VARIANTS: tuple[str, ...] = tuple(VARIANTS)
METRIC_COLUMNS = ("full_hr@10", "full_ndcg@10", "sampled_hr@10", "sampled_ndcg@10")
COLUMNS = ("variant", "paper_name", "changes", "epochs", "wall_s") + METRIC_COLUMNS + ("full_ndcg@10_vs_default",)
TABLE_FILES = ("ablation.md", "ablation.csv")
PICTURE_FILES = ("ablation.png", "ablation_curves.png")


def variant_config(base: SASRecConfig, name: str) -> SASRecConfig:
    """``base`` with the changes of variant ``name`` (see :data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown ablation variant {name!r}; known: {list(VARIANTS)}")
    try:
        return base.replace(**VARIANTS[name][0])
    except ValueError as err:
        raise ValueError(f"ablation variant {name!r} does not fit the base configuration: {err}") from None


def run_ablation(
    data,
    base: SASRecConfig,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    *,
    options=None,
    out_dir: str | Path | None = None,
    verbose: int | str = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every variant on ``data`` (a :class:`~sasrec_tf.data.SequenceData`) with
    :func:`sasrec_tf.experiment.train_and_evaluate`, the path ``sasrec-tf train`` takes.

    ``options`` are the :class:`~sasrec_tf.experiment.TrainOptions` of every variant. Variants
    whose configuration equals an earlier one (``blocks_2`` when the base has 2 blocks,
    ``no_dropout`` when it has none) reuse that result instead of training again. With
    ``out_dir``, the tables and pictures (:func:`write_tables`, :func:`write_pictures`) are
    rewritten after every variant; ``on_row`` is called with each finished row (progress
    reporting). TensorFlow's warnings are shown once each (:func:`each_warning_once`).

    Returns one row per variant: ``variant``, ``paper_name``, ``changes``, ``epochs``, ``wall_s``,
    test ``full_hr@10`` / ``full_ndcg@10`` / ``sampled_hr@10`` / ``sampled_ndcg@10``, the
    relative change of full NDCG@10 against ``default`` (when it is among the variants), and
    ``curves``: the variant's training loss and validation metrics per epoch
    (:class:`sasrec_tf.plots.Curves`, validated epochs only; not a table column).
    """
    with each_warning_once():
        return _run_variants(data, base, variants, options=options, out_dir=out_dir, verbose=verbose, on_row=on_row)


def _run_variants(data, base, variants, *, options, out_dir, verbose, on_row) -> list[dict[str, Any]]:
    from sasrec_tf._compat import keras
    from sasrec_tf.experiment import train_and_evaluate

    configs = [(name, variant_config(base, name)) for name in variants]  # validate all before training
    rows: list[dict[str, Any]] = []
    trained: dict[str, dict[str, Any]] = {}
    for name, config in configs:
        key = config.to_json()
        changes = ", ".join(f"{k}={v}" for k, v in sorted(VARIANTS[name][0].items())
                            if getattr(base, k) != v) or "none"
        row: dict[str, Any] = {"variant": name, "paper_name": VARIANTS[name][1], "changes": changes}
        if key in trained:
            row.update({k: trained[key][k] for k in ("epochs", "wall_s", "curves") + METRIC_COLUMNS})
            row["changes"] = f"same as {trained[key]['variant']}"
        else:
            epoch_logs: list[tuple[int, dict[str, Any]]] = []
            recorder = keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: epoch_logs.append((epoch, dict(logs or {}))))
            started = time.perf_counter()
            metrics = train_and_evaluate(data, config, options=options, verbose=verbose,
                                         callbacks=[recorder]).metrics
            row["wall_s"] = round(time.perf_counter() - started, 1)
            row["epochs"] = metrics["training"]["epochs"]
            for protocol in PROTOCOLS:
                for metric in ("hr@10", "ndcg@10"):
                    row[f"{protocol}_{metric}"] = round(float(metrics["test"][protocol][metric]), 4)
            row["curves"] = Curves.from_epoch_logs(epoch_logs)
            trained[key] = row
        rows.append(row)
        _add_relative_change(rows)
        if out_dir is not None:
            write_tables(rows, out_dir, base)
            write_pictures(rows, out_dir)
        if on_row is not None:
            on_row(row)
    return rows


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


class _OncePerMessage(logging.Filter):
    """Passes each warning once: messages that differ only in numbers and object addresses count
    as one (TensorFlow's "5 out of the last 7 calls to <function ... at 0x7f...> triggered
    tf.function retracing", then "6 out of the last 8 calls ..." for the same function)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = f"{record.name}:{_NUMBERS.sub('#', record.getMessage())}"
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def each_warning_once(loggers: Sequence[str] = ("tensorflow", "absl")) -> Iterator[None]:
    """Within the block, each warning of these loggers is shown once.

    Why the ablation needs it: every variant is a new model, and every evaluation of a model
    (validation each epoch, then valid and test, each under two protocols) compiles its own
    ranking ``tf.function``. TensorFlow counts new functions of the same Python code as one
    function retracing and warns about it twice per function, with different counts (its cap,
    ``FREQUENT_TRACING_WARNING_MAX_WARNING_PER_DETECTOR = 2``): the same warning twice.
    """
    once = _OncePerMessage()
    targets = [logging.getLogger(name) for name in loggers]
    for logger in targets:
        logger.addFilter(once)
    try:
        yield
    finally:
        for logger in targets:
            logger.removeFilter(once)


def _add_relative_change(rows: list[dict[str, Any]]) -> None:
    default = next((r for r in rows if r["variant"] == "default"), None)
    for row in rows:
        if default is None or not default["full_ndcg@10"]:
            row["full_ndcg@10_vs_default"] = ""
        else:
            change = row["full_ndcg@10"] / default["full_ndcg@10"] - 1.0
            row["full_ndcg@10_vs_default"] = f"{change:+.1%}"


def format_markdown(rows: Sequence[dict[str, Any]], base: SASRecConfig | None = None) -> str:
    lines = []
    if base is not None:
        lines += ["Base configuration: `" + json.dumps(base.to_dict(), sort_keys=True) + "`", ""]
    lines += ["Test split, leave-one-out, all users. *full*: the target ranked against every item (history "
              "excluded); *sampled*: against 100 uniform negatives (the paper's protocol).", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict[str, Any]], out_dir: str | Path,
                 base: SASRecConfig | None = None) -> tuple[Path, Path]:
    """Write ``ablation.md`` and ``ablation.csv`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    markdown, table = (out_dir / name for name in TABLE_FILES)
    atomic_write_text(markdown, "# SASRec ablation (Table IV of Kang & McAuley 2018)\n\n"
                      + format_markdown(rows, base))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(table, text.getvalue())
    return markdown, table


def write_pictures(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write ``ablation.png`` (the test metrics as bars, the default highlighted) and, when the
    rows hold ``curves``, ``ablation_curves.png`` (each variant's loss and validation curves)
    into ``out_dir``; returns the paths written."""
    from sasrec_tf.plots import plot_ablation, plot_ablation_curves

    out_dir = Path(out_dir)
    bars, curves_png = (out_dir / name for name in PICTURE_FILES)
    written = [plot_ablation(rows, bars)]
    curves = {row["variant"]: row["curves"] for row in rows  # a variant equal to an earlier one: drawn once
              if row.get("curves") is not None and not str(row.get("changes", "")).startswith("same as ")}
    if curves:
        written.append(plot_ablation_curves(curves, curves_png))
    return written
