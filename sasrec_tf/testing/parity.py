"""Both sides of the paper-parity benchmarks: the PyTorch reference port and ours at its protocol.

``benchmarks/parity.py`` (quality per epoch) and ``benchmarks/versus_reference.py`` (speed, time
to quality) run the same two trainings on the same log: the reference (pmixer/SASRec.pytorch,
its own ``main.py``, in a virtualenv with PyTorch that never becomes a dependency of this project)
and sasrec-tf through ``sasrec-tf train``'s path (``experiment.train_and_evaluate``).
"""

from __future__ import annotations

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

from sasrec_tf.testing.bench import GAMES_ITEMS, GAMES_MEAN_LENGTH, GAMES_USERS, benchmark_log

__all__ = [
    "DEFAULT_VENV",
    "REFERENCE_CHECKOUT",
    "REFERENCE_TORCH",
    "STEP_LINE",
    "ensure_venv",
    "load_log",
    "reference_command",
    "reference_workdir",
    "run_ours",
    "run_reference",
    "write_reference_log",
]

REFERENCE_CHECKOUT = Path("shared", "reference", "sasrec-pytorch")  # beside the repository
REFERENCE_TORCH = "torch==2.13.0"
DEFAULT_VENV = os.path.expanduser("~/.cache/sasrec-ref")
STEP_LINE = re.compile(r"loss in epoch (\d+) iteration (\d+):")  # the reference's per-step line
_EVAL = re.compile(r"epoch:(\d+), time: [\d.]+\(s\), valid \(NDCG@10: ([\d.]+), HR@10: ([\d.]+)\), "
                   r"test \(NDCG@10: ([\d.]+), HR@10: ([\d.]+)\)")


# ------------------------------------------------------------------------------------ data
def load_log(data: str | None, format: str = "s3rec", *, num_users: int = GAMES_USERS,
             num_items: int = GAMES_ITEMS, mean_length: float = GAMES_MEAN_LENGTH):
    """The log both sides train on, and its name.

    Args:
        data: Interaction log path, or None for a generated long-tailed (lognormal lengths)
            log of the Games shape, seed 0, named ``games-longtail``.
        format: The file's format.
        num_users, num_items, mean_length: The generated log's shape.

    Returns:
        ``(SequenceData, name)``; a file's name is its stem (a MovieLens file's, its folder's:
        their files have generic names such as ``u.data``).
    """
    if data:
        path = Path(data)
        return benchmark_log(data, format), path.parent.name if format == "movielens" else path.stem
    return benchmark_log(num_users=num_users, num_items=num_items, mean_length=mean_length,
                         length_distribution="lognormal", seed=0), "games-longtail"


def write_reference_log(data, path: Path) -> None:
    """The reference's input: ``user item`` lines in time order, users and items numbered from 1
    (our dense ids, so both sides split and score the same items)."""
    with open(path, "w", encoding="utf-8") as handle:
        for user, items in enumerate(data.sequences, start=1):
            handle.writelines(f"{user} {int(item)}\n" for item in items)


# ------------------------------------------------------------------------------------ ours
def run_ours(data, *, name: str, seed: int, bucket: bool, eval_at: list[int], max_len: int, dropout: float,
             epochs: int, overrides: list[str]) -> list[dict]:
    """Train through ``sasrec-tf train``'s path (``experiment.train_and_evaluate``), evaluating the
    test split (and the validation split, sampled) at the ``eval_at`` epochs from a callback.

    Args:
        data: The log (``SequenceData``).
        name: The run's name in the progress lines.
        seed: ``SASRecConfig.seed``.
        bucket: ``SASRecConfig.bucket_by_length``.
        eval_at: Epochs (1-based) after which to evaluate.
        max_len, dropout, epochs: ``SASRecConfig`` fields.
        overrides: ``NAME=VALUE`` changes of further fields (``--set``).

    Returns:
        One row per ``eval_at`` epoch: metrics, ``s_per_epoch`` (median from epoch 2 on) and
        ``train_s`` (training seconds up to the epoch, these evaluations excluded).
    """
    import numpy as np

    from sasrec_tf._compat import keras
    from sasrec_tf.config import SASRecConfig
    from sasrec_tf.data import leave_one_out
    from sasrec_tf.evaluation import evaluate
    from sasrec_tf.experiment import TrainOptions, apply_overrides, train_and_evaluate
    from sasrec_tf.testing.clock import EpochClock

    split = leave_one_out(data)  # the same split train_and_evaluate makes
    config = SASRecConfig.from_dict(apply_overrides(
        {"max_len": max_len, "dropout_rate": dropout, "seed": seed, "bucket_by_length": bucket,
         "epochs": epochs}, overrides))
    rows: list[dict] = []
    clock = EpochClock()
    durations = clock.epoch_seconds
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
    train_and_evaluate(data, config, options=TrainOptions(eval_every=epochs + 1), callbacks=[clock, Probe()])
    keras.backend.clear_session()
    return rows


# ------------------------------------------------------------------------------------ reference
def ensure_venv(venv: Path) -> Path:
    """The python of the reference's virtualenv at ``venv``, created with PyTorch and numpy if needed."""
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


def run_reference(data, dataset: str, *, run: int, eval_at: list[int], reference: str, venv: str,
                  max_len: int, dropout: float, epochs: int) -> list[dict]:
    """Train the reference on ``data`` and read its evaluations (every 20 epochs) from its output.

    Args:
        data: The log (``SequenceData``); ``dataset`` its name.
        run: The run's number in the progress lines (the reference has no seed option).
        eval_at: The evaluation epochs to return.
        reference: The reference's checkout; ``venv`` its virtualenv (see :func:`ensure_venv`).
        max_len, dropout, epochs: Its ``--maxlen``, ``--dropout_rate``, ``--num_epochs``.

    Returns:
        One row per ``eval_at`` epoch: its sampled metrics, ``s_per_epoch`` (median of the epochs
        not preceded by an evaluation) and ``train_s`` (start-up included, evaluations not).

    Raises:
        RuntimeError: The reference exited with an error (the message ends with its output).
    """
    python = ensure_venv(Path(venv))
    work = reference_workdir(reference, data, dataset)
    try:
        command = reference_command(python, dataset, max_len=max_len, dropout=dropout, epochs=epochs)
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
            if match := STEP_LINE.search(line):
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
