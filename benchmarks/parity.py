"""Paper parity: sasrec-tf beside the PyTorch reference port, same log, same machine, same epochs.

Trains the paper's configuration (``SASRecConfig()`` defaults: BCE with one negative, d 50, 2
blocks, dropout 0.5, max_len 50, batch 128, Adam 1e-3) with sasrec-tf, with and without length
bucketing, and the reference port (``../shared/reference/sasrec-pytorch``, pmixer/SASRec.pytorch)
with its own ``main.py``, on the same leave-one-out split of the same log, and prints the test and
validation metrics of both at the epochs where the reference evaluates (every 20): the paper's
sampled protocol (100 negatives) for both, full ranking for ours, and seconds per epoch.

    python benchmarks/parity.py                      # generated long-tailed Games-shaped log
    python benchmarks/parity.py --data DATA/Beauty.txt --format s3rec   # DATA: docs/results.md, "Datasets"
    python benchmarks/parity.py --data DATA/ml-100k/u.data --format movielens \\
        --max-len 200 --dropout 0.2
    python benchmarks/parity.py --report --out runs/parity    # the table of what is in --out

The reference needs PyTorch, which never becomes a dependency of this project: the script creates
(or reuses) a virtualenv at ``--venv`` with ``torch==2.13.0`` and numpy. The reference has no seed
option; its "seeds" are independent runs. It evaluates 10,000 random users when there are more;
ours evaluates every user. Rows are appended to ``OUT/results.jsonl`` as runs finish, so runs can
be split over several invocations (``--runs reference`` in one, ``--runs ours`` in another) and
the table printed at the end with ``--report``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sasrec_tf.testing.bench import GAMES_ITEMS, GAMES_MEAN_LENGTH, GAMES_USERS, set_tensorflow_environment
from sasrec_tf.testing.parity import DEFAULT_VENV, REFERENCE_CHECKOUT, load_log, run_ours, run_reference

set_tensorflow_environment()

REPO = Path(__file__).resolve().parents[1]
RUNS = ("ours", "ours-unbucketed", "reference")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="interaction log (default: a generated long-tailed Games-shaped log)")
    p.add_argument("--format", default="s3rec")
    p.add_argument("--users", type=int, default=GAMES_USERS, help="generated log: users (Games: 31,013)")
    p.add_argument("--items", type=int, default=GAMES_ITEMS, help="generated log: items (Games: 23,715)")
    p.add_argument("--mean-length", type=float, default=GAMES_MEAN_LENGTH, help="generated log: mean history length")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {RUNS}")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change a SASRecConfig field of our runs (e.g. exclude_history_negatives=true)")
    p.add_argument("--tag", default="", help="appended to our run names (e.g. 'before' for an older checkout)")
    p.add_argument("--reference", default=str(REPO.parent / REFERENCE_CHECKOUT))
    p.add_argument("--venv", default=DEFAULT_VENV)
    p.add_argument("--out", default="runs/parity")
    p.add_argument("--report", action="store_true", help="only print the table of OUT/results.jsonl")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ report
COLUMNS = ("test_sampled_ndcg@10", "test_sampled_hr@10", "valid_sampled_ndcg@10", "test_full_ndcg@10",
           "test_full_hr@10", "s_per_epoch")


def report(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["epoch"], row["run"]), []).append(row)
    lines = ["| dataset | epoch | run | seeds | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for (dataset, epoch, run), group in sorted(groups.items()):
        cells = []
        for column in COLUMNS:
            values = [r[column] for r in group if r.get(column) is not None]
            if not values:
                cells.append("—")
            elif column == "s_per_epoch":
                cells.append(f"{statistics.mean(values):.2f}")
            else:
                each = " / ".join(f"{v:.4f}" for v in values)
                cells.append(f"**{statistics.mean(values):.4f}** ({each})" if len(values) > 1 else f"{values[0]:.4f}")
        lines.append(f"| {dataset} | {epoch} | {run} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    results = out / "results.jsonl"
    if args.report:
        print(report(results))
        return 0
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; choose from {RUNS}")
    eval_at = [e for e in range(20, args.epochs + 1, 20)] or [args.epochs]
    out.mkdir(parents=True, exist_ok=True)
    data, dataset = load_log(args.data, args.format, num_users=args.users, num_items=args.items,
                             mean_length=args.mean_length)
    print(f"{dataset}: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions; "
          f"{args.epochs} epochs, metrics at epochs {eval_at}", flush=True)
    for seed in args.seeds:
        for run in runs:
            name = run + (f"-{args.tag}" if args.tag and run != "reference" else "")
            started = time.time()
            if run == "reference":
                rows = run_reference(data, dataset, run=seed, eval_at=eval_at, reference=args.reference,
                                     venv=args.venv, max_len=args.max_len, dropout=args.dropout, epochs=args.epochs)
            else:
                rows = run_ours(data, name=name, seed=seed, bucket=(run == "ours"), eval_at=eval_at,
                                max_len=args.max_len, dropout=args.dropout, epochs=args.epochs, overrides=args.set)
            with open(results, "a", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps({"dataset": dataset, "run": name, "seed": seed,
                                             "wall_s": round(time.time() - started, 1), **row}) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
