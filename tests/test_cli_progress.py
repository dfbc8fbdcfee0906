"""The CLI's progress on long steps: one line per step in a log, a Keras Progbar on a terminal that
reaches the total; and the data options a trained run records for the commands that take a model."""

import io
import json

import pytest

from sasrec_tf.cli import main
from sasrec_tf.cli.common import DATA_OPTIONS_FILE, guess_format
from sasrec_tf.cli.progress import Progress, Steps, evaluation_progress
from sasrec_tf.data.synthetic import generate_interactions


def test_off_a_terminal_a_counted_step_is_one_line_when_it_reaches_its_total():
    log = io.StringIO()
    progress = Progress("recommending", "user", terminal=False, stream=log)
    for done in (256, 512, 700):
        progress(done, 700)
    progress.close()  # after the total: nothing more
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recommending: 700/700 users in ")


def test_off_a_terminal_a_step_cut_short_still_says_how_far_it_got():
    log = io.StringIO()
    progress = Progress("recommending", "user", terminal=False, stream=log)
    progress(256, 700)
    assert log.getvalue() == ""
    progress.close()
    assert log.getvalue().startswith("recommending: 256/700 users in ")


def test_off_a_terminal_named_steps_are_one_line_each():
    log = io.StringIO()
    steps = Steps("loading log.csv", 3, names=("read", "filter", "sequences"), terminal=False, stream=log)
    for done, what in enumerate(("read 10 interactions", "filtered", "2 user sequences"), 1):
        steps(what, done, 3)
    lines = log.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["loading log.csv: read 10 interactions",
                                                      "loading log.csv: filtered", "loading log.csv: 2 user sequences"]
    assert [line.split("(")[-1].split(",")[0] for line in lines] == ["1/3", "2/3", "3/3"]


def test_evaluation_progress_is_one_line_per_protocol_off_a_terminal():
    log = io.StringIO()
    progress = evaluation_progress("valid", terminal=False, stream=log)
    for protocol in ("full", "sampled"):
        for done in (512, 1000):
            progress(protocol, done, 1000)
    assert [line.split(" in ")[0] for line in log.getvalue().splitlines()] == [
        "evaluating valid, full ranking: 1000/1000 users", "evaluating valid, sampled ranking: 1000/1000 users"]


def test_on_a_terminal_a_keras_progbar_reaches_the_total(capsys):
    progress = Progress("evaluating test, full ranking", "user", terminal=True)
    for done in (400, 800, 1000, 1000):  # the last call repeated, as recommend_to_file does
        progress(done, 1000)
    progress.close()
    out = capsys.readouterr().out
    assert out.startswith("evaluating test, full ranking:\n") and out.endswith("\n")
    assert out.count("1000/1000 [======") == 1  # one final bar
    steps = Steps("exporting", 2, names=("load", "save"), terminal=True)
    steps("loaded", 1, 2)
    steps("saved", 2, 2)
    out = capsys.readouterr().out
    assert out.startswith("exporting (load, save):\n") and "2/2 [=====" in out and out.endswith("\n")


@pytest.mark.parametrize("name, content, expected", [
    ("log.csv", "", "csv"), ("log.TSV", "", "tsv"), ("log.parquet", "", "parquet"), ("u.data", "", "movielens"),
    ("ratings.dat", "", "movielens"), ("Beauty.txt", "1 2\n1 3\n2 5\n", "sasrec"),
    ("Beauty.txt", "1 2 3\n2 5\n", "s3rec"), ("Beauty.txt", "1\n2 5\n", None), ("log.json", "{}", None),
])
def test_the_format_is_guessed_only_from_what_leaves_no_doubt(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    assert guess_format(path)[0] == expected


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained from a log with its own column names and separator."""
    root = tmp_path_factory.mktemp("run")
    log = root / "log.txt"
    generate_interactions(num_users=200, num_items=300, mean_length=10, seed=5).rename(
        columns={"user": "uid", "item": "sku", "timestamp": "ts"}).to_csv(log, index=False, sep=";")
    assert main(["train", "--data", str(log), "--format", "csv", "--sep", ";", "--user-col", "uid",
                 "--item-col", "sku", "--time-col", "ts", "--out", str(root / "run"), "--epochs", "1",
                 "--max-len", "10", "--hidden-units", "16", "--eval-every", "1"]) == 0
    return log, root / "run"


def test_train_records_how_it_read_the_log_and_evaluate_reads_it_the_same_way(trained_run, tmp_path, capsys):
    log, run = trained_run
    recorded = json.loads((run / DATA_OPTIONS_FILE).read_text())
    assert recorded["options"] == {"format": "csv", "sep": ";", "user_col": "uid", "item_col": "sku",
                                   "time_col": "ts"}
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--data", str(log), "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "reading --data as the run did" in out and "--format csv" in out and "--sep ;" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads((tmp_path / "m.json").read_text())["test"]["full"] == pytest.approx(
        metrics["test"]["full"], abs=1e-6)
    # Off a terminal (captured), each evaluation is one line that reaches its total.
    done = [line for line in out.splitlines() if line.startswith("evaluating ")]
    assert len(done) == 4 and all("200/200 users" in line for line in done), done


def test_without_a_record_the_format_is_guessed_from_an_unambiguous_name_or_refused(trained_run, tmp_path, capsys):
    log, run = trained_run
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in run.iterdir():
        if path.is_file() and path.name != DATA_OPTIONS_FILE:
            (bare / path.name).write_bytes(path.read_bytes())
    assert main(["evaluate", "--model", str(bare), "--data", str(log)]) == 2
    err = capsys.readouterr().err
    assert "--format is required" in err and DATA_OPTIONS_FILE in err and len(err.strip().splitlines()) == 1, err
    csv = tmp_path / "log.csv"
    csv.write_text(log.read_text().replace(";", ","))
    assert main(["evaluate", "--model", str(bare), "--data", str(csv), "--user-col", "uid", "--item-col", "sku",
                 "--time-col", "ts"]) == 0
    assert "as --format csv (its name ends in .csv" in capsys.readouterr().out


def test_train_guesses_a_format_given_nowhere_and_a_pipeline_file_or_flag_wins(tmp_path, capsys):
    import argparse

    from sasrec_tf.cli.common import UsageError, guess_missing_format
    from sasrec_tf.experiment import Pipeline

    (tmp_path / "log.tsv").write_text("user\titem\ttimestamp\n")
    pipeline = Pipeline()
    guess_missing_format(argparse.Namespace(data=str(tmp_path / "log.tsv"), format=None), pipeline)
    assert pipeline.data["format"] == "tsv" and "as --format tsv" in capsys.readouterr().out
    given = Pipeline()
    given.set("data", "format", "csv", "pipe.json")
    guess_missing_format(argparse.Namespace(data=str(tmp_path / "log.tsv"), format=None), given)
    assert given.data["format"] == "csv" and capsys.readouterr().out == ""
    with pytest.raises(UsageError, match="--format is required: .*missing.txt does not exist"):
        guess_missing_format(argparse.Namespace(data=str(tmp_path / "missing.txt"), format=None), Pipeline())


def test_the_data_options_are_read_from_the_run_record_or_else_from_the_card(tmp_path):
    from sasrec_tf.cli.common import _recorded_data_options

    assert _recorded_data_options(tmp_path) == (None, {})
    (tmp_path / "card.json").write_text(json.dumps({"data": {"users": 3}}))
    assert _recorded_data_options(tmp_path) == (None, {})
    (tmp_path / "card.json").write_text(json.dumps({"data": {"options": {"format": "tsv"}}}))
    assert _recorded_data_options(tmp_path) == (tmp_path / "card.json", {"format": "tsv"})
    (tmp_path / DATA_OPTIONS_FILE).write_text(json.dumps({"data": "x", "options": {"format": "csv"}}))
    assert _recorded_data_options(tmp_path) == (tmp_path / DATA_OPTIONS_FILE, {"format": "csv"})
