"""``sasrec-tf tune``: the search-space file's typed checks, pruning from the validation curve, a
3-trial study that resumes after an interrupted trial without ever measuring the test split, and a
best.json that `sasrec-tf train --config` trains."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf.config import OptionError
from sasrec_tf.experiment import PipelineFile, TrainOptions, load_pipeline
from sasrec_tf.tune import load_space

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"max_len": 8, "hidden_units": 8, "num_blocks": 1, "batch_size": 64, "epochs": 1, "seed": 1}
TINY_TRAIN = {"eval_every": 1, "patience": 2, "eval_negatives": 20}
SPACE = {"model": {"hidden_units": {"choices": [8, 16]},
                   "learning_rate": {"low": 0.001, "high": 0.01, "log": True}},
         "train": {"smoothing": {"choices": [1, 2]}}}


def _write(path, value):
    path.write_text(json.dumps(value))
    return path


def _pipeline():
    pipeline = PipelineFile()
    for section, values in (("model", TINY_MODEL), ("train", TINY_TRAIN)):
        for name, value in values.items():
            pipeline.set(section, name, value, "test")
    pipeline.set("data", "format", "csv", "test")
    return pipeline


@pytest.fixture(scope="module")
def log():
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions

    frame = generate_interactions(num_users=100, num_items=80, mean_length=8, max_length=20, seed=3)
    return frame, build_sequences(frame)


# ------------------------------------------------------------------------------------ the space file
def test_a_space_file_gives_typed_ranges_and_choices(tmp_path):
    space = load_space(_write(tmp_path / "space.json", {
        **SPACE, "model": {**SPACE["model"], "num_blocks": {"low": 1, "high": 3},
                           "dropout_rate": {"low": 0.1, "high": 0.5, "step": 0.1}}}))
    by_name = {p.name: p for p in space.params}
    assert by_name["hidden_units"].choices == (8, 16)
    assert by_name["learning_rate"].log and by_name["learning_rate"].low == 0.001
    assert by_name["smoothing"].section == "train"

    class Trial:  # what Optuna's trial is asked
        def suggest_categorical(self, name, choices):
            return ("categorical", choices)

        def suggest_int(self, name, low, high, step, log):
            return ("int", low, high, step, log)

        def suggest_float(self, name, low, high, step, log):
            return ("float", low, high, step, log)

    values = space.suggest(Trial())
    assert values["model"]["num_blocks"] == ("int", 1, 3, 1, False)
    assert values["model"]["learning_rate"] == ("float", 0.001, 0.01, None, True)
    assert values["model"]["dropout_rate"] == ("float", 0.1, 0.5, 0.1, False)
    assert values["train"]["smoothing"] == ("categorical", [1, 2])


@pytest.mark.parametrize("space, message", [
    ({"model": {"hidden_unit": {"choices": [8]}}}, "model.hidden_unit: unknown SASRecConfig field 'hidden_unit'"),
    ({"model": {"hidden_units": {"choices": ["64"]}}}, "SASRecConfig.hidden_units must be an integer, got '64'"),
    ({"model": {"use_residual": {"low": 0, "high": 1}}}, "a range needs a number field"),
    ({"model": {"hidden_units": {"low": 64, "high": 32}}}, "low must be below high"),
    ({"model": {"hidden_units": {"low": 8.5, "high": 32}}}, "SASRecConfig.hidden_units must be an integer, got 8.5"),
    ({"model": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}}, "a log range needs low > 0"),
    ({"model": {"learning_rate": {"low": 0.1}}}, "needs both low and high"),
    ({"model": {"learning_rate": {"between": [0, 1]}}}, "expected {\"choices\""),
    ({"data": {"format": {"choices": ["csv"]}}}, "unknown section(s) ['data']"),
    ({"model": {}}, "names no field to search"),
])
def test_a_bad_space_is_one_line_naming_the_key(tmp_path, space, message):
    with pytest.raises(ValueError) as raised:
        load_space(_write(tmp_path / "space.json", space))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_value_the_configuration_refuses_is_caught_before_any_trial(tmp_path):
    space = load_space(_write(tmp_path / "space.json", {"model": {"dropout_rate": {"low": 0.1, "high": 1.5}}}))
    with pytest.raises(OptionError, match=r"space.json: model.dropout_rate: SASRecConfig.dropout_rate"):
        space.check(_pipeline())


def test_importing_the_tuner_and_its_help_load_neither_optuna_nor_tensorflow():
    program = textwrap.dedent("""
        import json, sys
        import sasrec_tf.tune
        from sasrec_tf.cli import main
        try:
            main(["tune", "--help"])
        except SystemExit:
            pass
        print(json.dumps({m: m in sys.modules for m in ("optuna", "tensorflow")}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120,
                         cwd=ROOT, check=True).stdout
    assert "--space" in out
    assert json.loads(out.strip().splitlines()[-1]) == {"optuna": False, "tensorflow": False}


# ------------------------------------------------------------------------------------ pruning
class _ScriptedTrial:
    """An Optuna trial whose pruner says "prune" from ``prune_at`` (1-based epoch) on."""

    def __init__(self, prune_at):
        self.prune_at, self.reported = prune_at, []

    def report(self, value, step):
        self.reported.append(step)

    def should_prune(self):
        return bool(self.reported) and self.reported[-1] >= self.prune_at


def test_a_pruned_trial_stops_training_at_that_validation(log):
    import optuna

    from sasrec_tf._compat import keras
    from sasrec_tf.experiment import train_and_evaluate
    from sasrec_tf.tune import PruneOnValidation

    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch + 1))
    trial = _ScriptedTrial(prune_at=2)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2"):
        train_and_evaluate(log[1], SASRecConfig(**{**TINY_MODEL, "epochs": 4}),
                           options=TrainOptions(eval_every=1, eval_negatives=20), stages=("valid",),
                           callbacks=[PruneOnValidation(trial, "ndcg@10"), seen])
    assert trial.reported == [1, 2]  # each validation, by epoch
    assert epochs == [1]  # the second epoch's end raised before the later callbacks: no third epoch


def test_only_the_epochs_that_validated_are_reported():
    from sasrec_tf.tune import PruneOnValidation

    trial = _ScriptedTrial(prune_at=99)
    callback = PruneOnValidation(trial, "ndcg@10")
    for epoch, logs in enumerate([{"val_ndcg@10": 0.1}, {"loss": 1.0}, {"val_ndcg@10": 0.2, "val_hr@10": 0.3}]):
        callback.on_epoch_end(epoch, logs)
    assert trial.reported == [1, 3]


# ------------------------------------------------------------------------------------ the study
def _states(study):
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_a_killed_trial_is_failed_and_queued_again_with_its_values(tmp_path):
    from sasrec_tf.tune.study import open_study

    study = open_study(tmp_path, storage=None, study_name="s", pruner="none", prune_after=0, seed=0)
    running = study.ask()
    running.suggest_int("hidden_units", 8, 64)  # the process dies here: the trial stays RUNNING
    again = open_study(tmp_path, storage=None, study_name="s", pruner="none", prune_after=0, seed=0)
    trials = again.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].params == {} and trials[1].user_attrs == {"retry_of": 0}
    assert trials[1].system_attrs["fixed_params"] == running.params
    open_study(tmp_path, storage=None, study_name="s", pruner="none", prune_after=0, seed=0)
    assert len(again.get_trials(deepcopy=False)) == 2  # queued once, not at every restart


def test_a_three_trial_study_resumes_after_an_interrupted_trial_and_never_measures_test(tmp_path, log,
                                                                                        monkeypatch):
    from sasrec_tf import evaluation
    from sasrec_tf._compat import keras
    from sasrec_tf.tune import tune
    from sasrec_tf.tune.space import load_space as load

    stages = []
    real = evaluation.evaluate

    def spy(*args, stage, **kwargs):
        stages.append(stage)
        return real(*args, stage=stage, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    trainings = []
    count = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: trainings.append(1))

    class InterruptSecondTrial(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if len(trainings) == 2:
                raise KeyboardInterrupt

    space = load(_write(tmp_path / "space.json", SPACE))
    out = tmp_path / "study"
    lines = []
    with pytest.raises(KeyboardInterrupt):
        tune(log[1], _pipeline(), space, out_dir=out, trials=3, pruner="none",
             callbacks=[count, InterruptSecondTrial()], report=lines.append)
    assert stages == ["valid"]  # trial 0's final evaluation; trial 1 was interrupted in training
    result = tune(log[1], _pipeline(), space, out_dir=out, trials=3, pruner="none", callbacks=[count],
                  report=lines.append)
    trials = result.study.get_trials(deepcopy=False)
    assert _states(result.study) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert len(trainings) == 2 + 2  # trial 0 and the interrupted 1, then its retry and trial 3 (not trial 0 again)
    assert stages == ["valid"] * 3 + ["valid", "test"]  # test only in the best configuration's final run
    assert any(line.startswith("resuming study 'sasrec': 1 of 3 trials finished") for line in lines)
    assert any("(again, for interrupted trial 1)" in line for line in lines)

    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert result.best_trial.number == best.number
    table = (out / "trials.csv").read_text().splitlines()
    assert len(table) == 1 + 4 and "params_learning_rate" in table[0]
    written = load_pipeline(out / "best.json")
    assert written.build("model") == result.pipeline.build("model")
    assert written.build("model").hidden_units == best.params["hidden_units"]
    assert written.build("train").smoothing == best.params["smoothing"]
    assert (out / "tune.png").read_bytes()[:4] == b"\x89PNG"
    final = json.loads((result.best_dir / "metrics.json").read_text())
    assert final["valid"]["full"]["ndcg@10"] == pytest.approx(best.value)  # the same run, seeded
    assert "test" in final and result.metrics["test"] == final["test"]


def test_the_command_writes_a_best_json_that_train_trains(tmp_path, log, capsys):
    from sasrec_tf.cli import main

    data = tmp_path / "log.csv"
    log[0].to_csv(data, index=False)
    space = _write(tmp_path / "space.json", {"model": {"learning_rate": {"low": 0.001, "high": 0.01}}})
    out = tmp_path / "study"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_MODEL, **TINY_TRAIN}.items()]
    code = main(["tune", "--data", str(data), "--space", str(space), "--trials", "2", "--out", str(out),
                 "--no-final-run", *flags])
    printed = capsys.readouterr().out
    assert code == 0
    assert [line.split(" [")[0] for line in printed.splitlines() if line.startswith("trial ")] == ["trial 0", "trial 1"]
    assert not any(path.name.startswith("best_trial_") for path in out.iterdir())  # --no-final-run
    description = json.loads((out / "best.json").read_text())["description"]
    assert "no test metric was computed" in description
    assert main(["train", "--data", str(data), "--config", str(out / "best.json"), "--out", str(tmp_path / "run"),
                 "--epochs", "1"]) == 0
    trained = json.loads((tmp_path / "run" / "config.json").read_text())
    assert trained["sasrec_config"]["learning_rate"] == json.loads((out / "best.json").read_text())["model"]["learning_rate"]


def test_the_command_refuses_an_unknown_field_in_one_line(tmp_path, log, capsys):
    from sasrec_tf.cli import main

    data = tmp_path / "log.csv"
    log[0].to_csv(data, index=False)
    space = _write(tmp_path / "space.json", {"model": {"hiden_units": {"choices": [8]}}})
    code = main(["tune", "--data", str(data), "--space", str(space), "--trials", "1", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"sasrec-tf: error: {space}: model.hiden_units: unknown SASRecConfig field "
                                        "'hiden_units'"]


def test_a_diverging_trial_fails_alone_and_is_not_run_again(tmp_path, log):
    from sasrec_tf._compat import keras
    from sasrec_tf.training import TrainingDiverged
    from sasrec_tf.tune import tune
    from sasrec_tf.tune.space import load_space as load

    trainings = []

    class DivergeFirst(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            trainings.append(1)

        def on_epoch_end(self, epoch, logs=None):
            if len(trainings) == 1:
                raise TrainingDiverged("the training loss became nan in epoch 1: training stopped")

    space = load(_write(tmp_path / "space.json", SPACE))
    lines = []
    result = tune(log[1], _pipeline(), space, out_dir=tmp_path / "study", trials=2, pruner="none",
                  callbacks=[DivergeFirst()], final_run=False, report=lines.append)
    assert _states(result.study) == ["FAIL", "COMPLETE"]
    assert "the training loss became nan in epoch 1" in lines[0]
    assert result.best_trial.number == 1


def test_the_median_pruner_waits_for_the_warmup_epochs(tmp_path):
    from sasrec_tf.tune.study import open_study

    study = open_study(tmp_path, storage=None, study_name="s", pruner="median", prune_after=1, seed=0,
                       prune_warmup=2)
    good = study.ask()
    for epoch in (1, 2, 3):
        good.report(0.5, step=epoch)
    study.tell(good, 0.5)
    poor = study.ask()
    verdicts = []
    for epoch in (1, 2, 3):
        poor.report(0.1, step=epoch)
        verdicts.append(poor.should_prune())
    assert verdicts == [False, True, True]  # no pruning before epoch 2


def test_two_processes_share_one_study_through_a_storage_url(tmp_path, log):
    # Two machines tuning one study: each `sasrec-tf tune` with the same --storage URL (SQLite
    # here; PostgreSQL/MySQL the same way) and its own --out. The study stops at --trials
    # finished trials in all, both processes run trials, and each writes the whole table.
    data = tmp_path / "log.csv"
    log[0].to_csv(data, index=False)
    space = _write(tmp_path / "space.json", {"model": {"learning_rate": {"low": 0.001, "high": 0.01}}})
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY_MODEL, **TINY_TRAIN}.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, "-m", "sasrec_tf.cli", "tune", "--data", str(data), "--space",
                                   str(space), "--trials", "4", "--storage", url, "--study-name", "shared",
                                   "--out", str(tmp_path / f"machine{i}"), "--no-final-run", "--pruner", "none",
                                   *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in (0, 1)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5  # MaxTrialsCallback: a trial already running elsewhere may finish too
    ran = [sum(line.startswith("trial ") for line in out.splitlines()) for out, _ in outputs]
    assert all(count >= 1 for count in ran) and sum(ran) == len(finished)
    # Each writes the table and best.json as the study stood when it stopped; the last to stop saw it all.
    tables = [(tmp_path / f"machine{i}" / "trials.csv").read_text().splitlines() for i in (0, 1)]
    assert max(len(table) for table in tables) == 1 + len(study.get_trials(deepcopy=False))
    rates = [json.loads((tmp_path / f"machine{i}" / "best.json").read_text())["model"]["learning_rate"]
             for i in (0, 1)]
    assert all(any(rate == pytest.approx(t.params["learning_rate"]) for t in finished) for rate in rates)
    assert any(rate == pytest.approx(study.best_trial.params["learning_rate"]) for rate in rates)
