"""The cold-start protocol: held-out items leave training, stay targets; cold and warm metrics from
one ranking; the content baseline's scores and ranks computed by hand."""

import json

import numpy as np
import pytest

from sasrec_tf.cli import main
from sasrec_tf.data import build_sequences, leave_one_out
from sasrec_tf.data.cold_start import choose_cold_items, cold_target_mask, hold_out_items
from sasrec_tf.data.sequence_rules import window_ends
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.evaluation import DEFAULT_COLD_OFFSETS


@pytest.fixture(scope="module")
def split():
    log = generate_interactions(num_users=300, num_items=120, mean_length=9, seed=3)
    return leave_one_out(build_sequences(log))


# ------------------------------------------------------------------------------------ hold-out
def test_held_out_items_leave_every_training_window_and_history_but_stay_targets(split):
    held, cold = hold_out_items(split, 0.2, seed=4)
    assert len(cold.items) == round(0.2 * split.num_items) and cold.items.min() >= 1 and cold.items.max() <= split.num_items
    # No training window, built by the rule every reader shares, holds a held-out item.
    lengths = np.array([len(s) for s in held.train])
    rows, ends = window_ends(lengths, 5, "all")
    windows = [held.train[r][max(0, e - 6):e] for r, e in zip(rows, ends)]
    assert not np.isin(np.concatenate(windows), cold.items).any()
    for stage in ("valid", "test"):
        assert not np.isin(np.concatenate(getattr(held, f"{stage}_inputs")), cold.items).any()
        # Same users and targets: the cold ones are the held-out items among them.
        np.testing.assert_array_equal(getattr(held, f"{stage}_targets"), getattr(split, f"{stage}_targets"))
        np.testing.assert_array_equal(getattr(held, f"{stage}_users"), getattr(split, f"{stage}_users"))
        assert cold.cold_targets[stage] == cold_target_mask(getattr(split, f"{stage}_targets"), cold.items).sum() > 0
    # Only the held-out items were removed, in order, and the count says how many.
    for before, after in zip(split.train, held.train):
        np.testing.assert_array_equal(after, before[~np.isin(before, cold.items)])
    removed = sum(int(np.isin(s, cold.items).sum()) for s in split.train)
    assert cold.removed_training_interactions == removed > 0
    assert held.num_items == split.num_items  # they stay in the vocabulary


def test_no_hold_out_is_todays_split_and_the_choice_is_seeded(split):
    same, cold = hold_out_items(split, 0.0)
    assert same is split and not len(cold.items)
    np.testing.assert_array_equal(choose_cold_items(100, 0.1, seed=7), choose_cold_items(100, 0.1, seed=7))
    assert not np.array_equal(choose_cold_items(100, 0.1, seed=7), choose_cold_items(100, 0.1, seed=8))
    assert len(choose_cold_items(100, 0.001)) == 1  # a positive fraction holds out at least one item
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            choose_cold_items(100, bad)


def test_the_pipeline_key_sets_the_hold_out_and_a_fraction_outside_0_1_is_refused(tmp_path):
    from sasrec_tf.experiment import TrainOptions, load_pipeline

    path = tmp_path / "cold.json"
    path.write_text(json.dumps({"train": {"cold_items": 0.1, "cold_seed": 5}}))
    options = load_pipeline(path).build("train")
    assert (options.cold_items, options.cold_seed) == (0.1, 5)
    assert TrainOptions().cold_items == 0  # by default every item trains
    for bad in (1, -0.5):
        with pytest.raises(ValueError, match="cold_items must be a fraction in"):
            TrainOptions(cold_items=bad)



def test_a_bad_cold_items_flag_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "log.csv"), "--out", str(tmp_path / "run"),
                 "--cold-items", "1.5"]) == 2
    assert "--cold-items 1.5: TrainOptions.cold_items must be a fraction in [0, 1)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ cold / warm metrics
def test_cold_and_warm_metrics_split_one_ranking_and_add_up_to_the_overall(split):
    from sasrec_tf.evaluation import MostPopular, evaluate, evaluate_full, ranking_metrics

    held, cold = hold_out_items(split, 0.2, seed=4)
    popular = MostPopular(held.train, held.num_items)
    plain = evaluate(popular, held, stage="test", protocols=("full",))
    result = evaluate(popular, held, stage="test", protocols=("full",), cold_items=cold.items)
    assert result["full"] == plain["full"]  # the overall numbers are unchanged
    assert result["cold"]["targets"] + result["warm"]["targets"] == len(held.test_targets)
    assert result["cold"]["targets"] == cold.cold_targets["test"]
    _, ranks = evaluate_full(popular, held.test_inputs, held.test_targets, return_ranks=True)
    is_cold = np.isin(held.test_targets, cold.items)
    assert result["cold"]["hr@10"] == ranking_metrics(ranks[is_cold])["hr@10"]
    assert result["warm"]["ndcg@10"] == pytest.approx(ranking_metrics(ranks[~is_cold])["ndcg@10"])
    # Weighted by their targets, the groups give the overall metric.
    share = result["cold"]["targets"] / len(ranks)
    assert share * result["cold"]["mrr"] + (1 - share) * result["warm"]["mrr"] == pytest.approx(result["full"]["mrr"])
    assert result["cold"]["hr@20"] == 0.0  # never trained on: popularity 0, below every warm item


# ------------------------------------------------------------------------------------ content baseline
# Items 1..5 over attributes 1..3: 1 {1, 2}, 2 {2}, 3 {3}, 4 {1, 3}, 5 {} (item 0 = padding).
VALUES = np.array([1, 2, 2, 3, 1, 3, 3])  # item 4 lists attribute 3 twice: a set, counted once
ROW_SPLITS = np.array([0, 0, 2, 3, 4, 7, 7])


class Features:  # the AlignedFeatures layout
    values, row_splits = VALUES, ROW_SPLITS

    def num_attributes(self):
        return 3


def test_content_baseline_scores_are_the_cosine_of_attribute_set_and_history_counts():
    from sasrec_tf.evaluation import ContentBaseline
    from sasrec_tf.ranking import Ranker

    model = ContentBaseline(Features(), num_items=5, max_len=3)
    # History [1, 2]: attribute counts (1, 2, 0), norm sqrt(5).
    scores = Ranker(model).scores(np.array([[0, 1, 2], [0, 0, 0]])).numpy()
    expected = [3 / np.sqrt(2 * 5), 2 / np.sqrt(5), 0.0, 1 / np.sqrt(2 * 5), 0.0]
    np.testing.assert_allclose(scores[0, 1:], expected, rtol=1e-6)
    np.testing.assert_array_equal(scores[1, 1:], np.zeros(5))  # an empty history: no information
    assert scores[0, 0] < 0  # padding below every item


@pytest.mark.parametrize("history, target, rank", [
    ([1, 2], 4, 1),  # candidates 3 (0), 4 (0.316), 5 (0): first
    ([1, 2], 3, 3),  # 4 beats it, 5 ties with it (pessimistic): third of three
    ([3], 4, 1),  # counts (0, 0, 1): 4 scores 1/sqrt(2), 1 and 2 score 0
    ([3], 1, 4),  # ties with 2 and 5, below 4: last of four
    ([4, 4], 3, 1),  # a repeated history item counts twice, the same direction
])
def test_content_baseline_ranks_by_hand(history, target, rank):
    from sasrec_tf.evaluation import ContentBaseline, evaluate_full

    model = ContentBaseline((VALUES, ROW_SPLITS, 3), num_items=5, max_len=4)
    _, ranks = evaluate_full(model, [np.array(history)], [target], return_ranks=True)
    assert ranks.tolist() == [rank]


def test_content_baseline_refuses_features_of_another_catalogue():
    from sasrec_tf.evaluation import ContentBaseline

    with pytest.raises(ValueError, match="cover 5 items, the catalogue has 6"):
        ContentBaseline(Features(), num_items=6)
    with pytest.raises(ValueError, match="attribute ids must be in 0..2"):
        ContentBaseline((VALUES, ROW_SPLITS, 2))


# ------------------------------------------------------------------------------------ end to end
def test_train_with_cold_items_writes_cold_and_warm_metrics_the_card_and_the_table(tmp_path, capsys):
    log = tmp_path / "log.csv"
    generate_interactions(num_users=150, num_items=80, mean_length=8, seed=1).to_csv(log, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(log), "--out", str(out), "--epochs", "1", "--max-len", "8",
                 "--hidden-units", "8", "--eval-every", "1", "--cold-items", "0.1", "--cold-seed", "3",
                 "--eval-negatives", "20"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cold_start"]["cold_items"] == round(0.1 * metrics["dataset"]["items"])
    assert metrics["cold_start"]["seed"] == 3
    for stage in ("valid", "test"):
        groups = metrics[stage]["cold"]["targets"], metrics[stage]["warm"]["targets"]
        assert sum(groups) == metrics["dataset"]["evaluated_users"] and min(groups) > 0
        assert {"hr@10", "ndcg@10"} <= set(metrics[stage]["cold"]) and {"hr@10", "ndcg@10"} <= set(metrics[stage]["warm"])
    assert "cold" in metrics["baseline_most_popular"]["test"]
    card = json.loads((out / "card.json").read_text())
    assert card["metrics"]["test"]["cold"] == metrics["test"]["cold"]
    assert card["cold_start"] == metrics["cold_start"]
    table = capsys.readouterr().out
    assert f"cold ({metrics['test']['cold']['targets']} targets)" in table
    assert "most popular baseline (test)" in table


def test_a_run_with_item_features_reports_the_content_baseline_on_cold_and_warm_targets():
    from sasrec_tf import SASRecConfig
    from sasrec_tf.data.item_features import ItemFeatures
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    data = build_sequences(generate_interactions(num_users=150, num_items=80, mean_length=8, seed=1))
    rng = np.random.default_rng(0)  # two of ten attributes per item
    features = ItemFeatures({item: tuple(f"a{a}" for a in rng.choice(10, size=2, replace=False))
                             for item in data.vocab.ids}, source="hand-built")
    result = train_and_evaluate(data, SASRecConfig(epochs=1, max_len=8, hidden_units=8, feature_fusion="sum"),
                                options=TrainOptions(eval_every=1, eval_negatives=20, cold_items=0.1),
                                item_features=features)
    content, popular = result.metrics["baseline_content"]["test"], result.metrics["baseline_most_popular"]["test"]
    assert content["cold"]["targets"] == result.metrics["test"]["cold"]["targets"] > 0
    assert content["cold"]["targets"] + content["warm"]["targets"] == result.metrics["dataset"]["evaluated_users"]
    # Attributes rank held-out items above where popularity (no training interactions) puts them.
    assert content["cold"]["mrr"] > popular["cold"]["mrr"]
    # The feature model's held-out items were never trained on: their id part is masked out.
    assert result.metrics["item_features"]["items_not_trained_on"] >= result.metrics["cold_start"]["cold_items"]
    # The table of cold-score offsets, on validation: offset 0 is the run's own ranking; a higher
    # offset can only lower each cold target and raise each warm one; not served, no cold target is found.
    table = result.metrics["cold_score_offsets"]
    assert table["stage"] == "valid" and [row["offset"] for row in table["offsets"]] == list(DEFAULT_COLD_OFFSETS)
    for group, key in (("cold", "cold"), ("warm", "warm"), ("all", "full")):
        assert table["offsets"][0][group]["ndcg@10"] == pytest.approx(result.metrics["valid"][key]["ndcg@10"])
    rows = table["offsets"] + [table["not_served"]]
    for lower, higher in zip(rows, rows[1:]):
        assert higher["warm"]["mrr"] >= lower["warm"]["mrr"] - 1e-12
        assert higher["cold"]["mrr"] <= lower["cold"]["mrr"] + 1e-12
    assert table["not_served"]["cold"]["hr@10"] == 0.0
