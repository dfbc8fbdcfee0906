"""The model card: what a trained model or an export version is, as one machine-readable JSON file.

A daily retraining loop publishes a new version only when it is at least as good as the one
serving, and someone paged at night asks what a version was trained on. Both need the same facts
beside the weights, in a form a program reads: ``card.json`` in every trained model directory
(written by the training run) and ``assets.extra/card.json`` in every export version (copied by
:func:`sasrec_tf.export.export_saved_model`; TF Serving ignores ``assets.extra/`` apart from its
warmup file, so the card cannot disturb serving). Its fields::

    format       "sasrec-tf card 1"
    created      UTC time the card was written (ISO 8601)
    data         users, items, interactions, sequence length statistics, and the sha256 of ids
                 and sequences that a resumed run must match (experiment.run_fingerprint);
                 null when unknown (a model trained before cards existed)
    config       the SASRecConfig
    metrics      the run's metrics.json "valid" / "test": {"full": {...}, "sampled": {...}}, and
                 under the cold-start protocol "cold" / "warm" (full ranking on those targets,
                 with their number, "targets")
    training     the run's metrics.json "training" (epochs, wall_seconds, how it stopped)
    parent       the warm-start parent: {"path", and what was carried over (``WarmStart``:
                 known_items, new_items, retired_items, copied_weights)}, or null (cold start)
    versions     python, sasrec_tf, tensorflow, tf_keras
    export       (export copies only) model name, version, source directory, export time
    cold_start   (cold-start runs only) the hold-out: fraction, seed, items held out, removed
                 interactions, cold targets per stage (metrics.json's "cold_start")

:func:`write_card` writes one atomically, :func:`read_card` reads and :func:`validate_card`
checks one, and :func:`model_card` gives the card of a model directory (building it from
``config.json`` and ``metrics.json`` for a directory without one). The publish gate's rule on the
validation metric, which reads cards, is :mod:`sasrec_tf.gate` (re-exported here, ``compare``
being the old name of :func:`~sasrec_tf.gate.gate_decision`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sasrec_tf.config import SASRecConfig
from sasrec_tf.files import atomic_write_json
from sasrec_tf.gate import GateDecision, GateRefused, gate_decision, gate_value
from sasrec_tf.layout import ASSETS_EXTRA_DIR, CONFIG_FILE, METRICS_FILE
from sasrec_tf.choices import PROTOCOLS, STAGES, TARGET_GROUPS

__all__ = ["CARD_FILE", "CARD_FORMAT", "GateDecision", "GateRefused", "build_card", "compare", "data_statistics",
           "export_card", "find_card", "gate_decision", "gate_value", "model_card", "read_card", "validate_card",
           "write_card"]

compare = gate_decision  # the gate's rule under its old name

CARD_FILE = "card.json"
CARD_FORMAT = "sasrec-tf card 1"
_PERCENTILES = (50, 90, 99)
_FIELDS = ("format", "created", "data", "config", "metrics", "training", "parent", "versions")


# ------------------------------------------------------------------------------------ building
def data_statistics(data: Any, shards: Any = None) -> dict[str, Any]:
    """Users, items, interactions and the distribution of sequence lengths of a training log.

    Args:
      data: a :class:`~sasrec_tf.data.sequences.SequenceData` (the whole log in memory).
      shards: a :class:`~sasrec_tf.data.tfrecord.ShardedSequences` the run trained from; its
        manifest then gives the statistics (``data`` holds only the evaluated users).

    Returns:
      ``{"users", "items", "interactions", "sequence_length": {"min", "mean", "p50", "p90",
      "p99", "max"}}``; percentiles are lengths (the smallest with at least that share of users
      at or below it).
    """
    if shards is not None:
        from sasrec_tf.data.tfrecord.schema import train_length_histogram

        lengths, users = train_length_histogram(shards.manifest, leave_one_out=False)
        sizes = {"users": shards.num_users, "items": shards.num_items, "interactions": shards.num_interactions}
    else:
        lengths, users = np.unique(data.lengths(), return_counts=True)
        sizes = {"users": data.num_users, "items": data.num_items, "interactions": int(data.lengths().sum())}
    order = np.argsort(lengths)
    lengths, users = np.asarray(lengths, np.int64)[order], np.asarray(users, np.int64)[order]
    share = np.cumsum(users) / max(int(users.sum()), 1)
    summary: dict[str, Any] = {}
    if len(lengths):
        summary = {"min": int(lengths[0]), "mean": round(float(np.average(lengths, weights=users)), 3)}
        for q in _PERCENTILES:
            summary[f"p{q}"] = int(lengths[min(np.searchsorted(share, q / 100 - 1e-12), len(lengths) - 1)])
        summary["max"] = int(lengths[-1])
    return {**{k: int(v) for k, v in sizes.items()}, "sequence_length": summary}


def _versions() -> dict[str, str]:
    import tensorflow as tf
    import tf_keras

    import sasrec_tf

    return {"python": platform.python_version(), "sasrec_tf": sasrec_tf.__version__,
            "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_card(
    config: SASRecConfig | Mapping[str, Any],
    *,
    data: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | str | None = None,
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A card (the dictionary :func:`write_card` writes), validated.

    Args:
      config: the model's :class:`~sasrec_tf.SASRecConfig` (or its ``to_dict()``).
      data: :func:`data_statistics` plus ``"sha256"``, the data digest of
        :func:`sasrec_tf.experiment.run_fingerprint`; None when the data is unknown.
      metrics: the run's ``metrics.json`` (its ``valid``, ``test``, ``training`` and ``parent``
        are kept).
      parent: the warm-start parent: ``WarmStart.to_dict()``, or its path; None: the one in
        ``metrics`` (a warm-started run records it there), else a cold start.
      versions: the package versions the model was trained with; None: this process's.
    """
    config = config if isinstance(config, SASRecConfig) else SASRecConfig.from_dict(dict(config))
    metrics = dict(metrics or {})
    card = {
        "format": CARD_FORMAT,
        "created": _now(),
        "data": dict(data) if data is not None else None,
        "config": config.to_dict(),
        "metrics": {stage: metrics[stage] for stage in STAGES if stage in metrics} or None,
        "training": metrics.get("training"),
        "parent": _parent(parent if parent is not None else metrics.get("parent")),
        "versions": dict(versions) if versions is not None else _versions(),
    }
    if metrics.get("cold_start") is not None:
        card["cold_start"] = dict(metrics["cold_start"])
    return validate_card(card)


def _parent(parent: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The card's ``parent``: ``{"path": ..., **what was carried over}`` (``WarmStart.to_dict()``
    names the path ``parent``)."""
    if parent is None:
        return None
    if isinstance(parent, (str, os.PathLike)):
        return {"path": os.fspath(parent)}
    parent = dict(parent)
    if "path" not in parent and "parent" in parent:
        parent["path"] = str(parent.pop("parent"))
    return parent


def write_card(
    directory: str | os.PathLike[str],
    config: SASRecConfig | Mapping[str, Any],
    *,
    data: Any = None,
    shards: Any = None,
    fingerprint: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    parent: Mapping[str, Any] | str | None = None,
) -> Path:
    """Write ``directory/card.json`` for a trained model (atomically) and return its path.

    Args:
      directory: the model directory (or its staging copy).
      config: the model's configuration.
      data: the training log (:class:`~sasrec_tf.data.sequences.SequenceData`), for its
        statistics; with ``shards``, the statistics come from the shards (see
        :func:`data_statistics`). None: no data section.
      fingerprint: ``run_fingerprint(data, config, shards)["data"]`` (its ``sha256`` identifies
        the data); None leaves the digest out.
      metrics: the run's ``metrics.json``.
      parent: the warm-start parent (``WarmStart.to_dict()`` or a path); None: the one in
        ``metrics`` (``metrics["parent"]``), if any.
    """
    stats = None
    if data is not None or shards is not None:
        stats = data_statistics(data, shards)
        if fingerprint is not None:
            stats["sha256"] = fingerprint["sha256"]
    card = build_card(config, data=stats, metrics=metrics, parent=parent)
    return atomic_write_json(Path(directory) / CARD_FILE, card)


def export_card(card: Mapping[str, Any], *, model_name: str, version: int, source: str | None,
                gate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The copy of a model's card that goes into an export version: the same, plus ``export``
    (name, version, source directory, time, the versions of the exporting process, and the
    publish gate's verdict, a :class:`GateDecision` as a dict plus ``forced``, or None)."""
    export = {"model_name": model_name, "version": int(version), "source": source, "exported": _now(),
              "versions": _versions(), "gate": dict(gate) if gate is not None else None}
    return validate_card({**card, "export": export})


# ------------------------------------------------------------------------------------ reading
def find_card(path: str | os.PathLike[str]) -> Path | None:
    """The card of a model directory (``card.json``) or of an export version
    (``assets.extra/card.json``), or the file itself; None if there is none."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / CARD_FILE, path / ASSETS_EXTRA_DIR / CARD_FILE):
        if candidate.is_file():
            return candidate
    return None


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate the card of a model directory, an export version, or a card file.

    Raises:
      FileNotFoundError: there is no card there.
      ValueError: the file is not valid JSON or not a valid card (the message names the file).
    """
    found = find_card(path)
    if found is None:
        raise FileNotFoundError(f"{path} has no model card ({CARD_FILE} or {ASSETS_EXTRA_DIR}/{CARD_FILE})")
    try:
        card = json.loads(found.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{found}: not a JSON model card ({err})") from None
    try:
        return validate_card(card)
    except ValueError as err:
        raise ValueError(f"{found}: {err}") from None


def validate_card(card: Any) -> dict[str, Any]:
    """Check a card's structure and return it; ``ValueError`` names the first problem.

    Checked: the format; every field present; the config valid for :class:`SASRecConfig`; each
    metric a finite number under ``metrics.<valid|test>.<full|sampled>``; ``data`` and
    ``parent`` objects or null.
    """
    if not isinstance(card, dict):
        raise ValueError(f"a model card is a JSON object, got {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"format must be {CARD_FORMAT!r}, got {card.get('format')!r}")
    missing = [name for name in _FIELDS if name not in card]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    SASRecConfig.from_dict(card["config"])  # raises naming the option
    for name in ("data", "training", "parent", "metrics"):
        if card[name] is not None and not isinstance(card[name], dict):
            raise ValueError(f"{name} must be an object or null, got {card[name]!r}")
    if card["parent"] is not None and not isinstance(card["parent"].get("path"), str):
        raise ValueError(f"parent.path must be the parent model's directory, got {card['parent'].get('path')!r}")
    for stage, protocols in (card["metrics"] or {}).items():
        if stage not in STAGES or not isinstance(protocols, dict):
            raise ValueError(f"metrics.{stage}: expected stages {STAGES} of {{protocol: {{metric: value}}}}")
        for protocol, values in protocols.items():
            if protocol not in PROTOCOLS + TARGET_GROUPS or not isinstance(values, dict):
                raise ValueError(f"metrics.{stage}.{protocol}: expected protocols {PROTOCOLS} (or target groups "
                                 f"{TARGET_GROUPS}) of {{metric: value}}")
            for metric, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"metrics.{stage}.{protocol}.{metric} must be a finite number, got {value!r}")
    if card.get("cold_start") is not None and not isinstance(card["cold_start"], dict):
        raise ValueError(f"cold_start must be an object, got {card['cold_start']!r}")
    if not isinstance(card["versions"], dict):
        raise ValueError(f"versions must be an object, got {card['versions']!r}")
    return card


def model_card(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of a trained model directory: its ``card.json``, or, for a directory trained
    before cards were written, one built from its ``config.json`` and ``metrics.json`` (data,
    parent and versions unknown: null, null and ``{}``)."""
    model_dir = Path(model_dir)
    if (model_dir / CARD_FILE).is_file():
        return read_card(model_dir / CARD_FILE)
    try:
        config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))["sasrec_config"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{model_dir} is not a sasrec-tf model directory: no {CARD_FILE} "
                                f"or {CONFIG_FILE}") from None
    except (ValueError, KeyError) as err:
        raise ValueError(f"{model_dir / CONFIG_FILE}: unreadable ({err})") from None
    metrics = None
    metrics_file = model_dir / METRICS_FILE
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{metrics_file}: not valid JSON ({err})") from None
    return build_card(config, metrics=metrics, versions={})
