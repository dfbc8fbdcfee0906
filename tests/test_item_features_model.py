"""SASRec with item features: fused item vectors in the input and the prediction layer, cold items
from features alone, the transformer's invariants, save/load; without features, today's numbers."""

import numpy as np
import pytest

from sasrec_tf import training
from sasrec_tf._compat import keras
from sasrec_tf.config import SASRecConfig
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.model import SASRec

NUM_ITEMS = 12
FUSIONS = ["sum", "concat", "gate"]


def feature_model(fusion, seed=0, **config):
    keras.utils.set_random_seed(seed)
    config = SASRecConfig(**{"max_len": 6, "hidden_units": 8, "num_blocks": 2, "dropout_rate": 0.0,
                             "feature_fusion": fusion, **config})
    model = SASRec(config, NUM_ITEMS, num_attributes=5, max_item_attributes=3).build_weights()
    table = np.zeros((NUM_ITEMS + 1, 3), np.int64)
    table[1:, 0] = np.arange(NUM_ITEMS) % 5 + 1
    table[1:6, 1] = 3
    trained = np.ones(NUM_ITEMS + 1, bool)
    trained[-2:] = False  # items 11 and 12 never occurred in training: cold
    model.set_item_features(table, trained)
    return model


def test_without_features_training_computes_exactly_what_it_computed_before_features_existed():
    # Pinned from the code before item features (commit 4ee9d9f): same weights, draws, losses and scores.
    data = build_sequences(generate_interactions(120, 40, mean_length=8, seed=3))
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, epochs=2, batch_size=32, seed=5)
    assert config.feature_fusion == "none"
    model = training.build_model(config, data.num_items)
    assert not model.uses_item_features and not any("item_representation" in w.name for w in model.weights)
    history = training.fit(model, leave_one_out(data), eval_every=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [1.3048797845840454, 1.3004205226898193], rtol=1e-6)
    query = model.query_embeddings(np.array([[0, 0, 1, 2, 3, 4, 5, 6]]))
    scores = np.asarray(query @ np.asarray(model.item_embeddings()).T)[0]
    np.testing.assert_allclose(scores[:4], [-0.042993199080228806, 0.04811692610383034, 0.1414826661348343,
                                            -0.027462761849164963], rtol=1e-5, atol=1e-7)


def test_a_fusion_without_features_is_refused():
    with pytest.raises(ValueError, match="needs item features"):
        SASRec(SASRecConfig(feature_fusion="sum"), NUM_ITEMS)
    with pytest.raises(ValueError, match="must be one of"):
        SASRecConfig(feature_fusion="add")


@pytest.mark.parametrize("fusion", FUSIONS)
def test_input_and_prediction_layer_use_the_same_fused_vectors(fusion):
    model = feature_model(fusion)
    matrix = model.item_embeddings().numpy()
    ids = np.arange(1, NUM_ITEMS + 1)
    np.testing.assert_allclose(model._output_embedding(ids).numpy(), matrix[1:], rtol=1e-5, atol=1e-6)
    id_rows = model.item_embedding.embeddings.numpy()
    assert not np.allclose(matrix[1:], id_rows[1:], atol=1e-3)  # the attributes count


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_cold_items_vector_comes_from_its_features_not_its_untrained_id_row(fusion):
    model = feature_model(fusion)
    before = model.item_embeddings().numpy()
    table = model.item_embedding.embeddings
    table.assign(table + np.random.default_rng(0).normal(size=table.shape).astype("float32"))
    after = model.item_embeddings().numpy()
    np.testing.assert_allclose(after[-2:], before[-2:], rtol=1e-6, atol=1e-7)  # cold: unchanged
    assert not np.allclose(after[1:-2], before[1:-2])  # trained: their id rows count
    # Item 11 (cold) is exactly what its attributes (those of item 6) give.
    np.testing.assert_allclose(after[11], model.item_representation(np.zeros((1, 8), "float32"), [6]).numpy()[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_causal_and_padding_invariant_with_features(fusion):
    model = feature_model(fusion)
    history = np.array([[0, 0, 3, 11, 5, 7]])
    out = model(history).numpy()
    changed = history.copy()
    changed[0, -1] = 12
    np.testing.assert_allclose(model(changed).numpy()[0, :-1], out[0, :-1], rtol=1e-5, atol=1e-6)
    shorter = model(history[:, 2:]).numpy()
    np.testing.assert_allclose(shorter[0], out[0, 2:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.query_embeddings(history).numpy()[0], out[0, -1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_save_and_load_carry_the_attribute_table_and_the_cold_mask(fusion, tmp_path):
    model = feature_model(fusion)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    history = np.array([[0, 1, 2, 11, 12, 4]])
    np.testing.assert_array_equal(loaded(history).numpy(), model(history).numpy())
    np.testing.assert_array_equal(loaded.item_embeddings().numpy(), model.item_embeddings().numpy())
    np.testing.assert_array_equal(loaded.item_representation.id_mask.numpy()[-3:], [1, 0, 0])


def test_a_feature_model_trains_and_its_attribute_embedding_learns():
    data = build_sequences(generate_interactions(80, NUM_ITEMS, mean_length=6, seed=1))
    config = SASRecConfig(max_len=6, hidden_units=8, num_blocks=1, epochs=2, batch_size=32, feature_fusion="gate")
    model = training.build_model(config, data.num_items, num_attributes=5, max_item_attributes=3)
    model.set_item_features(np.arange(1, NUM_ITEMS + 2)[:, None] % 5 + 1, np.ones(NUM_ITEMS + 1, bool))
    before = model.item_representation.attribute_embedding.embeddings.numpy()
    history = training.fit(model, leave_one_out(data), eval_every=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(model.item_representation.attribute_embedding.embeddings.numpy(), before)


def test_building_a_feature_model_fuses_a_few_items_not_the_catalogue(monkeypatch):
    # Fusing every item gathers [N + 1, attributes, d]: 4 GiB at 1M items, d 64, 6 attributes,
    # which build() once spent on every load of a feature model. It fuses the history and one item.
    from sasrec_tf.layers.item_representation import ItemRepresentation

    fused = []
    original = ItemRepresentation.pooled_attributes

    def pooled_attributes(self, item_ids, cold=False):
        fused.append(int(np.prod(item_ids.shape)))
        return original(self, item_ids, cold)

    monkeypatch.setattr(ItemRepresentation, "pooled_attributes", pooled_attributes)
    for fusion in FUSIONS:
        fused.clear()
        SASRec(SASRecConfig(max_len=6, hidden_units=8, feature_fusion=fusion), NUM_ITEMS, num_attributes=5,
               max_item_attributes=3).build_weights()
        assert fused and max(fused) <= 6, (fusion, fused)
