"""Pictures (sasrec_tf.plots): a run's curves, an ablation's bars and curves, the quality benchmark's charts.

Each picture is a PNG, and only what was measured is drawn: validation points on the epochs that
validated, no line across an epoch that did not.
"""

import importlib.util
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from sasrec_tf import plots
from sasrec_tf.plots import Curves, plot_ablation, plot_ablation_curves, plot_run, read_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def assert_png(path):
    path = Path(path)
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw (still saved), to read the data they plotted."""
    figures = []
    save = plots._save

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def line_points(axis):
    """Each line's (x, y) points, the NaN breaks left out."""
    return {line.get_label(): [(x, y) for x, y in zip(line.get_xdata(), line.get_ydata()) if not math.isnan(x)]
            for line in axis.get_lines()}


def line_segments(axis, label):
    """The runs of consecutive points a line draws (matplotlib breaks a line at NaN)."""
    line = next(line for line in axis.get_lines() if line.get_label() == label)
    segments, current = [], []
    for x in line.get_xdata():
        if math.isnan(x):
            segments.append(current)
            current = []
        else:
            current.append(int(x))
    return [s for s in segments + [current] if s]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished `sasrec-tf train`-style run: 5 epochs, validating every 3rd (so epochs 1, 3, 5)."""
    from sasrec_tf import SASRecConfig
    from sasrec_tf.data.sequences import build_sequences
    from sasrec_tf.data.synthetic import generate_interactions
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    data = build_sequences(generate_interactions(num_users=120, num_items=150, mean_length=8, max_length=30, seed=7))
    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=64, epochs=5, seed=1)
    result = train_and_evaluate(data, config, out_dir=out, options=TrainOptions(eval_every=3))
    return out, result


def test_curves_from_epoch_logs_keep_only_validated_epochs():
    logs = [(0, {"loss": 1.0, "val_hr@10": 0.1, "val_ndcg@10": 0.05}),
            (1, {"loss": 0.9}),  # did not validate: no value
            (2, {"loss": 0.8, "val_hr@10": float("nan"), "val_ndcg@10": float("nan")}),  # nor here
            (3, {"loss": 0.7, "val_hr@10": 0.1, "val_ndcg@10": 0.05})]  # validated, same values: kept
    curves = Curves.from_epoch_logs(logs)
    assert curves.loss == [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.7)]
    assert curves.validated_epochs == [1, 4]
    assert curves.validation == {"hr@10": [(1, 0.1), (4, 0.1)], "ndcg@10": [(1, 0.05), (4, 0.05)]}


def test_values_carried_forward_over_epochs_that_did_not_validate_are_not_measurements():
    # the validation callback before issue 25 repeated the last values on every epoch in between
    logs = [(0, {"loss": 1.0, "val_ndcg@10": 0.01, "val_mrr": 0.02}),
            (1, {"loss": 0.9, "val_ndcg@10": 0.01, "val_mrr": 0.02}),
            (2, {"loss": 0.8, "val_ndcg@10": 0.03, "val_mrr": 0.04}),
            (3, {"loss": 0.7, "val_ndcg@10": 0.03, "val_mrr": 0.04})]
    curves = Curves.from_epoch_logs(logs)
    assert curves.validated_epochs == [1, 3]
    assert curves.validation["mrr"] == [(1, 0.02), (3, 0.04)]
    assert [e for e, _ in curves.loss] == [1, 2, 3, 4]


def test_a_resumed_epoch_logged_again_counts_once():
    curves = Curves.from_epoch_logs([(0, {"loss": 1.0}), (1, {"loss": 0.9}), (1, {"loss": 0.95})])
    assert curves.loss == [(1, 1.0), (2, 0.95)]


def test_run_curves_are_read_from_the_tensorboard_logs_on_validated_epochs_only(run):
    out, result = run
    curves = read_curves(out)
    assert [e for e, _ in curves.loss] == [1, 2, 3, 4, 5]
    assert curves.validated_epochs == [1, 3, 5]
    assert set(curves.validation) == {"hr@10", "ndcg@10", "mrr"}
    history = result.history.history
    for name, points in curves.validation.items():  # what TensorBoard recorded is what the History holds
        values = [v for v in history[f"val_{name}"] if not math.isnan(v)]
        if len(values) == 5:  # a value on every epoch (carried forward between validations)
            values = [values[epoch - 1] for epoch in (1, 3, 5)]
        assert [v for _, v in points] == pytest.approx(values, rel=1e-6)
    np.testing.assert_allclose([v for _, v in curves.loss], history["loss"], rtol=1e-6)


def test_plot_run_writes_curves_png_into_the_run_and_draws_no_line_across_unvalidated_epochs(run, drawn):
    out, _ = run
    path = plot_run(out)
    assert path == out / "curves.png"
    assert_png(path)
    loss_axis, validation_axis = drawn[-1].axes
    assert [x for x, _ in line_points(loss_axis)["_child0"]] == [1, 2, 3, 4, 5]
    measured = line_points(validation_axis)
    for name in ("HR@10", "NDCG@10", "MRR"):
        assert [x for x, _ in measured[name]] == [1, 3, 5]
        assert line_segments(validation_axis, name) == [[1], [3], [5]]  # isolated points, no line
    assert "test NDCG@10" in drawn[-1]._suptitle.get_text()


def test_plot_run_takes_another_path_and_refuses_a_directory_without_logs(run, tmp_path):
    out, _ = run
    assert_png(plot_run(out, tmp_path / "pictures" / "run.png"))
    with pytest.raises(FileNotFoundError, match="TensorBoard"):
        plot_run(tmp_path)


ROWS = [  # as ablation.csv holds them: strings
    {"variant": "default", "paper_name": "(1) Default", "changes": "none", "full_hr@10": "0.30",
     "full_ndcg@10": "0.15", "sampled_hr@10": "0.60", "sampled_ndcg@10": "0.40"},
    {"variant": "blocks_0", "paper_name": "(7) 0 Block (b=0)", "changes": "num_blocks=0", "full_hr@10": "0.20",
     "full_ndcg@10": "0.10", "sampled_hr@10": "0.50", "sampled_ndcg@10": "0.30"},
    {"variant": "blocks_2", "paper_name": "2 Blocks (b=2)", "changes": "same as default", "full_hr@10": "0.30",
     "full_ndcg@10": "0.15", "sampled_hr@10": "0.60", "sampled_ndcg@10": "0.40"},
]


def test_ablation_bars_show_each_variants_test_metrics_with_the_default_highlighted(tmp_path, drawn):
    assert_png(plot_ablation(ROWS, tmp_path / "ablation.png"))
    full, sampled = drawn[-1].axes
    assert "full ranking" in full.get_title() and "sampled" in sampled.get_title()
    labels = [t.get_text() for t in full.get_yticklabels()]
    assert labels == ["(1) Default", "(7) 0 Block (b=0)", "2 Blocks (b=2) (= default)"]
    assert [t.get_fontweight() for t in full.get_yticklabels()] == ["bold", "normal", "normal"]
    ndcg, hr = full.containers
    assert [bar.get_width() for bar in ndcg] == pytest.approx([0.15, 0.10, 0.15])
    assert [bar.get_width() for bar in hr] == pytest.approx([0.30, 0.20, 0.30])
    assert [bar.get_width() for bar in sampled.containers[0]] == pytest.approx([0.40, 0.30, 0.40])


def test_ablation_curves_overlay_the_variants_on_their_validated_epochs(tmp_path, drawn):
    curves = {"default": Curves.from_epoch_logs([(0, {"loss": 1.0, "val_ndcg@10": 0.1, "val_hr@10": 0.2}),
                                                 (1, {"loss": 0.9}),
                                                 (2, {"loss": 0.8, "val_ndcg@10": 0.2, "val_hr@10": 0.3})]),
              "blocks_0": Curves.from_epoch_logs([(0, {"loss": 1.1, "val_ndcg@10": 0.05, "val_hr@10": 0.1}),
                                                  (1, {"loss": 1.0, "val_ndcg@10": 0.07, "val_hr@10": 0.12})])}
    assert_png(plot_ablation_curves(curves, tmp_path / "curves.png"))
    loss, ndcg, hr = drawn[-1].axes
    assert "NDCG@10" in ndcg.get_title() and "HR@10" in hr.get_title()
    points = line_points(ndcg)
    assert [x for x, _ in points["default"]] == [1, 3]
    assert line_segments(ndcg, "default") == [[1], [3]]
    assert line_segments(ndcg, "blocks_0") == [[1, 2]]  # consecutive validated epochs are joined
    default = next(line for line in ndcg.get_lines() if line.get_label() == "default")
    assert default.get_linewidth() > max(line.get_linewidth() for line in ndcg.get_lines() if line is not default)


def test_quality_benchmark_runs_mode_writes_bars_and_curves_beside_its_table(run, tmp_path, capsys):
    out, _ = run
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    assert quality.main(["--runs", str(out), str(out), "--out", str(tmp_path / "q")]) == 0
    assert "| run |" in (tmp_path / "q" / "runs.md").read_text()
    assert_png(tmp_path / "q" / "runs.png")
    assert_png(tmp_path / "q" / "runs_curves.png")
    assert "runs.png" in capsys.readouterr().out


def test_each_warning_once_shows_tensorflows_retracing_warning_once(caplog):
    import tensorflow as tf

    from sasrec_tf.ablation import each_warning_once

    def new_function():  # a new tf.function of the same code each time, as each evaluation makes
        return tf.function(lambda x: x + 1)

    def retracing_warnings():
        return [r for r in caplog.records if r.name == "tensorflow" and "retracing" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for _ in range(8):
            new_function()(tf.constant(1))
        assert len(retracing_warnings()) == 2  # TensorFlow's own: twice, "5 out of ..." then "6 out of ..."

        def another_function():
            return tf.function(lambda x: x * 2)

        caplog.clear()
        with each_warning_once():
            for _ in range(8):
                another_function()(tf.constant(1))
        assert len(retracing_warnings()) == 1
