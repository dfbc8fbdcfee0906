"""The run directory of train_and_evaluate: resume only the same run, never mix or silently replace
a finished one, and check before training that the evaluation after it can run."""

import json

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.experiment import TrainOptions, check_evaluable, train_and_evaluate

TINY = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=64, epochs=1, seed=1)
OPTIONS = TrainOptions(eval_every=1)


@pytest.fixture(scope="module")
def data():
    return build_sequences(generate_interactions(num_users=120, num_items=150, mean_length=8, max_length=30, seed=7))


class _Interrupt(keras.callbacks.Callback):
    """Raises at the end of an epoch, after its backup: a run killed there."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_a_resume_continues_only_the_same_run_and_its_metrics_count_the_whole_run(data, tmp_path):
    out = tmp_path / "run"
    config = TINY.replace(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(data, config, out_dir=out, options=OPTIONS, callbacks=[_Interrupt(1)])
    assert not (out / "metrics.json").exists() and not (out / "model.keras").exists()

    other_data = build_sequences(generate_interactions(num_users=100, num_items=150, mean_length=8, max_length=30,
                                                       seed=8))
    with pytest.raises(ValueError, match=r"other settings \(data: 120 users.*100 users.*--overwrite"):
        train_and_evaluate(other_data, config, out_dir=out, options=OPTIONS)
    with pytest.raises(ValueError, match=r"hidden_units: 8 -> 16.*--overwrite"):
        train_and_evaluate(data, config.replace(hidden_units=16), out_dir=out, options=OPTIONS)

    metrics = train_and_evaluate(data, config, out_dir=out, options=OPTIONS).metrics
    assert metrics["training"]["epochs"] == 3 and metrics["training"]["resumed_at_epoch"] == 2
    assert json.loads((out / "metrics.json").read_text())["training"]["epochs"] == 3
    assert not (out / "backup").exists()
    from sasrec_tf.plots import read_curves  # the run's curves, drawn from its logs of both sessions

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [epoch for epoch, _ in read_curves(out).loss] == [1, 2, 3]


def test_a_finished_run_is_kept_until_overwrite_and_then_replaced_as_one_unit(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_and_evaluate(data, TINY, out_dir=out, options=OPTIONS)
    finished = _files(out)
    assert {"model.keras", "config.json", "vocab.txt", "metrics.json"} <= set(finished)

    with pytest.raises(FileExistsError, match="finished run.*--overwrite"):
        train_and_evaluate(data, TINY.replace(hidden_units=16), out_dir=out, options=OPTIONS)
    assert _files(out) == finished

    # Killed during the final evaluation: the new model was saved, but the old run stays whole.
    import sasrec_tf.evaluation

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(sasrec_tf.evaluation, "evaluate", killed)
        with pytest.raises(KeyboardInterrupt):
            train_and_evaluate(data, TINY.replace(hidden_units=16), out_dir=out, options=OPTIONS, overwrite=True)
    # ... its TensorBoard logs too: the new run's are in its staging (issue 28 item 2)
    assert {k: v for k, v in _files(out).items() if not k.startswith("backup/")} == finished
    assert list(tmp_path.glob(".run.tmp-new-*/logs/train/*"))

    train_and_evaluate(data, TINY.replace(hidden_units=16), out_dir=out, options=OPTIONS, overwrite=True)
    assert json.loads((out / "config.json").read_text())["sasrec_config"]["hidden_units"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no staging directory left behind"
    assert not (out / "backup").exists()


def test_an_out_dir_that_is_a_file_or_holds_other_files_is_refused(data, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train_and_evaluate(data, TINY, out_dir=tmp_path / "file", options=OPTIONS)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="no interrupted run.*--overwrite"):
        train_and_evaluate(data, TINY, out_dir=tmp_path / "dir", options=OPTIONS)


def test_what_the_evaluation_needs_is_checked_before_training(tmp_path):
    small = build_sequences(generate_interactions(num_users=60, num_items=100, mean_length=12, seed=2))
    split = leave_one_out(small)
    with pytest.raises(ValueError, match=r"against 100 items.*pass --eval-negatives (\d+)") as err:
        train_and_evaluate(small, TINY, out_dir=tmp_path / "small", options=OPTIONS)
    assert not (tmp_path / "small").exists(), "nothing is written before the check"
    fix = int(str(err.value).rsplit("--eval-negatives ", 1)[1].split()[0])
    check_evaluable(small, split, TrainOptions(eval_negatives=fix))
    with pytest.raises(ValueError):
        check_evaluable(small, split, TrainOptions(eval_negatives=fix + 1))

    for length in (1, 2):
        log = pd.DataFrame({"user": np.repeat(np.arange(50), length), "item": np.arange(50 * length) % 40 + 1,
                            "timestamp": np.tile(np.arange(length), 50)})
        short = build_sequences(log)
        with pytest.raises(ValueError, match=f"3 interactions.*longest history here has {length}"):
            train_and_evaluate(short, TINY, options=OPTIONS)


def test_the_options_and_pipeline_files_import_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from sasrec_tf.experiment import TrainOptions, PipelineFile, load_pipeline; "
            "TrainOptions(); assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_run_interrupted_before_new_config_fields_existed_still_resumes(tmp_path):
    from sasrec_tf.experiment.run_dir import BACKUP_DIR, RUN_FILE, prepare_out_dir

    config = SASRecConfig().to_dict()
    del config["epochs"]
    fingerprint = {"config": config, "data": {"users": 3, "interactions": 9, "items": 4, "sha256": "x"}}
    older = {**fingerprint, "config": {k: v for k, v in config.items() if k not in ("beta_1", "beta_2", "epsilon")}}
    (tmp_path / BACKUP_DIR).mkdir()
    (tmp_path / BACKUP_DIR / RUN_FILE).write_text(json.dumps({"fingerprint": older, "progress": {"epochs": 2}}))
    assert prepare_out_dir(tmp_path, fingerprint, overwrite=False) == {"epochs": 2}
    changed = {**fingerprint, "config": {**config, "beta_2": 0.999}}
    with pytest.raises(ValueError, match="beta_2: 0.98 -> 0.999"):
        prepare_out_dir(tmp_path, changed, overwrite=False)


def test_a_run_says_what_it_evaluates_one_line_per_step_in_a_log(data, capsys):
    # verbose=2 (a log): no bar, one line per validation and per evaluated stage; a best epoch is
    # found on validated epochs only (eval_every=2 over 4 epochs validates epochs 1, 2 and 4).
    result = train_and_evaluate(data, TINY.replace(epochs=4), options=TrainOptions(eval_every=2, patience=3),
                                verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("evaluated ")] == [
        "evaluated valid", "evaluated test"]
    assert [line.split(":")[0] for line in lines if "val_ndcg@10" in line and line.startswith("Epoch")] == [
        "Epoch 1", "Epoch 2", "Epoch 4"]
    assert not any("[====" in line or "/user" in line for line in lines)
    assert result.history.validated_epochs == [0, 1, 3]
    assert result.metrics["training"]["best_epoch"] in (1, 2, 4)


@pytest.mark.parametrize("stage", ["_evaluate", "_publish"])
def test_a_run_killed_after_training_is_finished_by_the_rerun_without_training_again(stage, data, tmp_path,
                                                                                     monkeypatch):
    from sasrec_tf import training
    from sasrec_tf.experiment import run as run_module

    config = TINY.replace(epochs=2)
    expected = train_and_evaluate(data, config, out_dir=tmp_path / "whole", options=OPTIONS).metrics
    real = getattr(run_module, stage)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, stage, killed)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(data, config, out_dir=out, options=OPTIONS)
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(run_module, stage, real)
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("trained again"))
    metrics = train_and_evaluate(data, config, out_dir=out, options=OPTIONS).metrics
    assert metrics["valid"] == expected["valid"] and metrics["test"] == expected["test"]
    assert metrics["training"]["epochs"] == 2 and (out / "model.keras").is_file()
    assert not list(tmp_path.glob(".run.tmp-*")) and not (out / "backup").exists()


def test_a_model_too_large_to_build_writes_nothing_so_a_smaller_one_is_not_refused(data, tmp_path, monkeypatch):
    # issue 28 item 6: after "out of memory ... lower --hidden-units", the rerun with a lower value
    # must not meet "holds an interrupted run with other settings".
    from sasrec_tf import training

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(training, "build_model", out_of_memory)
        with pytest.raises(MemoryError):
            train_and_evaluate(data, TINY.replace(hidden_units=4096), out_dir=tmp_path / "run", options=OPTIONS)
    assert list(tmp_path.iterdir()) == []
    train_and_evaluate(data, TINY, out_dir=tmp_path / "run", options=OPTIONS)
    assert (tmp_path / "run" / "metrics.json").is_file()
