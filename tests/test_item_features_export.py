"""A model with item features: model directory round trip, every export signature equal to the model
offline, cold items added to a trained model without training, warm start from a feature model."""

import numpy as np
import pytest
import tensorflow as tf
from test_export import check_top_k, pad, run_signature, sample_histories

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel, load_trained, save_trained
from sasrec_tf.data.item_features import ItemFeatures
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.export import SIGNATURES, UNKNOWN_SCORE, export_saved_model
from sasrec_tf.layout import ATTRIBUTES_FILE, ITEM_ATTRIBUTES_FILE
from sasrec_tf.testing.models import TRAINED_MAX_LEN
from sasrec_tf.warmstart import add_cold_items, warm_start

NUM_ITEMS, NUM_ATTRIBUTES, COLD = 150, 20, 10
K = 5


def feature_trained(fusion="gate", seed=0, num_items=NUM_ITEMS) -> TrainedModel:
    """A small feature model (random weights) whose last COLD items were never trained on."""
    keras.utils.set_random_seed(seed)
    config = SASRecConfig(max_len=TRAINED_MAX_LEN, hidden_units=16, num_blocks=2, num_heads=2, dropout_rate=0.0,
                          feature_fusion=fusion)
    model = SASRec(config, num_items, num_attributes=NUM_ATTRIBUTES, max_item_attributes=4).build_weights()
    rng = np.random.default_rng(seed)
    table = rng.integers(0, NUM_ATTRIBUTES + 1, size=(num_items + 1, 3))
    table[0] = 0
    trained_items = np.ones(num_items + 1, bool)
    trained_items[-COLD:] = False
    model.set_item_features(table, trained_items)
    counts = np.concatenate([[0], rng.permutation(num_items) * 3 + 1])
    names = tuple(f"attr={a}" for a in range(1, NUM_ATTRIBUTES + 1))
    return TrainedModel(model=model, vocab=ItemVocabulary([f"sku-{i}" for i in range(num_items)]),
                        item_counts=counts, attribute_names=names)


@pytest.fixture(scope="module")
def trained():
    return feature_trained()


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    save_trained(path, trained.model, trained.vocab, item_counts=trained.item_counts,
                 attribute_names=trained.attribute_names)
    return path


@pytest.fixture(scope="module")
def loaded(model_dir, tmp_path_factory):
    return tf.saved_model.load(str(export_saved_model(model_dir, tmp_path_factory.mktemp("exports"), "m", k=K)))


def test_the_model_directory_keeps_the_attribute_vocabulary_and_table(trained, model_dir):
    assert (model_dir / ATTRIBUTES_FILE).read_text(encoding="utf-8").splitlines() == list(trained.attribute_names)
    saved = np.load(model_dir / ITEM_ATTRIBUTES_FILE)
    assert saved["table"].shape == (NUM_ITEMS + 1, 4) and saved["trained"][-COLD:].sum() == 0
    back = load_trained(model_dir)
    assert back.attribute_names == trained.attribute_names
    np.testing.assert_array_equal(back.model.item_embeddings().numpy(), trained.model.item_embeddings().numpy())
    with pytest.raises(ValueError, match="attribute names"):
        save_trained(model_dir / "other", trained.model, trained.vocab)


def test_every_signature_serves_what_the_feature_model_computes_offline(loaded, trained):
    assert set(SIGNATURES) <= set(loaded.signatures)
    histories = sample_histories(trained) + [["sku-149", "sku-141"]]  # cold items in a history
    out = run_signature(loaded, "serving_default", history=pad(histories))
    check_top_k(trained, histories, out["item_ids"], out["scores"], k=K)
    out = run_signature(loaded, "recommend_including_history", history=pad(histories))
    check_top_k(trained, histories, out["item_ids"], out["scores"], k=K, exclude_history=False)
    embed = run_signature(loaded, "embed", history=pad([["sku-3", "sku-145"]]))["embedding"]
    query = trained.model.query_embeddings(np.array([trained.vocab.encode(["sku-3", "sku-145"])])).numpy()
    np.testing.assert_allclose(embed, query, rtol=1e-5, atol=1e-6)
    matrix = trained.model.item_embeddings().numpy()
    vectors = run_signature(loaded, "item_embeddings", item_ids=np.array(["sku-0", "sku-149", "nope"], object))
    np.testing.assert_allclose(vectors["embeddings"][:2], matrix[[1, 150]], rtol=1e-6)
    assert vectors["known"].tolist() == [True, True, False]
    everything = {k: v.numpy() for k, v in loaded.all_item_embeddings().items()}
    np.testing.assert_allclose(everything["embeddings"], matrix[1:], rtol=1e-6)
    scores = run_signature(loaded, "score", history=pad([["sku-3", "sku-145"]]),
                           candidates=np.array([["sku-149", "sku-0", "nope"]], object))["scores"]
    np.testing.assert_allclose(scores[0, :2], query[0] @ matrix[[150, 1]].T, rtol=1e-4, atol=1e-5)
    assert scores[0, 2] == UNKNOWN_SCORE


def test_new_items_join_a_trained_model_from_their_attributes_and_leave_every_known_vector_as_it_was(trained,
                                                                                                    tmp_path):
    features = ItemFeatures({"sku-0": ("attr=1",), "new-a": ("attr=3", "attr=5", "never-seen"), "new-b": ()},
                            source="new.json")
    grown, added = add_cold_items(trained, features)
    assert (added.added, added.already_known, added.unknown_attributes, added.without_known_attributes) == (2, 1, 1, 1)
    assert grown.vocab.ids == trained.vocab.ids + ["new-a", "new-b"]
    assert grown.item_counts[-2:].tolist() == [0, 0]
    before, after = trained.model.item_embeddings().numpy(), grown.model.item_embeddings().numpy()
    np.testing.assert_allclose(after[: NUM_ITEMS + 1], before, rtol=1e-6, atol=1e-7)
    rep = grown.model.item_representation  # gate fusion without an id part: (1 - g) * mean of attributes
    pooled = rep.attribute_embedding(np.array([3, 5])).numpy().mean(axis=0)
    gate = rep.gate(np.concatenate([np.zeros(16, "float32"), pooled])[None]).numpy()[0]
    np.testing.assert_allclose(after[NUM_ITEMS + 1], (1 - gate) * pooled, rtol=1e-5, atol=1e-6)
    history = np.array([trained.vocab.encode(["sku-4", "sku-9"])])
    np.testing.assert_allclose(grown.model.query_embeddings(history).numpy(),
                               trained.model.query_embeddings(history).numpy(), rtol=1e-6, atol=1e-7)
    # Served through the normal export path, equal to the grown model offline.
    path = export_saved_model(grown, tmp_path, "m", k=K, notes={"cold_items": added.to_dict()})
    served = tf.saved_model.load(str(path))
    histories = [["sku-4", "new-a"], ["new-a"], ["sku-1", "sku-2", "sku-3"]]
    out = run_signature(served, "serving_default", history=pad(histories))
    check_top_k(grown, histories, out["item_ids"], out["scores"], k=K)
    with pytest.raises(ValueError, match="already in the model's vocabulary"):
        add_cold_items(trained, ItemFeatures({"sku-1": ("attr=1",)}, source="x"))


def test_add_items_refuses_a_model_without_item_features():
    keras.utils.set_random_seed(0)
    plain = SASRec(SASRecConfig(max_len=4, hidden_units=8, num_blocks=1), 5).build_weights()
    model = TrainedModel(model=plain, vocab=ItemVocabulary(list("abcde")))
    with pytest.raises(ValueError, match="trained with item features"):
        add_cold_items(model, ItemFeatures({"f": ("x",)}, source="x"))


def test_a_warm_start_keeps_attribute_rows_by_token_and_starts_untrained_items_from_their_features(trained):
    vocab = ItemVocabulary(trained.vocab.ids + ["fresh"])
    names = trained.attribute_names + ("attr=new",)
    keras.utils.set_random_seed(1)
    child = SASRec(trained.model.config, len(vocab), num_attributes=len(names), max_item_attributes=4).build_weights()
    summary = warm_start(child, trained, vocab, attribute_names=names)
    assert summary.new_items == 1
    old_attr = trained.model.item_representation.attribute_embedding.embeddings.numpy()
    new_attr = child.item_representation.attribute_embedding.embeddings.numpy()
    np.testing.assert_array_equal(new_attr[: NUM_ATTRIBUTES + 1], old_attr)
    ids = child.item_embedding.embeddings.numpy()
    np.testing.assert_array_equal(ids[-COLD - 1:], 0)  # the parent's cold items and the new one
    np.testing.assert_array_equal(ids[1:NUM_ITEMS - COLD + 1],
                                  trained.model.item_embedding.embeddings.numpy()[1:NUM_ITEMS - COLD + 1])
    with pytest.raises(ValueError, match="keep the parent's attributes first"):
        warm_start(child, trained, vocab, attribute_names=names[::-1])
