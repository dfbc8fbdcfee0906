"""The paper's ablation study (Kang & McAuley 2018, Table IV) as one command.

Each variant changes one switch of a base :class:`SASRecConfig` (the paper's Amazon or MovieLens
recipe, or any pipeline file): no positional embedding, unshared item embedding, no residual
connections, no dropout, 0 / 1 / 2 / 3 blocks, multi-head attention (2 heads), and the LayerNorm
placements Pre-LN and Post-LN. Every variant is trained with ``model.fit`` like ``sasrec-tf train``
and evaluated on the test split under full ranking and the paper's 100 sampled negatives; the
results go to ``ablation.md`` and ``ablation.csv``.

``sasrec-tf ablation --data PATH --format F --out DIR [--epochs N] [--variants ...]``
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from sasrec_tf.config import SASRecConfig

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


def variant_config(base: SASRecConfig, name: str) -> SASRecConfig:
    """``base`` with the changes of variant ``name`` (see :data:`VARIANTS`)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown ablation variant {name!r}; known: {list(VARIANTS)}")
    try:
        return base.replace(**VARIANTS[name][0])
    except ValueError as err:
        raise ValueError(f"ablation variant {name!r} does not fit the base configuration: {err}") from None


def run_ablation(
    split,
    num_items: int,
    base: SASRecConfig,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    *,
    num_users: int = 0,
    eval_every: int = 5,
    patience: int | None = None,
    max_eval_users: int | None = None,
    out_dir: str | Path | None = None,
    verbose: int | str = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every variant on a :class:`~sasrec_tf.data.LeaveOneOutSplit`.

    Variants whose configuration equals an earlier one (``blocks_2`` when the base has 2 blocks,
    ``no_dropout`` when it has none) reuse that result instead of training again. With
    ``out_dir``, the table files are rewritten after every variant; ``on_row`` is called with
    each finished row (progress reporting).

    Returns one row per variant: ``variant``, ``paper_name``, ``changes``, ``epochs``, ``wall_s``,
    test ``full_hr@10`` / ``full_ndcg@10`` / ``sampled_hr@10`` / ``sampled_ndcg@10`` and the
    relative change of full NDCG@10 against ``default`` (when it is among the variants).
    """
    from sasrec_tf import training
    from sasrec_tf.evaluation import evaluate

    configs = [(name, variant_config(base, name)) for name in variants]  # validate all before training
    rows: list[dict[str, Any]] = []
    trained: dict[str, dict[str, Any]] = {}
    for name, config in configs:
        key = config.to_json()
        changes = ", ".join(f"{k}={v}" for k, v in sorted(VARIANTS[name][0].items())
                            if getattr(base, k) != v) or "none"
        row: dict[str, Any] = {"variant": name, "paper_name": VARIANTS[name][1], "changes": changes}
        if key in trained:
            row.update({k: trained[key][k] for k in ("epochs", "wall_s") + METRIC_COLUMNS})
            row["changes"] = f"same as {trained[key]['variant']}"
        else:
            model = training.build_model(config, num_items, num_users)
            started = time.perf_counter()
            history = training.fit(model, split, eval_every=eval_every, patience=patience,
                                   max_eval_users=max_eval_users, verbose=verbose)
            row["wall_s"] = round(time.perf_counter() - started, 1)
            row["epochs"] = len(history.history.get("loss", []))
            test = evaluate(model, split, stage="test", seed=config.seed)
            for protocol in ("full", "sampled"):
                for metric in ("hr@10", "ndcg@10"):
                    row[f"{protocol}_{metric}"] = round(float(test[protocol][metric]), 4)
            trained[key] = row
        rows.append(row)
        _add_relative_change(rows)
        if out_dir is not None:
            write_tables(rows, out_dir, base)
        if on_row is not None:
            on_row(row)
    return rows


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
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, table = out_dir / "ablation.md", out_dir / "ablation.csv"
    markdown.write_text("# SASRec ablation (Table IV of Kang & McAuley 2018)\n\n" + format_markdown(rows, base),
                        encoding="utf-8")
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return markdown, table


# ------------------------------------------------------------------------------------ CLI
def cmd_ablation(args: argparse.Namespace) -> int:
    from sasrec_tf import cli
    from sasrec_tf.data.sequences import leave_one_out

    pipeline = cli.load_pipeline(args.config)
    values = dict(pipeline["model"])
    for assignment in args.set or []:
        if "=" not in assignment:
            raise cli.UsageError(f"--set expects NAME=VALUE, got {assignment!r}")
        name, value = assignment.split("=", 1)
        values[name.strip()] = cli._parse_value(value)
    if args.epochs is not None:
        values["epochs"] = args.epochs
    try:
        base = SASRecConfig.from_dict(values)
        for name in args.variants:
            variant_config(base, name)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    train = {**cli.TRAIN_DEFAULTS, **pipeline["train"]}
    for name in ("eval_every", "patience", "max_eval_users"):
        if getattr(args, name) is not None:
            train[name] = getattr(args, name)
    data = cli._read_data(args, pipeline["data"])
    split = leave_one_out(data)
    print(f"data: {data.num_users} users, {data.num_items} items; variants: {', '.join(args.variants)}")
    rows = run_ablation(split, data.num_items, base, args.variants, num_users=data.num_users,
                        eval_every=train["eval_every"], patience=train["patience"],
                        max_eval_users=train["max_eval_users"], out_dir=args.out, verbose=0,
                        on_row=lambda row: print(
                            f"  {row['variant']}: test full NDCG@10 {row['full_ndcg@10']} "
                            f"({row['epochs']} epochs, {row['wall_s']} s)", flush=True))
    print(format_markdown(rows))
    print(f"wrote {Path(args.out) / 'ablation.md'} and {Path(args.out) / 'ablation.csv'}")
    return 0


def add_commands(commands) -> None:
    """Register ``ablation`` and ``attention-plot`` on the ``sasrec-tf`` sub-command parser."""
    from sasrec_tf import attention, cli

    ablation = commands.add_parser("ablation", help="train the paper's Table IV variants; writes ablation.md/.csv")
    cli._add_data_flags(ablation)
    ablation.add_argument("--out", required=True, help="directory for ablation.md and ablation.csv")
    ablation.add_argument("--config", help="pipeline file whose model section is the base configuration")
    ablation.add_argument("--epochs", type=int, help="epochs per variant (default: the config's)")
    ablation.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                          metavar="VARIANT", help=f"variants to run (default: all): {', '.join(VARIANTS)}")
    ablation.add_argument("--set", action="append", metavar="NAME=VALUE", help="change a base SASRecConfig field")
    ablation.add_argument("--eval-every", dest="eval_every", type=int, help="validate every N epochs")
    ablation.add_argument("--patience", type=int, help="early stopping after N evaluations without improvement")
    ablation.add_argument("--max-eval-users", dest="max_eval_users", type=int)
    ablation.set_defaults(func=cmd_ablation)
    attention.add_command(commands)
