"""Paper parity: sasrec-tf beside the PyTorch reference port, same log, same machine, same epochs.

Trains the paper's configuration (``SASRecConfig()`` defaults: BCE with one negative, d 50, 2
blocks, dropout 0.5, max_len 50, batch 128, Adam 1e-3) with sasrec-tf, with and without length
bucketing, and the reference port (``../shared/reference/sasrec-pytorch``, pmixer/SASRec.pytorch)
with its own ``main.py``, on the same leave-one-out split of the same log, and prints the test and
validation metrics of both at the epochs where the reference evaluates (every 20): the paper's
sampled protocol (100 negatives) for both, full ranking for ours, and seconds per epoch.

    python benchmarks/parity.py                      # generated long-tailed Games-shaped log
    python benchmarks/parity.py --data ../shared/data/amazon-iclrec/Beauty.txt --format s3rec
    python benchmarks/parity.py --data ../shared/data/ml-100k/u.data --format movielens \\
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
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
RUNS = ("ours", "ours-unbucketed", "reference")
REFERENCE_TORCH = "torch==2.13.0"
_STEP = re.compile(r"loss in epoch (\d+) iteration (\d+):")
_EVAL = re.compile(r"epoch:(\d+), time: [\d.]+\(s\), valid \(NDCG@10: ([\d.]+), HR@10: ([\d.]+)\), "
                   r"test \(NDCG@10: ([\d.]+), HR@10: ([\d.]+)\)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="interaction log (default: a generated long-tailed Games-shaped log)")
    p.add_argument("--format", default="s3rec")
    p.add_argument("--users", type=int, default=31013, help="generated log: users (Games: 31,013)")
    p.add_argument("--items", type=int, default=23715, help="generated log: items (Games: 23,715)")
    p.add_argument("--mean-length", type=float, default=9.3, help="generated log: mean history length")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {RUNS}")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change a SASRecConfig field of our runs (e.g. exclude_history_negatives=true)")
    p.add_argument("--tag", default="", help="appended to our run names (e.g. 'before' for an older checkout)")
    p.add_argument("--reference", default=str(REPO.parent / "shared" / "reference" / "sasrec-pytorch"))
    p.add_argument("--venv", default=os.path.expanduser("~/.cache/sasrec-ref"))
    p.add_argument("--out", default="runs/parity")
    p.add_argument("--report", action="store_true", help="only print the table of OUT/results.jsonl")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ data
def load(args):
    from sasrec_tf.data import build_sequences, generate_interactions, load_dataset

    if args.data:
        path = Path(args.data)
        # MovieLens files have generic names (u.data, ratings.dat): name them by their folder.
        return load_dataset(args.data, args.format), path.parent.name if args.format == "movielens" else path.stem
    log = generate_interactions(num_users=args.users, num_items=args.items, mean_length=args.mean_length,
                                length_distribution="lognormal", seed=0)
    return build_sequences(log), "games-longtail"


def write_reference_log(data, path: Path) -> None:
    """The reference's input: ``user item`` lines in time order, users and items numbered from 1
    (our dense ids, so both sides split and score the same items)."""
    with open(path, "w", encoding="utf-8") as handle:
        for user, items in enumerate(data.sequences, start=1):
            handle.writelines(f"{user} {int(item)}\n" for item in items)


# ------------------------------------------------------------------------------------ ours
def epoch_clock(durations: list[float]):
    """A Keras callback that appends each epoch's wall seconds to ``durations`` (fit's own
    callbacks, validation included, run inside the epoch; callbacks listed after it see the
    epoch's duration already appended)."""
    from sasrec_tf._compat import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            durations.append(time.perf_counter() - self.start)

    return EpochClock()


def run_ours(args, data, name: str, seed: int, bucket: bool, eval_at: list[int]) -> list[dict]:
    """Train through ``sasrec-tf train``'s path (``experiment.train_and_evaluate``), evaluating the
    test split at the ``eval_at`` epochs from a callback."""
    import numpy as np

    from sasrec_tf._compat import keras
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data import leave_one_out
    from sasrec_tf.evaluation import evaluate
    from sasrec_tf.experiment import TrainOptions, apply_overrides, train_and_evaluate

    split = leave_one_out(data)  # the same split train_and_evaluate makes
    config = SASRecConfig.from_dict(apply_overrides(
        {"max_len": args.max_len, "dropout_rate": args.dropout, "seed": seed, "bucket_by_length": bucket,
         "epochs": args.epochs}, args.set))
    rows: list[dict] = []
    durations: list[float] = []
    probing = [0.0]  # seconds spent in this probe's own evaluations
    started = time.perf_counter()

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 not in eval_at:
                return
            probe_start = time.perf_counter()
            test = evaluate(self.model, split, stage="test")
            valid = evaluate(self.model, split, stage="valid", protocols=("sampled",))
            rows.append({
                "epoch": epoch + 1,
                "test_sampled_ndcg@10": test["sampled"]["ndcg@10"], "test_sampled_hr@10": test["sampled"]["hr@10"],
                "valid_sampled_ndcg@10": valid["sampled"]["ndcg@10"],
                "test_full_ndcg@10": test["full"]["ndcg@10"], "test_full_hr@10": test["full"]["hr@10"],
                # The median from epoch 2 on (epoch 1 holds tracing and fit's first validation).
                "s_per_epoch": float(np.median(durations[1:] or durations)),
                # Training seconds up to here: start-up, tracing and fit's one validation included,
                # this probe's evaluations not.
                "train_s": round(probe_start - started - probing[0], 1),
            })
            print(f"  {name} seed {seed} epoch {epoch + 1}: {json.dumps(rows[-1])}", flush=True)
            probing[0] += time.perf_counter() - probe_start

    # Validation only after epoch 1 (fit always validates then): the probe evaluates at eval_at.
    train_and_evaluate(data, config, options=TrainOptions(eval_every=args.epochs + 1), callbacks=[epoch_clock(durations), Probe()])
    keras.backend.clear_session()
    return rows


# ------------------------------------------------------------------------------------ reference
def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import torch, numpy"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"setting up the reference's virtualenv in {venv} ({REFERENCE_TORCH}, numpy)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", REFERENCE_TORCH, "numpy"], check=True)
    return python


def reference_workdir(reference: str, data, dataset: str) -> Path:
    """A temporary copy of the reference's scripts with the log in its ``data/`` (remove it after)."""
    work = Path(tempfile.mkdtemp(prefix="sasrec-ref-"))
    for source in Path(reference).glob("*.py"):
        shutil.copy(source, work)
    (work / "data").mkdir()
    write_reference_log(data, work / "data" / f"{dataset}.txt")
    return work


def reference_command(python: Path, dataset: str, *, max_len: int, dropout: float, epochs: int) -> list[str]:
    """The reference's ``main.py`` at the paper's configuration (d 50, 2 blocks, batch 128, lr 1e-3), on CPU."""
    return [str(python), "-u", "main.py", f"--dataset={dataset}", "--train_dir=run", f"--maxlen={max_len}",
            f"--dropout_rate={dropout}", "--hidden_units=50", "--num_blocks=2", "--num_heads=1",
            "--batch_size=128", "--lr=0.001", "--device=cpu", f"--num_epochs={epochs}"]


def run_reference(args, data, dataset: str, run: int, eval_at: list[int]) -> list[dict]:
    python = ensure_venv(Path(args.venv))
    work = reference_workdir(args.reference, data, dataset)
    try:
        command = reference_command(python, dataset, max_len=args.max_len, dropout=args.dropout, epochs=args.epochs)
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put((time.perf_counter(), line)) for line in process.stdout] and None,
                         daemon=True).start()
        last_step: dict[int, float] = {}
        evaluating = 0.0  # seconds of its earlier evaluations (between an epoch's last step and the next)
        rows: list[dict] = []
        tail: list[str] = []
        while process.poll() is None or not lines.empty():
            try:
                stamp, line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            tail = (tail + [line])[-20:]
            if match := _STEP.search(line):
                last_step[int(match.group(1))] = stamp
            elif match := _EVAL.search(line):
                epoch = int(match.group(1))
                # Epoch e's time: from the last step of e - 1 to its own last step, for epochs not
                # preceded by an evaluation (which runs between the two).
                durations = [last_step[e] - last_step[e - 1] for e in sorted(last_step)
                             if e - 1 in last_step and (e - 1) % 20]
                rows.append({
                    "epoch": epoch,
                    "valid_sampled_ndcg@10": float(match.group(2)),
                    "test_sampled_ndcg@10": float(match.group(4)), "test_sampled_hr@10": float(match.group(5)),
                    "s_per_epoch": statistics.median(durations) if durations else None,
                    # Training seconds to the end of this epoch: start-up included, evaluations not.
                    "train_s": round(last_step[epoch] - started - evaluating, 1) if epoch in last_step else None,
                })
                if epoch in last_step:
                    evaluating += stamp - last_step[epoch]
                print(f"  reference run {run} epoch {epoch}: {json.dumps(rows[-1])}", flush=True)
        if process.returncode != 0:
            raise RuntimeError(f"the reference failed (exit {process.returncode}):\n{''.join(tail)}")
        return [row for row in rows if row["epoch"] in eval_at]
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    data, dataset = load(args)
    print(f"{dataset}: {data.num_users} users, {data.num_items} items, {int(data.lengths().sum())} interactions; "
          f"{args.epochs} epochs, metrics at epochs {eval_at}", flush=True)
    for seed in args.seeds:
        for run in runs:
            name = run + (f"-{args.tag}" if args.tag and run != "reference" else "")
            started = time.time()
            if run == "reference":
                rows = run_reference(args, data, dataset, seed, eval_at)
            else:
                rows = run_ours(args, data, name, seed, bucket=(run == "ours"), eval_at=eval_at)
            with open(results, "a", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps({"dataset": dataset, "run": name, "seed": seed,
                                             "wall_s": round(time.time() - started, 1), **row}) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
