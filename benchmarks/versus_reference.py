"""Speed beside the PyTorch reference port: same log, same machine, same run, alternately.

Runs the reference (``../shared/reference/sasrec-pytorch``, pmixer/SASRec.pytorch, with its own
``main.py``) and sasrec-tf (``experiment.train_and_evaluate``, the path of ``sasrec-tf train``)
at the paper's configuration on the same log, one after the other, ``--rounds`` times, and prints
for each side the steady epoch (median of epochs 2..N: epoch 1 holds start-up and tracing), the
same-run ratio, one full validation pass of ours (full ranking + the sampled protocol, every
user), and the peak resident memory of each side's process tree (sampled every 0.2 s; the
reference's three sampler processes included).

    python benchmarks/versus_reference.py                  # Beauty (../shared/data), if present
    python benchmarks/versus_reference.py --data generated # a generated long-tailed Games-shaped log
    python benchmarks/versus_reference.py --no-bucket      # ours with fixed-width batches
    python benchmarks/versus_reference.py --time-to-quality --epochs 40   # time to the reference's quality

What an epoch is: the reference draws ``ceil(users / 128)`` batches of one random window per user
(with replacement); ours passes once over every user's most recent window (without replacement),
``ceil(users / 128)`` batches' worth of targets. Both see one window per user per epoch on average.
Per-epoch *quality* beside the reference is ``benchmarks/parity.py``'s job; a speed figure means
something only beside it (see docs/results.md, "Paper parity").

``--time-to-quality`` puts the two together: the reference trains ``--epochs`` epochs (40) and
prints its sampled-protocol validation NDCG@10 every 20; ours trains the same configuration,
validating (sampled protocol) after every epoch, and the script prints the epoch and the training
seconds at which ours first reaches each of the reference's validation figures, beside the
reference's own. Training seconds include start-up, data preparation and tracing on both sides,
and exclude evaluations (the reference's every 20 epochs, ours' every epoch here). The reference
validates on 10,000 random users, ours on every user; both against 100 random negatives.

The reference needs PyTorch in its own virtualenv (created or reused at ``--venv``, see
parity.py); it never becomes a dependency of this project. Only ratios measured in one run mean
anything: these machines differ from session to session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from sasrec_tf.testing import parity
from sasrec_tf.testing.bench import cpu_model, set_tensorflow_environment

set_tensorflow_environment()

REPO = Path(__file__).resolve().parents[1]
BEAUTY = REPO.parent / "shared" / "data" / "amazon-iclrec" / "Beauty.txt"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(BEAUTY),
                   help="interaction log, or 'generated' for a long-tailed Games-shaped log (default: Beauty)")
    p.add_argument("--format", default="s3rec")
    p.add_argument("--epochs", type=int, default=4, help="epochs per side per round (the first is not timed)")
    p.add_argument("--rounds", type=int, default=2, help="alternations reference/ours")
    p.add_argument("--no-bucket", action="store_true", help="ours with bucket_by_length=false")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a SASRecConfig field of ours (repeatable), e.g. --set optimizer=keras_adam")
    p.add_argument("--time-to-quality", action="store_true",
                   help="one reference run of --epochs, then ours validating every epoch: when does ours reach "
                        "the reference's validation NDCG@10 (epoch, training seconds)?")
    p.add_argument("--seed", type=int, default=1, help="--time-to-quality: our seed")
    p.add_argument("--reference", default=str(REPO.parent / parity.REFERENCE_CHECKOUT))
    p.add_argument("--venv", default=parity.DEFAULT_VENV)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load(args):
    """(data, name) through parity.py's loader (``sasrec_tf.testing.parity``), so both scripts read a log
    the same way; ``generated``: the Games-shaped long-tailed log."""
    return parity.load_log(None if args.data == "generated" else args.data, args.format)


# ------------------------------------------------------------------------------------ memory
def _tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1]: ppid
        rss[int(entry)] = int(fields[21]) * page  # fields[21]: rss in pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run_measured(command: list[str], cwd: Path | None = None) -> tuple[list[tuple[float, str]], float]:
    """Run ``command``; return its time-stamped output lines and the peak RSS (MiB) of its tree."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in process.stdout),
                              daemon=True)
    reader.start()
    while process.poll() is None:
        peak = max(peak, _tree_rss_bytes(process.pid))
        time.sleep(0.2)
    reader.join()
    if process.returncode != 0:
        tail = "".join(line for _, line in lines[-20:])
        raise RuntimeError(f"{command[0]} ... failed (exit {process.returncode}):\n{tail}")
    return lines, peak / 2**20


# ------------------------------------------------------------------------------------ the two sides
def run_reference(args, data, dataset: str) -> dict:
    python = parity.ensure_venv(Path(args.venv))
    work = parity.reference_workdir(args.reference, data, dataset)
    try:
        command = parity.reference_command(python, dataset, max_len=50, dropout=0.5, epochs=args.epochs)
        lines, peak = run_measured(command, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    last_step: dict[int, float] = {}
    for stamp, line in lines:
        if match := parity.STEP_LINE.search(line):
            last_step[int(match.group(1))] = stamp
    # Epoch e >= 2: from the last step of e - 1 to its own last step (no evaluation runs in
    # between before epoch 20), so epoch 1 and the start-up are not counted.
    epochs = [last_step[e] - last_step[e - 1] for e in sorted(last_step) if e - 1 in last_step]
    return {"epoch_s": epochs, "peak_mib": peak}


def run_ours(args) -> dict:
    """Ours in a fresh process (fresh TensorFlow state, its own memory figure)."""
    command = [sys.executable, __file__, "--worker", "--data", args.data, "--format", args.format,
               "--epochs", str(args.epochs)] + (["--no-bucket"] if args.no_bucket else [])
    command += [argument for override in args.set for argument in ("--set", override)]
    lines, peak = run_measured(command)
    result = json.loads([line for _, line in lines if line.startswith("{")][-1])
    return {**result, "peak_mib": peak}


def worker(args) -> int:
    """Train the paper configuration through train_and_evaluate; print epoch times and the
    time of full validation passes as one JSON line."""
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data import leave_one_out
    from sasrec_tf.evaluation import evaluate
    from sasrec_tf.experiment import TrainOptions, apply_overrides, train_and_evaluate
    from sasrec_tf.testing.clock import EpochClock

    data, _ = load(args)
    clock = EpochClock()
    durations = clock.epoch_seconds
    config = SASRecConfig.from_dict(apply_overrides(
        {"epochs": args.epochs, "bucket_by_length": not args.no_bucket, "seed": 1}, args.set))
    # eval_every beyond the last epoch: fit validates after epoch 1 only (not timed below).
    result = train_and_evaluate(data, config, options=TrainOptions(eval_every=args.epochs + 1), callbacks=[clock])
    split = leave_one_out(data)
    passes = []
    for _ in range(2):  # the first pass traces the ranking functions
        start = time.perf_counter()
        evaluate(result.model, split, stage="valid")
        passes.append(time.perf_counter() - start)
    print(json.dumps({"epoch_s": durations, "validation_s": passes}), flush=True)
    return 0


def time_to_quality(args, data, dataset: str) -> int:
    """The reference's validation NDCG@10 at its evaluation epochs, and the epoch and training
    seconds at which ours first reaches each."""
    reference_at = [e for e in range(20, args.epochs + 1, 20)] or [args.epochs]
    reference = parity.run_reference(data, dataset, run=1, eval_at=reference_at, reference=args.reference,
                                     venv=args.venv, max_len=50, dropout=0.5, epochs=args.epochs)
    ours = parity.run_ours(data, name="ours", seed=args.seed, bucket=not args.no_bucket,
                           eval_at=list(range(1, args.epochs + 1)), max_len=50, dropout=0.5, epochs=args.epochs,
                           overrides=args.set)
    print()
    print("| reference epoch | its valid NDCG@10 (sampled) | its test NDCG@10 | its training s "
          "| ours reaches it at epoch | ours' training s | speed-up to this quality | ours' test NDCG@10 then |")
    print("|---|---|---|---|---|---|---|---|")
    for row in reference:
        reached = next((r for r in ours if r["valid_sampled_ndcg@10"] >= row["valid_sampled_ndcg@10"]), None)
        if reached is None:
            best = max(ours, key=lambda r: r["valid_sampled_ndcg@10"])
            print(f"| {row['epoch']} | {row['valid_sampled_ndcg@10']:.4f} | {row['test_sampled_ndcg@10']:.4f} "
                  f"| {row['train_s']:.0f} | not within {args.epochs} (best {best['valid_sampled_ndcg@10']:.4f} at "
                  f"{best['epoch']}) | — | — | — |")
            continue
        print(f"| {row['epoch']} | {row['valid_sampled_ndcg@10']:.4f} | {row['test_sampled_ndcg@10']:.4f} "
              f"| {row['train_s']:.0f} | {reached['epoch']} ({reached['valid_sampled_ndcg@10']:.4f}) "
              f"| {reached['train_s']:.0f} | {row['train_s'] / reached['train_s']:.2f}x "
              f"| {reached['test_sampled_ndcg@10']:.4f} |")
    print("\nrows: " + json.dumps({"reference": reference, "ours": ours}))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the first epoch is not timed)")
    data, dataset = load(args)
    if args.time_to_quality:
        print(f"{time.strftime('%Y-%m-%d')} · {cpu_model()} · {dataset}: time to the reference's quality, "
              f"{args.epochs} epochs each", flush=True)
        return time_to_quality(args, data, dataset)
    print(f"{time.strftime('%Y-%m-%d')} · {cpu_model()} · {dataset}: {data.num_users} users, "
          f"{data.num_items} items, {int(data.lengths().sum())} interactions · {args.epochs} epochs per side, "
          f"{args.rounds} rounds · ours {'without' if args.no_bucket else 'with'} length bucketing"
          + "".join(f" · {override}" for override in args.set), flush=True)
    reference_epochs, our_epochs, validations, ratios = [], [], [], []
    peaks = {"reference": 0.0, "ours": 0.0}
    for round_index in range(args.rounds):
        reference = run_reference(args, data, dataset)
        ours = run_ours(args)
        steady_reference = statistics.median(reference["epoch_s"])
        steady_ours = statistics.median(ours["epoch_s"][1:])
        ratios.append(steady_reference / steady_ours)
        reference_epochs += reference["epoch_s"]
        our_epochs += ours["epoch_s"][1:]
        validations.append(ours["validation_s"][-1])
        peaks = {"reference": max(peaks["reference"], reference["peak_mib"]), "ours": max(peaks["ours"], ours["peak_mib"])}
        print(f"round {round_index + 1}: reference {steady_reference:.2f} s/epoch, ours {steady_ours:.2f} s/epoch "
              f"-> {ratios[-1]:.2f}x; ours' validation pass {ours['validation_s'][-1]:.2f} s "
              f"(first, with tracing: {ours['validation_s'][0]:.2f} s)", flush=True)
    print()
    print("| side | steady epoch (median) | seq/s | peak RSS |")
    print("|---|---|---|---|")
    for name, epochs in (("reference (pmixer/SASRec.pytorch)", reference_epochs), ("sasrec-tf", our_epochs)):
        median = statistics.median(epochs)
        peak = peaks["reference" if name.startswith("reference") else "ours"]
        print(f"| {name} | {median:.2f} s | {data.num_users / median:,.0f} | {peak:,.0f} MiB |")
    print(f"\nsame-run ratio, steady epoch: {statistics.median(ratios):.2f}x (per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}); ours' full validation pass (full + sampled, "
          f"{data.num_users} users): {statistics.median(validations):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
