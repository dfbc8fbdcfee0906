"""Help, argument errors and ``sasrec-tf info`` answer without importing TensorFlow (a fresh process each).

Each case runs ``sasrec_tf.cli.main(ARGS)`` in a new interpreter and checks that ``tensorflow`` is
not in ``sys.modules`` afterwards. A case that still needs TensorFlow because of a module outside
the CLI (see ``BLOCKERS``) is an expected failure while that module imports it, and a real check
once it does not.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sasrec_tf import card as model_card
from sasrec_tf.cli import build_parser
from sasrec_tf.config import SASRecConfig
from sasrec_tf.export.contract import ASSETS_EXTRA_DIR

ROOT = Path(__file__).resolve().parents[1]

# Library modules the parser or a command needs: each imports TensorFlow in this tree if its
# probe does. Key -> (probe, what blocks).
BLOCKERS = {
    "data": ("import sasrec_tf.data.ingest",
             "sasrec_tf/data/__init__.py imports the tf.data pipeline; the data flags need ingest.FORMATS"),
    "config": ("from sasrec_tf.config import SASRecConfig; SASRecConfig()",
               "SASRecConfig.validate imports sasrec_tf.objectives and sasrec_tf.optimizers"),
}

PROGRAM = textwrap.dedent("""
    import json, sys, time
    started = time.perf_counter()
    from sasrec_tf.cli import main
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exit:
        code = exit.code
    print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules,
                      "seconds": time.perf_counter() - started}))
""")


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def run_cli(args):
    """``main(args)`` in a fresh interpreter: its exit code, whether TensorFlow was imported, seconds."""
    result = subprocess.run([sys.executable, "-c", PROGRAM, json.dumps([str(a) for a in args])],
                            capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def active_blockers():
    """The keys of ``BLOCKERS`` whose module imports TensorFlow in this tree."""
    active = set()
    for key, (probe, _) in BLOCKERS.items():
        result = subprocess.run([sys.executable, "-c", f"import sys; {probe}; print('tensorflow' in sys.modules)"],
                                capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
        if result.stdout.strip().splitlines()[-1] == "True":
            active.add(key)
    return active


def check_without_tensorflow(args, needs, active_blockers, code):
    blocked = sorted(set(needs) & active_blockers)
    if blocked:
        pytest.xfail("; ".join(BLOCKERS[key][1] for key in blocked))
    outcome = run_cli(args)
    assert outcome["code"] == code, outcome
    assert not outcome["tensorflow"], f"sasrec-tf {' '.join(map(str, args))} imported TensorFlow"


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_subcommand_is_covered():
    assert subcommands() == sorted(["ablation", "add-items", "attention-plot", "demo", "evaluate", "export", "info",
                                    "recommend", "serve", "shard", "train", "tune"])


# Building the parser registers every subcommand, so every case needs what the data flags need.
@pytest.mark.parametrize("args", [["--help"], *[[name, "--help"] for name in subcommands()]],
                         ids=lambda args: " ".join(args))
def test_help_imports_no_tensorflow(args, active_blockers):
    check_without_tensorflow(args, ["data"], active_blockers, code=0)


@pytest.mark.parametrize("args, needs", [
    (["train", "--data", "log.csv"], ["data"]),  # --out missing: argparse
    (["add-items", "--model", "m"], ["data"]),  # --items and --export-base missing: argparse
    (["serve", "--model-base", ".", "--port", "70000"], ["data"]),
    (["export", "--model", "m", "--export-base", "b", "--force"], ["data"]),
    (["train", "--data", "log.csv", "--out", "out", "--eval-every", "0"], ["data", "config"]),
    (["tune", "--data", "log.csv", "--space", "space.json", "--trials", "0", "--out", "out"], ["data"]),
], ids=["missing-flag", "add-items-missing-flags", "serve-port", "export-force-without-gate", "eval-every-0",
        "tune-trials-0"])
def test_argument_errors_import_no_tensorflow(args, needs, active_blockers):
    check_without_tensorflow(args, needs, active_blockers, code=2)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """A model directory and an export base holding one version, each with a card written by hand."""
    root = tmp_path_factory.mktemp("cards")
    config = SASRecConfig(max_len=10, hidden_units=16)
    metrics = {"valid": {"full": {"hr@10": 0.5, "ndcg@10": 0.25, "mrr": 0.2}}}
    card = model_card.build_card(config, metrics=metrics, versions={"python": "3"})
    model_dir = root / "run"
    model_dir.mkdir()
    (model_dir / model_card.CARD_FILE).write_text(json.dumps(card))
    extra = root / "export" / "sasrec" / "1" / ASSETS_EXTRA_DIR
    extra.mkdir(parents=True)
    exported = model_card.export_card(card, model_name="sasrec", version=1, source=str(model_dir), gate=None)
    (extra / model_card.CARD_FILE).write_text(json.dumps(exported))
    return {"model": model_dir, "version": root / "export" / "sasrec" / "1", "base": root / "export" / "sasrec"}


@pytest.mark.parametrize("where", ["model", "version", "base"])
def test_info_imports_no_tensorflow(where, cards, active_blockers):
    check_without_tensorflow(["info", cards[where]], ["data", "config"], active_blockers, code=0)
