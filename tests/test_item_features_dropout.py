"""Frequency-aware id dropout (``feature_id_dropout_count``): an item's id part is dropped in
training with ``feature_id_dropout * max(0, 1 - count / c)``, its count from the training split
(cold items held out count 0), saved with the model; with 0 the model is today's."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf import training
from sasrec_tf._compat import keras
from sasrec_tf.config import OptionError, SASRecConfig
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.layers import ItemRepresentation

COUNTS = [0, 0, 5, 10, 20]  # padding, an unseen item, then 5, 10 and 20 training interactions
RATE, C = 0.5, 10


def layer_with_counts(count=C):
    layer = ItemRepresentation(4, num_attributes=3, max_attributes=1, hidden_units=2, fusion="sum",
                               id_dropout_rate=RATE, id_dropout_count=count)
    # No attributes: a lookup's output is the id vector times its kept-or-dropped mask.
    layer.set_features(np.zeros((5, 1), np.int64), np.ones(5, bool), target_counts=COUNTS)
    return layer


def test_each_items_drop_probability_is_the_rate_scaled_by_how_rare_it_is():
    layer = layer_with_counts()
    # By hand: 0.5 * max(0, 1 - n / 10) for n = 0, 0, 5, 10, 20.
    np.testing.assert_allclose(layer.id_drop_probability(np.arange(5)).numpy(), [0.5, 0.5, 0.25, 0.0, 0.0])
    tf.random.set_seed(0)
    draws = 20000
    ids = np.tile(np.arange(1, 5), draws)
    kept = layer(np.ones((len(ids), 2), np.float32), ids, training=True).numpy()[:, 0]
    assert set(np.unique(kept)) <= {0.0, 1.0}
    dropped = 1.0 - kept.reshape(draws, 4).mean(axis=0)
    # Binomial standard deviation at p = 0.5 over 20000 draws: 0.0035; 0.015 is four of them.
    np.testing.assert_allclose(dropped[:2], [0.5, 0.25], atol=0.015)
    assert dropped[2] == dropped[3] == 0.0  # items seen c times or more always keep their id
    # Outside training nothing is dropped.
    np.testing.assert_array_equal(layer(np.ones((4, 2), np.float32), np.arange(1, 5)).numpy(), np.ones((4, 2)))


def test_without_a_count_every_item_is_dropped_at_the_rate_and_no_weight_is_added():
    layer = layer_with_counts(count=0)
    assert layer.target_counts is None
    assert [w.name.split("/")[-1] for w in layer.weights if "counts" in w.name] == []
    assert layer.id_drop_probability(np.arange(5)) == RATE


def test_the_count_is_checked_in_the_layer_and_the_config():
    with pytest.raises(ValueError, match="id_dropout_count must be an integer >= 0"):
        ItemRepresentation(4, 3, 1, 2, id_dropout_count=-1)
    with pytest.raises(OptionError, match="feature_id_dropout_count must be an integer >= 0"):
        SASRecConfig(feature_id_dropout_count=-1)
    with pytest.raises(ValueError, match="target counts must have shape"):
        layer_with_counts().set_features(np.zeros((5, 1), np.int64), np.ones(5), target_counts=[1, 2])
    with pytest.raises(ValueError, match="target counts must be >= 0"):
        layer_with_counts().set_features(np.zeros((5, 1), np.int64), np.ones(5), target_counts=[0, -1, 0, 0, 0])


def feature_data():
    data = build_sequences(generate_interactions(120, 30, mean_length=8, seed=3))
    table = np.arange(data.num_items + 1)[:, None] % 5 + 1
    table[0] = 0
    return data, table


def test_with_count_0_a_feature_model_computes_what_it_computed_before_the_option():
    # Pinned from the code before feature_id_dropout_count (commit 952843e): same losses and scores.
    data, table = feature_data()
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, epochs=2, batch_size=32, seed=5,
                          feature_fusion="sum")
    assert config.feature_id_dropout_count == 0 and config.feature_id_dropout == 0.5
    model = training.build_model(config, data.num_items, num_attributes=5, max_item_attributes=2)
    model.set_item_features(table, np.ones(data.num_items + 1, bool))
    history = training.fit(model, leave_one_out(data), eval_every=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [1.3043092489242554, 1.3012733459472656], rtol=1e-6)
    query = model.query_embeddings(np.array([[0, 0, 1, 2, 3, 4, 5, 6]]))
    scores = np.asarray(query @ np.asarray(model.item_embeddings()).T)[0]
    np.testing.assert_allclose(scores[:4], [0.0, 0.09456932544708252, -0.13073097169399261, 0.053183335810899734],
                               rtol=1e-5, atol=1e-7)


def test_save_and_load_keep_the_counts_and_the_probabilities(tmp_path):
    data, table = feature_data()
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, feature_fusion="gate",
                          feature_id_dropout_count=4)
    model = training.build_model(config, data.num_items, num_attributes=5, max_item_attributes=2)
    counts = np.arange(data.num_items + 1) % 7
    model.set_item_features(table, counts > 0, target_counts=counts)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    layer = loaded.item_representation
    assert layer.get_config()["id_dropout_count"] == 4
    np.testing.assert_array_equal(layer.target_counts.numpy(), counts)
    ids = np.arange(data.num_items + 1)
    np.testing.assert_allclose(layer.id_drop_probability(ids).numpy(), 0.5 * np.maximum(0, 1 - counts / 4))


def test_a_cold_start_run_gives_the_layer_the_training_splits_counts_without_the_held_out_items():
    from sasrec_tf.data.cold_start import hold_out_items
    from sasrec_tf.data.item_features import ItemFeatures
    from sasrec_tf.evaluation import training_item_counts
    from sasrec_tf.experiment import TrainOptions, train_and_evaluate

    data = build_sequences(generate_interactions(num_users=60, num_items=30, mean_length=6, seed=1))
    features = ItemFeatures({item: (f"a{i % 6}",) for i, item in enumerate(data.vocab.ids)}, source="hand-built")
    result = train_and_evaluate(
        data, SASRecConfig(epochs=1, max_len=8, hidden_units=8, feature_fusion="sum", feature_id_dropout_count=3),
        options=TrainOptions(eval_every=1, eval_negatives=10, cold_items=0.1, cold_seed=2), item_features=features,
        stages=("valid",))
    held_out, cold = hold_out_items(leave_one_out(data), 0.1, 2)
    counts = result.model.item_representation.target_counts.numpy()
    np.testing.assert_array_equal(counts, training_item_counts(held_out.train, data.num_items))
    assert (counts[cold.items] == 0).all() and counts[1:].sum() > 0


def test_items_added_without_training_keep_the_models_counts_and_count_0():
    from sasrec_tf import SASRec
    from sasrec_tf.artifacts import TrainedModel
    from sasrec_tf.data.item_features import ItemFeatures
    from sasrec_tf.data.vocab import ItemVocabulary
    from sasrec_tf.warmstart import add_cold_items

    config = SASRecConfig(max_len=4, hidden_units=8, num_blocks=1, feature_fusion="sum", feature_id_dropout_count=3)
    model = SASRec(config, 5, num_attributes=2, max_item_attributes=1).build_weights()
    model.set_item_features(np.array([[0], [1], [2], [1], [2], [1]]), np.ones(6, bool), target_counts=[0, 1, 2, 3, 4, 5])
    trained = TrainedModel(model=model, vocab=ItemVocabulary(list("abcde")), attribute_names=("x", "y"))
    grown, added = add_cold_items(trained, ItemFeatures({"f": ("y",)}, source="new items"))
    assert added.added == 1
    layer = grown.model.item_representation
    assert layer.id_dropout_count == 3
    np.testing.assert_array_equal(layer.target_counts.numpy(), [0, 1, 2, 3, 4, 5, 0])
