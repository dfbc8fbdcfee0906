"""The `sasrec-tf` command line: train → metrics.json, evaluate, resume after a kill, clear errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sasrec_tf.cli import main
from sasrec_tf.data.synthetic import generate_interactions

ROOT = Path(__file__).resolve().parents[1]
EPOCH_START = re.compile(r"^Epoch (\d+)/\d+$", re.MULTILINE)
TINY = ["--epochs", "2", "--max-len", "10", "--hidden-units", "16", "--eval-every", "1"]


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "log.csv"
    generate_interactions(num_users=200, num_items=300, mean_length=10, seed=5).rename(
        columns={"user": "uid", "item": "sku", "timestamp": "ts"}).to_csv(path, index=False)
    return path


def train_args(log_csv, out):
    return ["train", "--data", str(log_csv), "--format", "csv", "--user-col", "uid", "--item-col", "sku",
            "--time-col", "ts", "--out", str(out), *TINY]


def test_train_writes_model_vocabulary_and_metrics_for_both_stages_and_protocols(log_csv, tmp_path, capsys):
    assert main(train_args(log_csv, tmp_path / "run")) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for stage in ("valid", "test"):
        for protocol in ("full", "sampled"):
            assert {"hr@10", "ndcg@10", "mrr", "hr@1", "ndcg@20"} <= set(metrics[stage][protocol])
    assert metrics["training"]["epochs"] == 2
    assert {"model.keras", "vocab.txt", "config.json", "item_counts.npy"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert "test" in capsys.readouterr().out

    assert main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(log_csv), "--format", "csv",
                 "--user-col", "uid", "--item-col", "sku", "--time-col", "ts",
                 "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["test"]["full"] == pytest.approx(metrics["test"]["full"], abs=1e-6)

    # Targets already in the history are misses by default (as served); --repeated-targets rank keeps them.
    evaluation = metrics["evaluation"]
    assert (evaluation["repeated_targets"], evaluation["sampled_negatives"]) == ("miss", 100)
    assert evaluation["test_targets_in_history"] > 0  # the generated log repeats items
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(log_csv), "--format", "csv",
                 "--user-col", "uid", "--item-col", "sku", "--time-col", "ts", "--repeated-targets", "rank",
                 "--out", str(tmp_path / "ranked.json")]) == 0
    ranked = json.loads((tmp_path / "ranked.json").read_text())
    assert ranked["test"]["full"]["mrr"] > metrics["test"]["full"]["mrr"]
    assert ranked["test"]["sampled"] == pytest.approx(metrics["test"]["sampled"], abs=1e-6)  # the paper's protocol


def test_pipeline_config_file_is_applied_and_flags_override_it(log_csv, tmp_path):
    config = tmp_path / "pipe.json"
    config.write_text(json.dumps({"model": {"max_len": 8, "hidden_units": 8, "dropout_rate": 0.3},
                                  "data": {"format": "csv", "user_col": "uid", "item_col": "sku",
                                           "time_col": "ts"},
                                  "train": {"eval_every": 1}}))
    assert main(["train", "--config", str(config), "--data", str(log_csv), "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--set", "num_blocks=1"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["sasrec_config"]
    assert (saved["max_len"], saved["hidden_units"], saved["num_blocks"], saved["epochs"]) == (8, 8, 1, 1)


@pytest.mark.parametrize("extra, message", [
    (["--set", "hiden_units=3"], "hiden_units"),
    (["--set", "num_heads=3"], "divisible"),
])
def test_bad_configuration_exits_with_a_message_not_a_traceback(log_csv, tmp_path, capsys, extra, message):
    assert main(train_args(log_csv, tmp_path / "x") + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_set_use_residual_false_trains_a_model_without_residual_connections(log_csv, tmp_path):
    from sasrec_tf.artifacts import load_trained

    out = tmp_path / "run"
    args = train_args(log_csv, out) + ["--set", "use_residual=False", "--set", "num_blocks=1"]
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["sasrec_config"]["use_residual"] is False
    blocks = load_trained(out).model.encoder.blocks
    assert len(blocks) == 1 and not blocks[0].use_residual


def _pipeline(tmp_path, **sections):
    path = tmp_path / "pipe.json"
    path.write_text(json.dumps(sections))
    return str(path)


@pytest.mark.parametrize("extra, message", [
    (["--set", "use_residual=maybe"], "--set use_residual=maybe: SASRecConfig.use_residual must be true or false"),
    (["--learning-rate", "nan"], "--learning-rate nan: SASRecConfig.learning_rate must be a finite number"),
    (["--l2-emb", "inf"], "--l2-emb inf: SASRecConfig.l2_emb must be a finite number"),
    (["--set", "dropout_rate=inf"], "--set dropout_rate=inf: SASRecConfig.dropout_rate must be in [0, 1)"),
    (["--eval-every", "0"], "--eval-every 0: TrainOptions.eval_every must be a positive integer"),
    (["--max-eval-users", "0"], "--max-eval-users 0: TrainOptions.max_eval_users must be a positive integer"),
    (["--patience", "-1"], "--patience -1: TrainOptions.patience must be a positive integer"),
    (["--max-minutes", "inf"], "--max-minutes inf: TrainOptions.max_minutes must be a finite number"),
    (["--min-rating", "x"], "--min-rating x: DataOptions.min_rating must be a number"),
    ({"model": {"dropout_rate": "0.2"}}, "pipe.json: model.dropout_rate: SASRecConfig.dropout_rate must be a number"),
    ({"model": {"seed": "x"}}, "pipe.json: model.seed: SASRecConfig.seed must be an integer, got 'x'"),
    ({"model": {"learning_rate": "1e-3"}}, "pipe.json: model.learning_rate: SASRecConfig.learning_rate must be a"),
    ({"model": {"use_residual": "false"}}, "pipe.json: model.use_residual: SASRecConfig.use_residual must be true"),
    ({"train": {"eval_every": 0}}, "pipe.json: train.eval_every: TrainOptions.eval_every must be a positive"),
    ({"model": {"max_len": 0}}, "pipe.json: model.max_len: SASRecConfig.max_len must be a positive integer"),
    ("config-dir", "is a directory; expected a pipeline file"),
    ("out-file", "is a file; expected a directory"),
])
def test_a_bad_option_is_one_line_naming_where_it_came_from(log_csv, tmp_path, capsys, extra, message):
    out = tmp_path / "x"
    if extra == "config-dir":
        extra = ["--config", str(tmp_path)]
    elif extra == "out-file":
        out.write_text("not a directory")
        extra = []
    args = train_args(log_csv, out)
    if isinstance(extra, dict):  # a file must be valid on its own, even where flags (TINY's) override it
        extra = ["--config", _pipeline(tmp_path, **extra)]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_what_evaluation_needs_is_one_line_before_training_naming_the_flag_that_fixes_it(tmp_path, capsys):
    small = tmp_path / "small.csv"
    generate_interactions(num_users=60, num_items=100, mean_length=12, seed=2).to_csv(small, index=False)
    args = ["train", "--data", str(small), "--format", "csv", "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pass --eval-negatives" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item,timestamp\n" + "".join(f"u{u},i{u + j},{j}\n" for u in range(30) for j in range(2)))
    assert main(["train", "--data", str(pairs), "--format", "csv", "--out", str(tmp_path / "p"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "3 interactions" in err and "Traceback" not in err, err


def test_data_hints_name_the_flags_the_user_types(log_csv, tmp_path, capsys):
    assert main(["train", "--data", str(log_csv), "--format", "csv", "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['user', 'item', 'timestamp']" in err
    assert "--user-col, --item-col, --time-col, --rating-col" in err and "user_col=" not in err, err


def test_a_finished_run_is_refused_without_overwrite(log_csv, tmp_path, capsys):
    out = tmp_path / "run"
    args = train_args(log_csv, out)
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    metrics = (out / "metrics.json").read_text()
    assert main(args + ["--hidden-units", "8"]) == 2
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == metrics

    (tmp_path / "base").write_text("x")
    assert main(["export", "--model", str(out), "--export-base", str(tmp_path / "base")]) == 2
    assert "--export-base" in capsys.readouterr().err


def test_malformed_log_exits_with_the_file_and_line_named(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 3\nthis-line-has-one-field\n")
    assert main(["train", "--data", str(bad), "--format", "sasrec", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "3" in err and "Traceback" not in err


def test_killed_training_resumes_when_the_same_command_is_rerun(log_csv, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "sasrec_tf.cli", *train_args(log_csv, out)]
    command[command.index("--epochs") + 1] = "400"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 240
    completed = 0
    try:
        for line in process.stdout:  # "Epoch N/400" starts an epoch; a backup is written after each
            started = EPOCH_START.match(line)
            if started:
                completed = int(started.group(1)) - 1
            if completed >= 3 or time.monotonic() > deadline:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert completed >= 3, "training did not get going"

    command[command.index("--epochs") + 1] = str(completed + 1)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_epoch = int(EPOCH_START.search(result.stdout).group(1))
    assert first_epoch >= completed, f"resumed at epoch {first_epoch}, but {completed} had completed"
    assert json.loads((out / "metrics.json").read_text())["test"]["full"]["hr@10"] >= 0


def test_commands_print_no_tensorflow_start_up_noise_unless_verbose(tmp_path):
    # TensorFlow's C++ start-up lines (CUDA probing, absl, CPU features) are written straight to
    # file descriptor 2 when TensorFlow loads; the CLI silences them, -v lets them through.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "sasrec_tf.cli", "evaluate", "--model", str(tmp_path / "none"),
                             "--data", str(tmp_path / "none.csv"), "--format", "csv"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if re.match(r"^[IWE]\d{4} |^WARNING: All log messages|oneDNN|cuda", line)]
    assert not noise, noise
    assert result.stderr.startswith("sasrec-tf: error: ") and len(result.stderr.strip().splitlines()) == 1


def test_the_demo_trains_evaluates_exports_and_answers_a_grpc_request(tmp_path, capsys):
    # The README's first command, small: generated log -> train -> both protocols beside the
    # baseline -> export -> the local TF Serving stand-in -> one Predict over gRPC. Running it
    # again into the same --out asks for --overwrite.
    args = ["demo", "--users", "300", "--items", "400", "--epochs", "1", "--out", str(tmp_path / "demo")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "most popular (baseline)" in out and "gRPC Predict" in out
    assert (tmp_path / "demo" / "metrics.json").is_file() and (tmp_path / "demo" / "export" / "sasrec" / "1").is_dir()
    counts = json.loads((tmp_path / "demo" / "metrics.json").read_text())["dataset"]  # what it prints is true
    assert f"of {counts['users']:,} users on {counts['items']:,} items" in out.splitlines()[0]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ CLI habits
def test_verbose_is_accepted_before_and_after_the_subcommand(tmp_path, capsys):
    from sasrec_tf.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "info", "d"]).verbose and parser.parse_args(["info", "d", "-v"]).verbose
    assert parser.parse_args(["info", "d", "--verbose"]).verbose and not parser.parse_args(["info", "d"]).verbose
    assert main(["info", str(tmp_path / "none"), "-v"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" not in err and "does not exist" in err and "Traceback" in err  # -v: traceback


def _subparsers():
    from sasrec_tf.cli import build_parser

    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


def test_every_flag_with_a_default_shows_it_in_its_help():
    import argparse

    for name, parser in _subparsers().items():
        parser.format_help()
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
                continue
            has_default = action.default not in (None, [], argparse.SUPPRESS)
            text = formatter._expand_help(action) if action.help else ""
            if has_default:
                assert "default" in text, f"sasrec-tf {name} {action.option_strings[0]}: {text!r}"
    train = _subparsers()["train"].format_help()
    for flag_name, column in (("--user-col", "user"), ("--item-col", "item"), ("--time-col", "timestamp")):
        assert re.search(re.escape(flag_name) + r" TEXT\s+[^-]*\(default:\s+" + column + r"\)", train), flag_name
    for flag_name in ("--hidden-units", "--eval-every", "--duplicates", "--min-user-interactions"):
        line = train[train.index(flag_name + " "):].split("\n  -")[0]
        assert "default" in line, line


def test_train_prints_the_configuration_fields_that_differ_from_the_defaults(log_csv, tmp_path, capsys):
    from sasrec_tf.cli.common import format_config
    from sasrec_tf.config import SASRecConfig

    text = format_config(SASRecConfig(max_len=10, loss="full_softmax", ffn_units=None), "RUN/config.json")
    assert text.splitlines()[1:] == ["  loss    = full_softmax  (default bce)", "  max_len = 10  (default 50)"]
    assert "RUN/config.json" in text.splitlines()[0]
    assert "SASRecConfig's defaults" in format_config(SASRecConfig(), "x")

    args = train_args(log_csv, tmp_path / "run")
    args[args.index("--epochs") + 1] = "1"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  max_len      = 10  (default 50)" in out and "  hidden_units = 16  (default 50)" in out
    assert max(len(line.replace(str(tmp_path), "")) for line in out.splitlines() if "config" in line) < 100
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sasrec_config"]["max_len"] == 10


def test_a_reader_that_leaves_the_pipe_early_gets_no_traceback(tmp_path):
    # `sasrec-tf info DIR | head -1`: stdout is a pipe whose reader is gone (unbuffered: the first write fails).
    from sasrec_tf import card as model_card
    from sasrec_tf.config import SASRecConfig

    (tmp_path / model_card.CARD_FILE).write_text(json.dumps(model_card.build_card(SASRecConfig(),
                                                                                   versions={"python": "3"})))
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run([sys.executable, "-u", "-m", "sasrec_tf.cli", "info", str(tmp_path), "-v"],
                                stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120, cwd=ROOT)
    finally:
        os.close(write)
    assert result.returncode == 141 and "Traceback" not in result.stderr and "error" not in result.stderr, \
        result.stderr
