"""``sasrec-tf evaluate`` on a cold-start run: the hold-out the run recorded is applied again, so
the cold and warm numbers are the training run's own."""

import json

import numpy as np
import pytest

from sasrec_tf.cli import main
from sasrec_tf.data.cold_start import hold_out_as_recorded, hold_out_items
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold-evaluate")
    generate_interactions(num_users=80, num_items=40, mean_length=6, seed=4).to_csv(root / "log.csv", index=False)
    assert main(["train", "--data", str(root / "log.csv"), "--out", str(root / "run"), "--epochs", "1",
                 "--max-len", "6", "--hidden-units", "8", "--num-blocks", "1", "--eval-every", "1",
                 "--cold-items", "0.15", "--cold-seed", "5", "--eval-negatives", "10"]) == 0
    return root


def test_evaluate_reports_the_training_runs_cold_and_warm_numbers(cold_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(cold_run / "run"), "--data", str(cold_run / "log.csv"),
                 "--eval-negatives", "10", "--out", str(cold_run / "again.json")]) == 0
    out = capsys.readouterr().out
    trained = json.loads((cold_run / "run" / "metrics.json").read_text())
    again = json.loads((cold_run / "again.json").read_text())
    items = trained["dataset"]["items"]
    assert f"held out ({cold_run / 'run' / 'metrics.json'}): {round(0.15 * items)} of {items} items" in out
    assert again["cold_start"] == trained["cold_start"]
    for stage in ("valid", "test"):
        for group in ("cold", "warm", "full"):
            assert again[stage][group].keys() == trained[stage][group].keys()
            for key, value in trained[stage][group].items():
                assert again[stage][group][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (stage, group, key)
        assert again[stage]["cold"]["targets"] > 0
        assert f"cold ({trained[stage]['cold']['targets']} targets)" in out
    # The offsets' table needs item features: an id-only model has no item served from them.
    assert main(["evaluate", "--model", str(cold_run / "run"), "--data", str(cold_run / "log.csv"),
                 "--eval-negatives", "10", "--cold-score-offsets", "0", "1"]) == 2
    err = capsys.readouterr().err
    assert "--cold-score-offsets needs a model with item features" in err and err.count("\n") == 1


def test_a_record_that_does_not_fit_the_log_is_refused():
    split = leave_one_out(build_sequences(generate_interactions(num_users=40, num_items=20, mean_length=5, seed=0)))
    _, cold = hold_out_items(split, 0.2, 1)
    again, same = hold_out_as_recorded(split, cold.to_dict())
    np.testing.assert_array_equal(same.items, cold.items)
    assert [len(s) for s in again.train] == [len(s) for s in hold_out_items(split, 0.2, 1)[0].train]
    with pytest.raises(ValueError, match="catalogue of 21 items, this log's has 20"):
        hold_out_as_recorded(split, {**cold.to_dict(), "catalogue_items": 21}, "card.json")
    with pytest.raises(ValueError, match="held out 5 items"):
        hold_out_as_recorded(split, {**cold.to_dict(), "cold_items": 5})
    with pytest.raises(ValueError, match="needs a fraction in"):
        hold_out_as_recorded(split, {"fraction": 2.0, "seed": 1})


def test_a_cold_start_run_with_features_prints_the_offsets_table_and_evaluate_repeats_it(tmp_path, capsys):
    from sasrec_tf.data.synthetic import generate_attribute_interactions

    log, table = generate_attribute_interactions(num_users=120, num_items=60, num_categories=12, seed=1)
    log.to_csv(tmp_path / "log.csv", index=False)
    table.to_csv(tmp_path / "features.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "log.csv"), "--format", "csv", "--item-features",
                 str(tmp_path / "features.csv"), "--out", str(run), "--epochs", "1", "--max-len", "8",
                 "--hidden-units", "8", "--num-blocks", "1", "--eval-every", "1", "--cold-items", "0.1",
                 "--eval-negatives", "10"]) == 0
    printed = capsys.readouterr().out
    trained = json.loads((run / "metrics.json").read_text())["cold_score_offsets"]
    assert "cold-score offsets (valid, full ranking, ndcg@10)" in printed and "not served" in printed
    assert main(["evaluate", "--model", str(run), "--data", str(tmp_path / "log.csv"), "--format", "csv",
                 "--eval-negatives", "10", "--cold-score-offsets", "0", "0.5", "--out", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())["cold_score_offsets"]
    assert [row["offset"] for row in again["offsets"]] == [0.0, 0.5]
    grid = {row["offset"]: row for row in trained["offsets"]}  # the run's grid holds 0 and 0.5
    for mine in again["offsets"]:
        theirs = grid[mine["offset"]]
        for group in ("cold", "warm", "all"):
            assert mine[group]["ndcg@10"] == pytest.approx(theirs[group]["ndcg@10"], rel=1e-5, abs=1e-7)
