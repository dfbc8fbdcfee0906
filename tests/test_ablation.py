"""The ablation study (paper's Table IV): variants are one-switch changes; the command writes the table."""

import csv
import logging
import re

import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf.ablation import DEFAULT_VARIANTS, VARIANTS, variant_config
from sasrec_tf.cli import build_parser, main
from sasrec_tf.data.synthetic import generate_interactions


@pytest.fixture(scope="module")
def log_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("ablation") / "log.csv"
    generate_interactions(num_users=120, num_items=160, mean_length=8, seed=3).to_csv(path, index=False)
    return path


def test_each_variant_changes_only_its_switch():
    base = SASRecConfig()
    expected = {
        "default": {}, "no_positional_embedding": {"use_positional_embedding": False},
        "unshared_item_embedding": {"share_item_embedding": False}, "no_residual": {"use_residual": False},
        "no_dropout": {"dropout_rate": 0.0}, "blocks_0": {"num_blocks": 0}, "blocks_1": {"num_blocks": 1},
        "blocks_2": {}, "blocks_3": {"num_blocks": 3}, "multi_head": {"num_heads": 2},
        "pre_ln": {"layer_norm": "pre"}, "post_ln": {"layer_norm": "post"},
    }
    assert set(DEFAULT_VARIANTS) == set(VARIANTS) == set(expected)
    for name, changes in expected.items():
        changed = {k: v for k, v in variant_config(base, name).to_dict().items() if base.to_dict()[k] != v}
        assert changed == changes, name


def test_variants_that_do_not_fit_the_base_are_rejected_by_name():
    with pytest.raises(ValueError, match="multi_head"):
        variant_config(SASRecConfig(hidden_units=15), "multi_head")
    with pytest.raises(ValueError, match="unknown ablation variant"):
        variant_config(SASRecConfig(), "no_attention")


def test_command_runs_all_table_iv_variants_by_default():
    args = build_parser().parse_args(["ablation", "--data", "x.csv", "--format", "csv", "--out", "o"])
    assert args.variants == list(DEFAULT_VARIANTS)


def test_ablation_command_trains_variants_and_writes_markdown_and_csv(log_csv, tmp_path, capsys, caplog):
    out = tmp_path / "ablation"
    variants = ["default", "blocks_0", "blocks_2", "multi_head"]
    caplog.set_level(logging.WARNING)
    assert main(["ablation", "--data", str(log_csv), "--format", "csv", "--out", str(out), "--epochs", "1",
                 "--eval-every", "1", "--variants", *variants,
                 "--set", "max_len=8", "--set", "hidden_units=8", "--set", "batch_size=64"]) == 0
    with open(out / "ablation.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == variants
    for row in rows:
        assert row["epochs"] == "1"
        for column in ("full_hr@10", "full_ndcg@10", "sampled_hr@10", "sampled_ndcg@10"):
            assert 0.0 <= float(row[column]) <= 1.0
        assert float(row["sampled_hr@10"]) >= float(row["full_hr@10"])
    by_name = {r["variant"]: r for r in rows}
    assert by_name["blocks_2"]["changes"] == "same as default"  # the base has 2 blocks: not trained twice
    assert by_name["blocks_2"]["full_ndcg@10"] == by_name["default"]["full_ndcg@10"]
    assert by_name["default"]["full_ndcg@10_vs_default"] == "+0.0%"
    assert by_name["blocks_0"]["changes"] == "num_blocks=0"
    markdown = (out / "ablation.md").read_text()
    assert "| variant |" in markdown and "(7) 0 Block (b=0)" in markdown and '"max_len": 8' in markdown
    printed = capsys.readouterr().out
    assert "ablation.md" in printed
    for picture in ("ablation.png", "ablation_curves.png"):  # the bars and the variants' curves
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture in printed
    warnings = [re.sub(r"0x[0-9a-f]+|\d+", "#", r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(set(warnings)), warnings  # each warning once


def test_ablation_rows_hold_each_variants_measured_curves(log_csv):
    from sasrec_tf.ablation import run_ablation
    from sasrec_tf.data import load_dataset
    from sasrec_tf.experiment import TrainOptions

    base = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=64, epochs=4)
    rows = run_ablation(load_dataset(str(log_csv), "csv"), base, ["default", "blocks_1"],
                        options=TrainOptions(eval_every=3))
    assert rows[1]["changes"] == "same as default"
    for row in rows:
        curves = row["curves"]
        assert [epoch for epoch, _ in curves.loss] == [1, 2, 3, 4]
        assert curves.validated_epochs == [1, 3, 4]  # the first, every 3rd and the last epoch
    assert rows[1]["curves"] is rows[0]["curves"]


def test_ablation_command_reports_bad_variants_before_training(log_csv, tmp_path, capsys):
    code = main(["ablation", "--data", str(log_csv), "--format", "csv", "--out", str(tmp_path / "x"),
                 "--variants", "multi_head", "--set", "hidden_units=9"])
    assert code == 2
    assert "multi_head" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
