"""A kill anywhere in `sasrec-tf train` or `sasrec-tf export` leaves one complete run or version,
old or new, never a partial one, and the next command finishes the work without redoing what was
done (issue 28, Done-when).

Each command runs in its own process and is killed with ``os._exit`` at a named point (a patched
function), so what survives is what a SIGKILL would leave there; no timing is involved. The kills
are chained: each command resumes what the previous one left and is killed further on, so one
short run of tiny commands covers every stage.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.export.contract import ASSETS_EXTRA_DIR, EXPORT_INFO_FILE, WARMUP_FILE
from sasrec_tf.experiment import run_dir
from sasrec_tf.export.publish import list_versions
from sasrec_tf.layout import BACKUP_DIR, RUN_FILE

ROOT = Path(__file__).resolve().parents[1]
KILLED = 77
EPOCH_START = re.compile(r"^Epoch (\d+)/\d+$", re.MULTILINE)

# Runs the CLI with one kill point installed (argv[1]); the rest of argv is the command line.
DRIVER = r'''
import os, sys
from pathlib import Path

point = sys.argv[1]
def die(*args, **kwargs):
    sys.stdout.flush()
    os._exit(77)

def after(module, name, condition=lambda *a, **k: True):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if condition(*args, **kwargs):
            die()
        return result
    setattr(module, name, wrapper)

if point.startswith(("epoch", "checkpoint")):  # during epoch N (its 2nd batch) / just after its backup
    from sasrec_tf.experiment import run_callbacks
    epoch = int(point.split(":")[1])
    progress = run_callbacks.RunProgress
    begin = progress.on_epoch_begin
    def on_epoch_begin(self, index, logs=None):
        self.current = index
        begin(self, index, logs)
    progress.on_epoch_begin = on_epoch_begin
    if point.startswith("epoch"):
        def on_train_batch_end(self, batch, logs=None):
            if self.current == epoch and batch == 1:
                die()
        progress.on_train_batch_end = on_train_batch_end
    else:
        after(progress, "on_epoch_end", lambda self, index, logs=None: index == epoch)
elif point == "saving":  # the trained model saved into the staging, not yet recorded in run.json
    from sasrec_tf import artifacts
    after(artifacts, "save_trained")
elif point == "evaluating":  # in the final evaluation, after its valid stage
    from sasrec_tf import evaluation
    calls = []
    real = evaluation.evaluate
    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            die()
        return real(*args, **kwargs)
    evaluation.evaluate = evaluate
elif point == "publishing":  # metrics.json and card.json staged, before the exchange
    from sasrec_tf import card
    after(card, "write_card")
elif point == "exchanged":  # the new run swapped in, the old one not yet removed
    from sasrec_tf.experiment import run_dir
    after(run_dir, "_exchange")
elif point == "renamed-aside":  # no atomic exchange: the old run moved aside, the new one not yet in
    from sasrec_tf.experiment import run_dir
    run_dir._exchange = lambda a, b: False
    real_rename = os.rename
    def rename(src, dst):
        if Path(src).name.startswith(".") and Path(src).name.split(".tmp-")[-1].startswith("new-"):
            die()
        real_rename(src, dst)
    os.rename = rename
elif point == "savedmodel":  # export: the SavedModel written into the hidden staging
    import tensorflow as tf
    after(tf.saved_model, "save")
elif point == "warmup":  # export: half of the warmup file written
    from sasrec_tf.export import publish
    real_warmup = publish.write_warmup_requests
    def write_warmup_requests(path, *args, **kwargs):
        real_warmup(path, *args, **kwargs)
        content = Path(path).read_bytes()
        Path(path).write_bytes(content[: len(content) // 2])
        die()
    publish.write_warmup_requests = write_warmup_requests
elif point == "assets":  # export: sasrec_export.json written, the card not
    from sasrec_tf.export import publish
    publish.model_card.export_card = die
elif point in ("version-rename", "version-renamed"):  # export: just before / after the version's rename
    real_rename = os.rename
    def rename(src, dst):
        if Path(dst).name.isdigit():
            if point == "version-rename":
                die()
            real_rename(src, dst)
            die()
        real_rename(src, dst)
    os.rename = rename
elif point != "none":
    raise SystemExit(f"unknown kill point {point}")

from sasrec_tf.cli import main
sys.exit(main(sys.argv[2:]))
'''


def command(point, args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", DRIVER, point, *args], capture_output=True, text=True, env=env,
                            cwd=cwd, timeout=600)
    return result.returncode, result.stdout + result.stderr


def files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def is_complete_run(out, seed):
    names = set(files(out))
    return ({"model.keras", "config.json", "vocab.txt", "metrics.json", "card.json"} <= names
            and any(name.startswith("logs/train/") for name in names) and not any(n.startswith("backup/") for n in names)
            and json.loads((out / "config.json").read_text())["sasrec_config"]["seed"] == seed)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A log, and a finished run in ``runs/out`` (seed 1) that the chained command replaces."""
    root = tmp_path_factory.mktemp("kills")
    generate_interactions(num_users=70, num_items=120, mean_length=8, max_length=20, seed=5).to_csv(
        root / "log.csv", index=False)
    (root / "runs").mkdir()
    return root


TRAIN = ["train", "--data", "log.csv", "--format", "csv", "--out", "runs/out", "--epochs", "2", "--max-len", "8",
         "--hidden-units", "8", "--num-blocks", "1", "--batch-size", "32", "--eval-every", "1",
         "--eval-negatives", "20"]


def test_a_kill_anywhere_in_train_leaves_one_whole_run_and_the_next_command_finishes_it(workspace):
    root, out = workspace, workspace / "runs" / "out"
    rc, output = command("none", [*TRAIN, "--seed", "1"], root)
    assert rc == 0, output[-3000:]
    old = files(out)

    def old_is_whole():
        assert {k: v for k, v in files(out).items() if not k.startswith(f"{BACKUP_DIR}/")} == old

    # --overwrite starts the new run (seed 3); each later command is the resume, killed further on.
    chain = [("checkpoint:0", ["--overwrite"]), ("epoch:1", []), ("saving", []), ("evaluating", []),
             ("publishing", [])]
    outputs = {}
    for point, extra in chain:
        rc, outputs[point] = command(point, [*TRAIN, "--seed", "3", *extra], root)
        assert rc == KILLED, f"{point}: {outputs[point][-3000:]}"
        old_is_whole()
    progress = json.loads((out / BACKUP_DIR / RUN_FILE).read_text())["progress"]
    assert progress["trained"]["training"]["epochs"] == 2
    # What each resume trained: only epoch 2 (killed inside it, then again), then nothing.
    assert EPOCH_START.findall(outputs["checkpoint:0"]) == ["1"]
    assert EPOCH_START.findall(outputs["epoch:1"]) == ["2"]
    assert EPOCH_START.findall(outputs["saving"]) == ["2"]
    assert EPOCH_START.findall(outputs["evaluating"]) == [], "the kill while saving cost a retraining"
    assert EPOCH_START.findall(outputs["publishing"]) == []

    # The publish: killed after the exchange, or between the two renames where there is none; and
    # not killed. Each from the same state (copies of runs/).
    results = {}
    for point in ("exchanged", "renamed-aside", "none"):
        runs = root / f"runs-{point}"
        shutil.copytree(root / "runs", runs, symlinks=True)
        args = [*TRAIN, "--seed", "3"]
        args[args.index("runs/out")] = f"runs-{point}/out"
        rc, output = command(point, args, root)
        if point == "none":
            assert rc == 0, output[-3000:]
            assert EPOCH_START.findall(output) == [], "trained again"
        else:
            assert rc == KILLED, output[-3000:]
            if point == "exchanged":  # what the next command does first (the command: below)
                assert is_complete_run(runs / "out", seed=3)
                with pytest.raises(FileExistsError, match="already holds a finished run"):
                    run_dir.prepare_out_dir(runs / "out", {}, overwrite=False)
            else:  # out is missing for a moment; the complete new run waits beside it
                assert not (runs / "out").exists()
                rc, output = command("none", args, root)  # the same command again: the run is finished
                assert rc == 2 and "already holds a finished run" in output, output[-3000:]
        assert is_complete_run(runs / "out", seed=3)
        assert sorted(p.name for p in runs.iterdir()) == ["out"], "a leftover beside the run"
        metrics = json.loads((runs / "out" / "metrics.json").read_text())
        assert metrics["training"]["epochs"] == 2 and metrics["training"]["resumed_at_epoch"] == 2
        results[point] = metrics["test"]
    assert results["exchanged"] == results["renamed-aside"] == results["none"]


def complete_versions(root):
    """The versions under root, each checked complete (a server would load only those)."""
    versions = list_versions(root)
    for version in versions:
        path = root / str(version)
        assert (path / "saved_model.pb").is_file() and (path / "variables" / "variables.index").is_file()
        extra = path / ASSETS_EXTRA_DIR
        assert {EXPORT_INFO_FILE, WARMUP_FILE, "card.json"} <= {p.name for p in extra.iterdir()}
        json.loads((extra / "card.json").read_text())
    assert all(p.name.startswith(".") for p in root.iterdir() if not p.name.isdigit()), "a visible partial version"
    return versions


def test_a_kill_anywhere_in_export_leaves_only_complete_versions_and_the_next_command_finishes(workspace):
    root, model = workspace, "runs-none/out"  # the train test's run, or one made here
    if not (root / model / "metrics.json").is_file():
        model = "model"
        rc, output = command("none", [*TRAIN[:6], model, *TRAIN[7:], "--epochs", "1", "--seed", "1"], root)
        assert rc == 0, output[-3000:]
    export = ["export", "--model", model, "--export-base", "base", "--name", "m"]
    rc, output = command("none", export, root)
    assert rc == 0, output[-3000:]
    models = root / "base" / "m"
    assert complete_versions(models) == [1]
    for point in ("savedmodel", "warmup", "assets", "version-rename"):
        rc, output = command(point, export, root)
        assert rc == KILLED, f"{point}: {output[-3000:]}"
        assert complete_versions(models) == [1], point
    rc, output = command("version-renamed", export, root)
    assert rc == KILLED, output[-3000:]
    assert complete_versions(models) == [1, 2]
    rc, output = command("none", export, root)
    assert rc == 0 and "exported m version 3" in output, output[-3000:]
    assert complete_versions(models) == [1, 2, 3]
