"""``sasrec-tf info``: the model card of a model directory or an export version, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from sasrec_tf import card as model_card
from sasrec_tf.choices import PROTOCOLS, STAGES, TARGET_GROUPS
from sasrec_tf.cli.common import UsageError
from sasrec_tf.export import list_versions

_METRICS = ("hr@10", "ndcg@10", "mrr")


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "info", help="show the model card of a model directory or an export version",
        description="Print the card (data, config, metrics, parent, versions) of a model directory written by "
                    "`sasrec-tf train`, of an export version directory, or of the latest version under "
                    "EXPORT_BASE/NAME.")
    parser.add_argument("dir", metavar="DIR", help="model directory, export version, or EXPORT_BASE/NAME")
    parser.add_argument("--json", action="store_true", help="print the raw card (JSON)")
    parser.set_defaults(func=run)


def locate(path: Path) -> tuple[dict[str, Any], str]:
    """The card at ``path`` and a line saying where it came from."""
    found = model_card.find_card(path)
    if found is not None:
        return model_card.read_card(found), str(found)
    if (path / "config.json").is_file():
        where = f"{path} (no {model_card.CARD_FILE}: built from config.json and metrics.json)"
        return model_card.model_card(path), where
    if path.is_dir():
        versions = list_versions(path)
        if versions:
            latest = path / str(versions[-1])
            if model_card.find_card(latest) is None:
                raise UsageError(f"the latest version {latest} has no model card (exported before cards existed)")
            return model_card.read_card(latest), f"{model_card.find_card(latest)} (latest of versions {versions})"
        raise UsageError(f"{path} holds no model card, model directory or export versions")
    raise UsageError(f"{path} does not exist")


def _join(values: dict[str, Any] | None, keys=None) -> str:
    if not values:
        return "unknown"
    return ", ".join(f"{k} {values[k]}" for k in (keys or values) if k in values)


def render(card: dict[str, Any], where: str) -> str:
    """The card as aligned ``field  value`` lines and a metrics table."""
    lines = [("card", where), ("created", card["created"])]
    export = card.get("export")
    if export:
        lines.append(("export", f"{export['model_name']} version {export['version']}, exported {export['exported']}"
                                f" from {export['source'] or 'a model in memory'}"))
        if export.get("gate"):
            gate = export["gate"]
            message = gate["message"].removeprefix("gate: ")
            lines.append(("gate", message + ("; published anyway (forced)" if gate["forced"] else "")))
    parent = card["parent"]
    lines.append(("parent", "none (cold start)" if parent is None else
                  parent["path"] + (f" ({_join({k: v for k, v in parent.items() if k != 'path'})})"
                                    if len(parent) > 1 else "")))
    data = card["data"]
    if data is None:
        lines.append(("data", "unknown"))
    else:
        lines.append(("data", _join(data, ("users", "items", "interactions"))))
        lines.append(("lengths", _join(data.get("sequence_length"), ("min", "p50", "p90", "p99", "max", "mean"))))
        lines.append(("data sha256", data.get("sha256", "unknown")))
    training = card["training"]
    lines.append(("training", "unknown" if training is None else
                  _join(training, ("epochs", "best_epoch", "stopped", "wall_seconds"))))
    lines.append(("versions", _join(card["versions"]) if card["versions"] else "unknown"))
    config = " ".join(f"{k}={v}" for k, v in sorted(card["config"].items()))
    width = max(len(name) for name, _ in lines)
    out = [f"{name:<{width}}  {value}" for name, value in lines]
    out += textwrap.wrap(config, 100, initial_indent=f"{'config':<{width}}  ", subsequent_indent=" " * (width + 2))
    metrics = card["metrics"] or {}
    columns = [(protocol, key) for protocol in PROTOCOLS for key in _METRICS]
    out += ["", f"{'metrics':<8}" + "".join(f"{p + ' ' + k:>16}" for p, k in columns)]
    for stage in STAGES:
        values = metrics.get(stage, {})
        rows = [(stage, values)] + [(f" {group}", {"full": values[group]}) for group in TARGET_GROUPS if group in values]
        for name, row in rows:  # the cold-start protocol's cold and warm targets under their stage
            cells = [row.get(p, {}).get(k) for p, k in columns]
            out.append(f"{name:<8}" + "".join(f"{v:>16.4f}" if v is not None else f"{'-':>16}" for v in cells))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    card, where = locate(Path(args.dir))
    print(json.dumps(card, indent=2, sort_keys=True) if args.json else render(card, where))
    return 0
