"""A kill anywhere in the publish step leaves one complete run, old or new, where the next command
looks (issue 28 item 2). Kills are injected (an exception at a chosen call), never timed."""

import json
import os

import pytest

from sasrec_tf.config import SASRecConfig
from sasrec_tf.experiment import run_dir
from sasrec_tf.layout import BACKUP_DIR, METRICS_FILE


def finished(path, tag):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.keras").write_text(tag)
    (path / METRICS_FILE).write_text(tag)
    return path


FINGERPRINT = {"config": {k: v for k, v in SASRecConfig().to_dict().items() if k != "epochs"}, "data": {"users": 3}}


def in_progress(out):
    """OUT while a new run trains over an old one (--overwrite): the old files plus the new run's
    backup/run.json (its fingerprint and progress)."""
    finished(out, "old")
    (out / BACKUP_DIR).mkdir()
    (out / BACKUP_DIR / "run.json").write_text(json.dumps({"fingerprint": FINGERPRINT, "progress": {"epochs": 3}}))
    return out


def test_the_exchange_leaves_no_moment_without_the_run(tmp_path, monkeypatch):
    out = in_progress(tmp_path / "out")
    staging = finished(run_dir.new_staging(out), "new")
    (tmp_path / "probe-a").mkdir()
    (tmp_path / "probe-b").mkdir()
    if not run_dir._exchange(tmp_path / "probe-a", tmp_path / "probe-b"):
        pytest.skip("no atomic directory exchange on this system (the two-rename path is tested below)")

    def killed(*args, **kwargs):
        assert (out / METRICS_FILE).read_text() == "new"  # swapped already: OUT is the new run
        raise KeyboardInterrupt

    monkeypatch.setattr(run_dir.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        run_dir.publish(out, staging)
    monkeypatch.undo()
    assert (out / METRICS_FILE).read_text() == "new"
    run_dir.recover_publish(out)  # what the next run does first: the old run's leftover goes
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("new_complete, survivor", [(True, "new"), (False, "old")])
def test_a_kill_between_the_two_renames_is_repaired_by_the_next_run(tmp_path, monkeypatch, new_complete, survivor):
    out = in_progress(tmp_path / "out")
    staging = finished(run_dir.new_staging(out), "new")
    if not new_complete:
        (staging / METRICS_FILE).unlink()
    monkeypatch.setattr(run_dir, "_exchange", lambda a, b: False)  # a system without the exchange
    renames = []

    def rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:  # after the old run moved aside, before the new one moved in
            raise KeyboardInterrupt
        os.replace(src, dst)

    monkeypatch.setattr(run_dir.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        run_dir.publish(out, staging)
    monkeypatch.undo()
    assert not out.exists() and len(list(tmp_path.glob(".out.tmp-*"))) == 2
    if survivor == "new":  # the next run finds the published new run, finished
        with pytest.raises(FileExistsError, match="finished run"):
            run_dir.prepare_out_dir(out, FINGERPRINT, overwrite=False)
    else:  # the old run is back whole, with the new run's progress: the same command resumes it
        assert run_dir.prepare_out_dir(out, FINGERPRINT, overwrite=False) == {"epochs": 3}
    assert (out / METRICS_FILE).read_text() == survivor
    # no leftover of the killed publish: only the resumed run's own staging (its logs go there)
    own = [] if survivor == "new" else [run_dir.run_staging(out)]
    assert list(tmp_path.glob(".out.tmp-*")) == own


def test_a_new_run_keeps_its_logs_in_its_staging_and_the_old_run_keeps_its_own(tmp_path):
    out = finished(tmp_path / "out", "old")
    (out / "logs").mkdir()
    (out / "logs" / "events").write_text("old")
    assert run_dir.prepare_out_dir(out, FINGERPRINT, overwrite=True) == {}
    staging = run_dir.run_staging(out)
    assert staging.parent == tmp_path and (out / "logs" / "events").read_text() == "old"
    run_dir.record_progress(out, FINGERPRINT, 1, 2.0)  # after an epoch: the staging stays recorded
    assert run_dir.prepare_out_dir(out, FINGERPRINT, overwrite=False) == {"epochs": 1, "seconds": 2.0}
    assert run_dir.run_staging(out) == staging and (out / "logs" / "events").read_text() == "old"


def test_a_run_interrupted_with_its_logs_in_out_brings_them_to_its_staging_on_resume(tmp_path):
    out = tmp_path / "out"  # as runs interrupted before the staging held the logs left it
    (out / BACKUP_DIR).mkdir(parents=True)
    (out / BACKUP_DIR / "run.json").write_text(json.dumps({"fingerprint": FINGERPRINT, "progress": {"epochs": 2}}))
    (out / "logs").mkdir()
    (out / "logs" / "events").write_text("first session")
    assert run_dir.prepare_out_dir(out, FINGERPRINT, overwrite=False) == {"epochs": 2}
    assert (run_dir.run_staging(out) / "logs" / "events").read_text() == "first session"
    assert not (out / "logs").exists()
