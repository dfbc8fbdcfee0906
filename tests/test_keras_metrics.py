"""Streaming Keras ranking metrics (HitRate, NDCG, MRR): hand-computed ranks, and a SASRec compiled with
them giving sasrec_tf.evaluation's full-ranking numbers in ``evaluate`` and in ``fit``'s validation, also
under tf.distribute; QueryModel gives the same for any query model (the most-popular baseline)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.baselines import MostPopular
from sasrec_tf.data.pipeline import training_dataset
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.evaluation import evaluate_full
from sasrec_tf.keras_evaluation import QueryModel, validation_dataset
from sasrec_tf.metrics import MRR, NDCG, NOT_A_CANDIDATE, HitRate, full_ranks

CONFIG = SASRecConfig(max_len=10, hidden_units=16, num_blocks=1, num_heads=1, dropout_rate=0.0)


class FixedItems:
    """Candidates with a given item matrix (the metrics need only ``item_embeddings()``)."""

    def __init__(self, matrix):
        self.matrix = tf.constant(matrix, tf.float32)

    def item_embeddings(self):
        return self.matrix


# Items 1..5 score 5, 4, 4, 2, 1 for the query [1] (row 0 is padding).
ITEMS = FixedItems([[0.0], [5.0], [4.0], [4.0], [2.0], [1.0]])
QUERIES = tf.ones((3, 1))
# Row 0: target 2 ties with item 3 (counts against it) → rank 3. Row 1: target 4 is in its history
# {1, 4}: a miss (not a candidate) by default, left out with "drop", and with "rank" it stays a
# candidate → rank 3 of items 2, 3, 4, 5. Row 2: target 1, history {2, 3} → 1.
Y_TRUE = tf.constant([[2, 0, 0], [4, 1, 4], [1, 2, 3]])


def test_full_ranks_hand_computed_ties_count_against_the_target_and_history_is_removed():
    def ranks(*args):
        return full_ranks(QUERIES, ITEMS.item_embeddings(), Y_TRUE[:, 0], *args).numpy().tolist()

    assert ranks(Y_TRUE[:, 1:]) == [3, NOT_A_CANDIDATE, 1]
    assert ranks(Y_TRUE[:, 1:], "drop") == [3, 0, 1]
    assert ranks(Y_TRUE[:, 1:], "rank") == [3, 3, 1]
    assert ranks() == [3, 4, 1]


def test_a_repeated_target_is_a_miss_or_left_out_as_in_evaluate_full():
    missed, dropped = MRR(ITEMS), MRR(ITEMS, repeated_targets="drop")
    for metric in (missed, dropped):
        metric.update_state(Y_TRUE, QUERIES)
    assert missed.result().numpy() == pytest.approx((1 / 3 + 1) / 3, rel=1e-6)
    assert dropped.result().numpy() == pytest.approx((1 / 3 + 1) / 2)
    hr = HitRate(ITEMS, k=10)
    hr.update_state(Y_TRUE, QUERIES)
    assert hr.result().numpy() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="repeated_targets"):
        NDCG(ITEMS, repeated_targets="skip")


def test_metric_values_from_hand_computed_ranks_3_3_1():
    hr, ndcg, mrr = (HitRate(ITEMS, k=2, repeated_targets="rank"), NDCG(ITEMS, k=3, repeated_targets="rank"),
                     MRR(ITEMS, repeated_targets="rank"))
    for metric in (hr, ndcg, mrr):
        metric.update_state(Y_TRUE[:2], QUERIES[:2])  # streaming: two updates, one mean
        metric.update_state(Y_TRUE[2:], QUERIES[2:])
    assert (hr.name, ndcg.name, mrr.name) == ("hr@2", "ndcg@3", "mrr")
    assert hr.result().numpy() == pytest.approx(1 / 3)
    assert ndcg.result().numpy() == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert mrr.result().numpy() == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    without_exclusion = MRR(ITEMS, exclude_history=False)
    without_exclusion.update_state(Y_TRUE, QUERIES)
    assert without_exclusion.result().numpy() == pytest.approx((1 / 3 + 1 / 4 + 1) / 3)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="item_embeddings"):
        HitRate(object())
    with pytest.raises(ValueError, match="positive"):
        NDCG(ITEMS, k=0)


@pytest.fixture(scope="module")
def trained():
    """A SASRec trained one epoch on a small generated log, and its leave-one-out split."""
    data = build_sequences(generate_interactions(num_users=150, num_items=60, mean_length=9, seed=3))
    split = leave_one_out(data)
    keras.utils.set_random_seed(0)
    model = SASRec(CONFIG, num_items=split.num_items).build_weights()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(training_dataset(split.train, split.num_items, CONFIG.max_len, 32, seed=0), epochs=1, verbose=0)
    return model, split


def compiled_metrics(model, exclude_history=True):
    return [HitRate(model, k=1, exclude_history=exclude_history), HitRate(model, k=10, exclude_history=exclude_history),
            NDCG(model, k=10, exclude_history=exclude_history), MRR(model, exclude_history=exclude_history)]


def assert_equal_to_full_ranking(result, model, split, exclude_history=True):
    expected = evaluate_full(model, split.valid_inputs, split.valid_targets, ks=(1, 10),
                             exclude_history=exclude_history)
    for key in ("hr@1", "hr@10", "ndcg@10", "mrr"):
        assert result[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    assert 0 < expected["mrr"] < 1


def copy_of(model, **compile_kwargs):
    """A SASRec with ``model``'s weights, compiled with ``compile_kwargs`` (the fixture stays as it is)."""
    replica = SASRec(CONFIG, num_items=model.num_items).build_weights()
    replica.set_weights(model.get_weights())
    replica.compile(**compile_kwargs)
    return replica


@pytest.mark.parametrize("exclude_history", [True, False])
def test_a_compiled_sasrec_evaluates_to_the_full_ranking_numbers_of_sasrec_evaluation(trained, exclude_history):
    model, split = trained
    scorer = copy_of(model)
    scorer.compile(metrics=compiled_metrics(scorer, exclude_history))
    # A batch size that leaves a smaller last batch: the metrics stream over uneven batches.
    result = scorer.evaluate(validation_dataset(split, model.max_len, batch_size=37), return_dict=True, verbose=0)
    assert_equal_to_full_ranking(result, model, split, exclude_history)
    assert set(result) == {"hr@1", "hr@10", "ndcg@10", "mrr"}  # not the training trackers
    # A second evaluate starts from zero (Keras resets the compiled metrics) and sees the same.
    again = scorer.evaluate(validation_dataset(split, model.max_len, batch_size=64), return_dict=True, verbose=0)
    assert again["mrr"] == pytest.approx(result["mrr"], rel=1e-6)
    # Training batches still give the loss and pairwise accuracy, and only those.
    batches = training_dataset(split.train, split.num_items, CONFIG.max_len, 32, seed=0).take(2)
    assert set(scorer.evaluate(batches, return_dict=True, verbose=0)) == {"loss", "pairwise_accuracy"}


def test_fit_validates_with_the_compiled_metrics_and_trains_as_before(trained, tmp_path):
    model, split = trained
    plain = copy_of(model, optimizer=keras.optimizers.Adam(1e-2))
    ranked = copy_of(model)
    ranked.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=compiled_metrics(ranked))

    def batches():
        return training_dataset(split.train, split.num_items, CONFIG.max_len, 32, seed=1)

    plain_history = plain.fit(batches(), epochs=1, verbose=0).history
    history = ranked.fit(batches(), validation_data=validation_dataset(split, model.max_len), epochs=1,
                         verbose=0).history
    assert set(history) == {"loss", "pairwise_accuracy", "val_hr@1", "val_hr@10", "val_ndcg@10", "val_mrr"}
    assert history["loss"] == pytest.approx(plain_history["loss"], rel=1e-5)  # metrics do not touch training
    # The validation of the epoch is the full ranking of the weights it ended with.
    assert_equal_to_full_ranking({k[4:]: v[-1] for k, v in history.items() if k.startswith("val_")}, ranked, split)
    # A model compiled with ranking metrics saves and reloads, compiled (its optimizer; the ranking
    # metrics, which hold the model, are compiled again) or not (as artifacts.load_trained does).
    ranked.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.optimizer, keras.optimizers.Adam)
    np.testing.assert_allclose(reloaded.item_embeddings().numpy(), ranked.item_embeddings().numpy())
    reloaded.compile(metrics=compiled_metrics(reloaded))
    assert_equal_to_full_ranking(reloaded.evaluate(validation_dataset(split, model.max_len), return_dict=True,
                                                   verbose=0), ranked, split)
    uncompiled = keras.models.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(uncompiled.item_embeddings().numpy(), ranked.item_embeddings().numpy())


def test_ranking_batches_without_compiled_ranking_metrics_are_refused(trained):
    model, split = trained
    with pytest.raises(ValueError, match="need ranking metrics"):
        copy_of(model).evaluate(validation_dataset(split, model.max_len), verbose=0)


def test_evaluate_under_a_mirrored_strategy_gives_the_same_numbers(trained):
    model, split = trained
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        replica = copy_of(model)
        replica.compile(metrics=compiled_metrics(replica))
    result = replica.evaluate(validation_dataset(split, model.max_len, batch_size=40), return_dict=True, verbose=0)
    assert_equal_to_full_ranking(result, model, split)


def test_query_model_evaluates_any_query_model_such_as_the_most_popular_baseline(trained):
    _, split = trained
    popular = MostPopular(split.train, split.num_items, CONFIG.max_len)
    scorer = QueryModel(popular)
    scorer.compile(metrics=compiled_metrics(popular))
    result = scorer.evaluate(validation_dataset(split, CONFIG.max_len, batch_size=37), return_dict=True, verbose=0)
    assert_equal_to_full_ranking(result, popular, split)
    assert set(result) == {"loss", "hr@1", "hr@10", "ndcg@10", "mrr"}


def test_resetting_a_metric_leaves_the_model_weights_alone(trained):
    model, _ = trained
    metric = NDCG(model)
    before = model.item_embeddings().numpy().copy()
    metric.update_state(tf.constant([[1, 2]]), tf.ones((1, CONFIG.hidden_units)))
    metric.reset_state()
    assert [v.name.split("/")[-1].split(":")[0] for v in metric.variables] == ["total", "count"]
    np.testing.assert_array_equal(model.item_embeddings().numpy(), before)


def test_validation_dataset_rows_are_padded_input_and_target_then_whole_history(trained):
    _, split = trained
    item_ids, y_true = next(iter(validation_dataset(split, max_len=3, batch_size=4)))
    assert item_ids.shape == (4, 3) and item_ids.dtype == tf.int32
    longest = max(len(s) for s in split.valid_inputs[:4])
    assert y_true.shape == (4, 1 + longest)
    for row in range(4):
        history = np.asarray(split.valid_inputs[row])
        np.testing.assert_array_equal(item_ids[row].numpy(), np.pad(history[-3:], (3 - len(history[-3:]), 0)))
        assert y_true[row, 0] == split.valid_targets[row]
        np.testing.assert_array_equal(y_true[row, 1:1 + len(history)].numpy(), history)
        assert not y_true[row, 1 + len(history):].numpy().any()
    assert math.isclose(len(list(validation_dataset(split, 3, batch_size=7))), math.ceil(len(split.valid_targets) / 7))
