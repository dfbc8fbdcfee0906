"""The README's Python quick start runs as written, against a model directory like the one
`sasrec-tf demo` writes (same generated ids, smaller sizes), and its ids are ids that model knows."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The README's ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A tiny trained model in ``ROOT/demo_output``, from the demo's generator (ids ``i1`` ...)."""
    from sasrec_tf import SASRecConfig
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    root = tmp_path_factory.mktemp("readme")
    data = build_sequences(generate_interactions(num_users=150, num_items=120, seed=42))
    config = SASRecConfig(max_len=20, hidden_units=16, num_blocks=1, num_heads=1, epochs=1, batch_size=64, seed=1)
    train_and_evaluate(data, config, out_dir=root / "demo_output",
                       options=TrainOptions(eval_every=5, eval_negatives=10))
    return root


def test_readme_has_one_python_quick_start_with_public_names_only():
    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no ```python block"
    code = "\n".join(blocks)
    assert "from sasrec_tf import Recommender" in code
    assert "_compat" not in code and not re.search(r"sasrec_tf\.\w*\._", code)  # no private module


def test_readme_quick_start_runs_as_written(demo_dir, monkeypatch):
    monkeypatch.chdir(demo_dir)
    namespace: dict = {}
    for block in python_blocks(README.read_text()):
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    top = namespace["top"]
    assert top.item_ids.shape == top.scores.shape and top.item_ids.shape[0] == len(top.known)
    assert (top.known > 0).all(), "the quick start's ids are unknown to the demo's model: it got the popularity list"
    frame = top.to_frame()
    assert list(frame.columns) == ["row", "rank", "item_id", "score", "known"]


def test_readme_keeps_the_two_commands_ci_runs():
    text = README.read_text()
    assert "pip install -r requirements.txt && pip install --no-deps -e . && sasrec-tf demo" in text
    command = "python -m pytest -q -n 2 --dist loadfile tests"
    assert command in text
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == command, ".ci/run must end with exactly the README's test command"


def test_no_page_names_a_path_of_a_development_machine():
    root = README.parent
    pages = [README, root / "benchmarks" / "README.md", root / "serving" / "README.md", *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for path in ("../shared", "/work/", "item-17"):
            assert path not in text, f"{page.relative_to(root)} names {path!r}"
