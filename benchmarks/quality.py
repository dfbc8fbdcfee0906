"""Quality benchmark: training objectives compared on real logs, full-ranking leave-one-out.

Every (dataset, objective) pair is trained with ``model.fit`` (validation NDCG@10 with full ranking
every ``--eval-every`` epochs, early stopping after ``--patience`` evaluations without improvement,
best weights restored, optional wall-time limit) and then evaluated on the **test** split for all
users: full ranking (history excluded) and the paper's 100 sampled negatives. One table is printed
and written as ``quality.csv`` and ``quality.md`` in ``--out``, its test metrics as bars in
``quality.png`` (rows are appended as runs finish,
so an interrupted benchmark keeps what it measured, and a second invocation with the same
``--out`` adds to the table instead of replacing it).

Examples (data never lives in the repository; pass its path)::

    python benchmarks/quality.py --dataset Beauty=../shared/data/amazon-iclrec/Beauty.txt:s3rec \\
        --objectives bce full_softmax --config pipelines/beauty.json --eval-every 5 --patience 3 \\
        --max-minutes 20 --out runs/quality

    python benchmarks/quality.py --dataset ml-100k=../shared/data/ml-100k/u.data:movielens \\
        --config pipelines/ml-100k.json --objectives bce "gbce256:gbce_t=0.9" --epochs 50

Objectives are presets (``--list-objectives``) or ``LOSS`` with overrides: ``NAME:key=value,...``
where keys are SASRecConfig fields, e.g. ``sampled_softmax:num_negatives=128``.

``--runs DIR ...`` trains nothing: it tabulates finished ``sasrec-tf train`` run directories (their
``metrics.json`` and ``config.json``): test HR@10 / NDCG@10 / HR@20 / NDCG@20 under full ranking and
the sampled protocol, best epoch, seconds per epoch and wall time, one row per run, and after the
runs on the same data whose configurations differ only in ``seed``, their mean::

    python benchmarks/quality.py --runs runs/beauty_s42 runs/beauty_s43
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from sasrec_tf.testing.bench import set_tensorflow_environment

set_tensorflow_environment()

OBJECTIVES: dict[str, dict[str, Any]] = {
    "bce": {"loss": "bce", "num_negatives": 1},  # the paper
    "bce256": {"loss": "bce", "num_negatives": 256},
    "gbce256": {"loss": "gbce", "num_negatives": 256, "gbce_t": 0.75},
    "sampled_softmax256": {"loss": "sampled_softmax", "num_negatives": 256},
    "sampled_softmax256_pop": {"loss": "sampled_softmax", "num_negatives": 256,
                               "negative_sampling": "popularity", "logq_correction": True},
    "inbatch_softmax": {"loss": "inbatch_softmax", "logq_correction": True},
    "full_softmax": {"loss": "full_softmax"},
    # pipelines/recommended.json's changes to the paper's Amazon recipe
    "recommended": {"loss": "inbatch_softmax", "logq_correction": True, "batch_size": 256, "hidden_units": 64},
}
COLUMNS = ("dataset", "objective", "epochs", "best_epoch", "stopped", "wall_s", "s_per_epoch",
           "full_hr@10", "full_ndcg@10", "sampled_hr@10", "sampled_ndcg@10", "valid_full_ndcg@10", "config")


def parse_objective(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` → (label, SASRecConfig overrides)."""
    name, _, rest = spec.partition(":")
    if name in OBJECTIVES:
        overrides = dict(OBJECTIVES[name])
    else:
        import sasrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow's Keras is touched)
        from sasrec_tf.objectives import OBJECTIVES as LOSSES

        if name not in LOSSES:
            raise SystemExit(f"unknown objective {name!r}: use a preset {sorted(OBJECTIVES)} or a loss "
                             f"{tuple(LOSSES)}")
        overrides = {"loss": name}
    from sasrec_tf.experiment import apply_overrides

    return spec, apply_overrides(overrides, filter(None, rest.split(",")))


def parse_dataset(spec: str) -> tuple[str, str, str]:
    """``NAME=PATH:FORMAT`` (or ``PATH:FORMAT``) → (name, path, format)."""
    name, sep, rest = spec.partition("=")
    if not sep:
        name, rest = Path(spec.rpartition(":")[0]).stem, spec
    path, _, fmt = rest.rpartition(":")
    if not path or not fmt:
        raise SystemExit(f"--dataset expects NAME=PATH:FORMAT, got {spec!r}")
    return name, path, fmt


def run_one(name: str, data, label: str, config, args) -> dict[str, Any]:
    """Train and evaluate through ``sasrec-tf train``'s own path (``experiment.train_and_evaluate``)."""
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    options = TrainOptions(eval_every=args.eval_every, patience=args.patience, max_eval_users=args.max_eval_users,
                           max_minutes=args.max_minutes)
    metrics = train_and_evaluate(data, config, options=options, verbose=2 if args.verbose else 0).metrics
    test, training = metrics["test"], metrics["training"]
    return {
        "dataset": name, "objective": label, "epochs": training["epochs"], "best_epoch": training["best_epoch"],
        "stopped": training["stopped"], "wall_s": round(training["wall_seconds"], 1),
        "s_per_epoch": round(training["seconds_per_epoch"], 2),
        "full_hr@10": test["full"]["hr@10"], "full_ndcg@10": test["full"]["ndcg@10"],
        "sampled_hr@10": test["sampled"]["hr@10"], "sampled_ndcg@10": test["sampled"]["ndcg@10"],
        "valid_full_ndcg@10": round(metrics["valid"]["full"]["ndcg@10"], 4),
        "config": json.dumps({k: v for k, v in config.to_dict().items()}, sort_keys=True),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    shown = [c for c in COLUMNS if c != "config"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) and "@" in c else str(row[c]) for c in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Rows an earlier invocation wrote to ``out/quality.csv`` (metrics back as floats)."""
    path = out / "quality.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise SystemExit(f"{path} has columns {reader.fieldnames}, not this benchmark's; use another --out")
        rows = list(reader)
    for row in rows:
        for column in COLUMNS:
            if "@" in column or column in ("wall_s", "s_per_epoch"):
                row[column] = float(row[column])
    return rows


PROTOCOLS_NOTE = "Test split, all users; full = every item ranked (history excluded), sampled = 100 uniform negatives."


def write_outputs(out: Path, rows: list[dict[str, Any]]) -> None:
    from sasrec_tf.plots import metric_panels, plot_bars

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "quality.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "quality.md").write_text(PROTOCOLS_NOTE + "\n\n" + markdown_table(rows) + "\n", encoding="utf-8")
    plot_bars([f"{row['dataset']} · {row['objective']}" for row in rows], metric_panels(rows), out / "quality.png",
              title="Quality benchmark: test split, leave-one-out, all users")


RUN_COLUMNS = ("full_hr@10", "full_ndcg@10", "full_hr@20", "full_ndcg@20", "sampled_hr@10", "sampled_ndcg@10")


def run_rows(dirs: list[str]) -> list[dict[str, Any]]:
    """One row per finished ``sasrec-tf train`` directory, then a mean row per group of runs on the
    same data whose configurations are equal but for the seed."""
    rows, groups = [], {}
    for directory in dirs:
        path = Path(directory)
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))["sasrec_config"]
        training, test = metrics["training"], metrics["test"]
        row = {"run": path.name, "seed": config.get("seed"),
               "epochs (best)": f"{training['epochs']} ({training['best_epoch']})",
               "s/epoch": training["seconds_per_epoch"], "wall s": round(training["wall_seconds"]),
               **{f"{p}_{m}": test[p][m] for p, m in (c.split("_", 1) for c in RUN_COLUMNS)}}
        rows.append(row)
        key = json.dumps([metrics.get("dataset"), {k: v for k, v in config.items() if k != "seed"}], sort_keys=True)
        groups.setdefault(key, []).append(row)
    for members in groups.values():
        if len(members) > 1:
            rows.append({"run": "mean of " + ", ".join(m["run"] for m in members), "seed": "",
                         "epochs (best)": "", "s/epoch": "", "wall s": "",
                         **{c: sum(m[c] for m in members) / len(members) for c in RUN_COLUMNS}})
    return rows


def runs_table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.4f}" if c in RUN_COLUMNS else str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def write_run_outputs(out: Path, dirs: list[str], rows: list[dict[str, Any]]) -> list[Path]:
    """``runs.md`` (the table), ``runs.png`` (its test metrics as bars, the seed means
    highlighted) and ``runs_curves.png`` (each run's loss and validation curves, for the runs
    with TensorBoard logs) in ``out``; returns the paths written."""
    from sasrec_tf.plots import metric_panels, plot_bars, plot_validation_curves, read_curves

    out.mkdir(parents=True, exist_ok=True)
    table = out / "runs.md"
    table.write_text(PROTOCOLS_NOTE + "\n\n" + runs_table(rows) + "\n", encoding="utf-8")
    written = [table, plot_bars([row["run"] for row in rows], metric_panels(rows), out / "runs.png",
                                highlight=[i for i, row in enumerate(rows) if row["run"].startswith("mean of ")],
                                title="Finished runs: test split, leave-one-out, all users")]
    curves = {}
    for directory in dirs:
        try:
            curves[Path(directory).name] = read_curves(directory)
        except FileNotFoundError as err:
            print(f"no curves for {directory}: {err}", file=sys.stderr)
    if curves:
        written.append(plot_validation_curves(curves, out / "runs_curves.png",
                                              title="Finished runs: training loss and validation per epoch"))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH:FORMAT",
                        help="a dataset to run (repeatable); FORMAT as for `sasrec-tf train --format`")
    parser.add_argument("--objectives", nargs="+", default=["bce", "full_softmax"],
                        help="objective presets or LOSS[:key=value,...] (default: bce full_softmax)")
    parser.add_argument("--config", help="pipeline JSON whose model section is the base configuration")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a SASRecConfig field for every run")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the config's)")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--patience", type=int, default=3, help="evaluations without improvement before stopping")
    parser.add_argument("--max-minutes", type=float, help="wall-time limit per run (best weights are kept)")
    parser.add_argument("--max-eval-users", type=int, help="validate on a subset (test always uses all users)")
    parser.add_argument("--out", default="runs/quality",
                        help="directory for quality.csv/.md/.png (with --runs: runs.md/.png, runs_curves.png)")
    parser.add_argument("--list-objectives", action="store_true")
    parser.add_argument("--runs", nargs="+", metavar="DIR",
                        help="train nothing: tabulate these finished `sasrec-tf train` directories")
    parser.add_argument("-v", "--verbose", action="store_true", help="print Keras' per-epoch lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_objectives:
        for name, overrides in OBJECTIVES.items():
            print(f"{name:<24}{json.dumps(overrides)}")
        return 0
    if args.runs:
        rows = run_rows(args.runs)
        print(runs_table(rows))
        written = write_run_outputs(Path(args.out), args.runs, rows)
        print("\nwrote " + ", ".join(map(str, written)))
        return 0
    if not args.dataset:
        raise SystemExit("give at least one --dataset NAME=PATH:FORMAT")
    datasets = [parse_dataset(spec) for spec in args.dataset]
    objectives = [parse_objective(spec) for spec in args.objectives]

    import sasrec_tf  # noqa: F401  (selects Keras 2 before TensorFlow's Keras is touched)
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data import load_dataset
    from sasrec_tf.experiment import apply_overrides, load_pipeline

    base = apply_overrides(load_pipeline(args.config).model, args.set)
    if args.epochs:
        base["epochs"] = args.epochs

    out = Path(args.out)
    rows = read_rows(out)
    for name, path, fmt in datasets:
        data = load_dataset(path, fmt)
        print(f"{name}: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions",
              flush=True)
        for label, overrides in objectives:
            config = SASRecConfig.from_dict({**base, **overrides})
            row = run_one(name, data, label, config, args)
            rows.append(row)
            write_outputs(out, rows)
            print(f"  {label}: test full HR@10 {row['full_hr@10']:.4f} NDCG@10 {row['full_ndcg@10']:.4f} | sampled "
                  f"HR@10 {row['sampled_hr@10']:.4f} NDCG@10 {row['sampled_ndcg@10']:.4f} | {row['epochs']} epochs "
                  f"(best {row['best_epoch']}, stop: {row['stopped']}), {row['wall_s']:.0f} s", flush=True)
    print()
    print(markdown_table(rows))
    print(f"\nwrote {out / 'quality.csv'}, {out / 'quality.md'} and {out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
