"""The cold tower (``feature_cold_tower``): items without their id part (cold, or id-dropped in a
training lookup) are the mean of their rows in a second attribute table, warm items keep the whole
fusion; the tower is saved, exported, warm-started by attribute token, and learns in training."""

import numpy as np
import pytest
import tensorflow as tf
from test_export import check_top_k, pad, run_signature

from sasrec_tf import SASRec, SASRecConfig, losses, training
from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel
from sasrec_tf.data.item_features import ItemFeatures
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.experiment.inputs import align_features
from sasrec_tf.export import export_saved_model
from sasrec_tf.layers import ItemRepresentation
from sasrec_tf.options import OptionError
from sasrec_tf.testing.models import TRAINED_MAX_LEN
from sasrec_tf.warmstart import add_cold_items, warm_start

NUM_ITEMS, NUM_ATTRIBUTES, COLD = 40, 9, 5
TABLE = np.array([[0, 0, 0]] + [[1 + i % NUM_ATTRIBUTES, 1 + (3 * i + 1) % NUM_ATTRIBUTES, 0 if i % 4 else 2]
                                for i in range(NUM_ITEMS)], np.int64)


def tower_trained(fusion="sum", seed=0, **config) -> TrainedModel:
    """A small feature model with the cold tower (random weights); its last COLD items are cold."""
    keras.utils.set_random_seed(seed)
    config = SASRecConfig(**{"max_len": TRAINED_MAX_LEN, "hidden_units": 8, "num_blocks": 1, "dropout_rate": 0.0,
                             "feature_fusion": fusion, "feature_cold_tower": True, **config})
    model = SASRec(config, NUM_ITEMS, num_attributes=NUM_ATTRIBUTES, max_item_attributes=3).build_weights()
    trained_items = np.ones(NUM_ITEMS + 1, bool)
    trained_items[-COLD:] = False
    model.set_item_features(TABLE, trained_items)
    names = tuple(f"attr={a}" for a in range(1, NUM_ATTRIBUTES + 1))
    return TrainedModel(model=model, vocab=ItemVocabulary([f"sku-{i}" for i in range(NUM_ITEMS)]),
                        item_counts=np.arange(NUM_ITEMS + 1), attribute_names=names)


def mean_rows(table, item):
    return table[[a for a in TABLE[item] if a > 0]].mean(axis=0)


@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_a_cold_item_is_the_mean_of_its_tower_rows_and_a_warm_item_the_whole_fusion(fusion):
    trained = tower_trained(fusion)
    model, rep = trained.model, trained.model.item_representation
    matrix = model.item_embeddings().numpy()
    ids, tower = model.item_embedding.embeddings.numpy(), rep.cold_attribute_embeddings.numpy()
    attributes = rep.attribute_embedding.embeddings.numpy()
    assert not np.allclose(tower, attributes)  # two tables, initialised apart
    for item in range(NUM_ITEMS - COLD + 1, NUM_ITEMS + 1):  # cold: the tower alone, whatever the fusion
        np.testing.assert_allclose(matrix[item], mean_rows(tower, item), rtol=1e-5, atol=1e-6)
    warm = 3
    both = np.concatenate([ids[warm], mean_rows(attributes, warm)])[None]
    expected = {"sum": lambda: ids[warm] + mean_rows(attributes, warm),
                "concat": lambda: rep.projection(both).numpy()[0],
                "gate": lambda: (lambda g: g * ids[warm] + (1 - g) * mean_rows(attributes, warm))(
                    rep.gate(both).numpy()[0])}[fusion]()
    np.testing.assert_allclose(matrix[warm], expected, rtol=1e-5, atol=1e-6)
    # The input side reads the same vectors.
    np.testing.assert_allclose(model._output_embedding(np.arange(1, NUM_ITEMS + 1)).numpy(), matrix[1:],
                               rtol=1e-5, atol=1e-6)


def test_an_id_dropped_training_lookup_is_the_items_tower_vector():
    trained = tower_trained(feature_id_dropout=0.6)
    rep = trained.model.item_representation
    warm_items = np.arange(1, NUM_ITEMS - COLD + 1)
    inference = rep(trained.model.item_embedding(warm_items), warm_items).numpy()
    tower = np.stack([mean_rows(rep.cold_attribute_embeddings.numpy(), i) for i in warm_items])
    tf.random.set_seed(3)
    lookups = rep(trained.model.item_embedding(warm_items), warm_items, training=True).numpy()
    is_tower = np.all(np.isclose(lookups, tower, atol=1e-6), axis=1)
    is_warm = np.all(np.isclose(lookups, inference, atol=1e-6), axis=1)
    assert np.all(is_tower ^ is_warm)  # each lookup is one of the two, never a blend
    assert 0 < is_tower.sum() < len(warm_items)


def test_without_the_tower_no_weight_is_added():
    keras.utils.set_random_seed(0)
    plain = SASRec(SASRecConfig(max_len=6, hidden_units=8, feature_fusion="sum"), NUM_ITEMS,
                   num_attributes=NUM_ATTRIBUTES, max_item_attributes=3).build_weights()
    assert not any("cold_attribute" in weight.name for weight in plain.weights)
    assert plain.item_representation.cold_attribute_embeddings is None
    names = {weight.name for weight in tower_trained().model.weights}
    assert "item_representation/cold_attribute_embeddings:0" in names


def test_the_tower_without_item_features_is_refused():
    with pytest.raises(ValueError, match="feature_cold_tower=true needs item features"):
        SASRec(SASRecConfig(feature_cold_tower=True), NUM_ITEMS)
    data = build_sequences(generate_interactions(10, 8, mean_length=4, seed=0))
    with pytest.raises(OptionError, match="feature_cold_tower needs item features"):
        align_features(None, data, SASRecConfig(feature_cold_tower=True), None)
    with pytest.raises(TypeError, match="cold_tower must be a bool"):
        ItemRepresentation(5, 3, 2, 4, cold_tower=1)


def test_save_and_load_keep_the_tower(tmp_path):
    model = tower_trained("gate").model
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.item_representation.cold_tower
    np.testing.assert_array_equal(loaded.item_embeddings().numpy(), model.item_embeddings().numpy())


def test_new_items_added_to_an_export_are_served_from_the_tower(tmp_path):
    trained = tower_trained()
    features = ItemFeatures({"new-a": ("attr=2", "attr=7"), "new-b": ("attr=4",)}, source="new.json")
    grown, added = add_cold_items(trained, features)
    assert added.added == 2
    tower = grown.model.item_representation.cold_attribute_embeddings.numpy()
    after = grown.model.item_embeddings().numpy()
    np.testing.assert_allclose(after[NUM_ITEMS + 1], tower[[2, 7]].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after[: NUM_ITEMS + 1], trained.model.item_embeddings().numpy(), rtol=1e-6, atol=1e-7)
    served = tf.saved_model.load(str(export_saved_model(grown, tmp_path, "m", k=5)))
    histories = [["sku-4", "new-a"], ["new-b"], ["sku-1", "sku-2", "sku-3"]]
    out = run_signature(served, "serving_default", history=pad(histories))
    check_top_k(grown, histories, out["item_ids"], out["scores"], k=5)


def test_a_warm_start_copies_the_tower_rows_by_attribute_token():
    trained = tower_trained()
    vocab = ItemVocabulary(trained.vocab.ids + ["fresh"])
    names = trained.attribute_names + ("attr=new",)
    keras.utils.set_random_seed(1)
    child = SASRec(trained.model.config, len(vocab), num_attributes=len(names), max_item_attributes=3).build_weights()
    initial = child.item_representation.cold_attribute_embeddings.numpy()
    warm_start(child, trained, vocab, attribute_names=names)
    old = trained.model.item_representation.cold_attribute_embeddings.numpy()
    new = child.item_representation.cold_attribute_embeddings.numpy()
    np.testing.assert_array_equal(new[: NUM_ATTRIBUTES + 1], old)
    np.testing.assert_array_equal(new[-1], initial[-1])  # the new token keeps its initial row


def test_the_tower_learns_in_training_from_id_dropped_lookups():
    data = build_sequences(generate_interactions(100, NUM_ITEMS, mean_length=6, seed=1))
    config = SASRecConfig(max_len=6, hidden_units=8, num_blocks=1, epochs=2, batch_size=32, seed=2,
                          feature_fusion="sum", feature_cold_tower=True, feature_id_dropout=0.3)
    model = training.build_model(config, data.num_items, num_attributes=NUM_ATTRIBUTES, max_item_attributes=3)
    model.set_item_features(TABLE[: data.num_items + 1], np.ones(data.num_items + 1, bool))
    before = model.item_representation.cold_attribute_embeddings.numpy()
    history = training.fit(model, leave_one_out(data), eval_every=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.abs(model.item_representation.cold_attribute_embeddings.numpy() - before).max() > 1e-3
    # Without id dropout no training lookup reads the tower: only cold items would.
    model = training.build_model(config.replace(feature_id_dropout=0.0), data.num_items,
                                 num_attributes=NUM_ATTRIBUTES, max_item_attributes=3)
    model.set_item_features(TABLE[: data.num_items + 1], np.ones(data.num_items + 1, bool))
    before = model.item_representation.cold_attribute_embeddings.numpy()
    training.fit(model, leave_one_out(data), eval_every=2, verbose=0)
    np.testing.assert_array_equal(model.item_representation.cold_attribute_embeddings.numpy(), before)


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def test_the_cold_loss_adds_the_objective_scored_on_tower_vectors():
    # The paper's BCE with one negative, computed by hand on the tower's vectors (mean of the
    # items' tower rows): -log σ(h·c_pos) - log(1 - σ(h·c_neg)), masked mean over real positions.
    plain = tower_trained(feature_id_dropout=0.0)  # every training lookup as at inference
    weighted = tower_trained(feature_id_dropout=0.0, feature_cold_loss_weight=0.5)
    for a, b in zip(plain.model.weights, weighted.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    item_ids = np.array([[0, 0, 3, 7, 2, 9, 11, 4, 1, 6], [5, 8, 2, 12, 13, 3, 30, 31, 7, 2]], np.int32)
    positives = np.concatenate([item_ids[:, 1:], [[36], [38]]], axis=1)  # two cold targets (36, 38)
    positives[0, :2] = 0
    negatives = ((positives * 7 + 3) % NUM_ITEMS + 1)[..., None]
    data = {"item_ids": tf.constant(item_ids), "positives": tf.constant(positives),
            "negatives": tf.constant(negatives)}
    base, _ = plain.model._forward_loss(data, training=True)
    total, _ = weighted.model._forward_loss(data, training=True)
    hidden = plain.model(tf.constant(item_ids), training=False).numpy()
    tower = plain.model.item_representation.cold_attribute_embeddings.numpy()
    vectors = np.stack([np.zeros(8)] + [mean_rows(tower, i) for i in range(1, NUM_ITEMS + 1)])
    per_position = (_softplus(-np.sum(hidden * vectors[positives], -1))
                    + _softplus(np.sum(hidden * vectors[negatives[..., 0]], -1)))
    expected = per_position[positives > 0].mean()
    np.testing.assert_allclose((total.numpy() - base.numpy()) / 0.5, expected, rtol=1e-4)


def test_the_served_cold_loss_scores_the_targets_trained_and_tower_vectors_against_both_kinds():
    # feature_cold_negatives="served": the cold term is the served in-batch loss over the real
    # targets, with the model's trained vectors and the tower's (log-q from the item counts).
    config = dict(feature_id_dropout=0.0, loss="inbatch_softmax", logq_correction=True)
    plain = tower_trained(**config)
    weighted = tower_trained(**config, feature_cold_loss_weight=0.5, feature_cold_negatives="served",
                             feature_cold_warm_weight=2.0)
    item_ids = np.array([[0, 0, 3, 7, 2, 9, 11, 4, 1, 6], [5, 8, 2, 12, 13, 3, 30, 31, 7, 2]], np.int32)
    positives = np.concatenate([item_ids[:, 1:], [[36], [2]]], axis=1)
    positives[0, :2] = 0
    data = {"item_ids": tf.constant(item_ids), "positives": tf.constant(positives),
            "negatives": tf.constant(np.ones_like(positives)[..., None])}
    for model in (plain.model, weighted.model):  # the same frequencies in both (not counted in the check)
        model.set_item_counts(np.arange(NUM_ITEMS + 1) + 1.0)
    base, _ = plain.model._forward_loss(data, training=False)
    total, _ = weighted.model._forward_loss(data, training=False)
    assert float(base) == float(total)  # an evaluation batch has no cold term
    base, _ = plain.model._forward_loss(data, training=True)
    plain.model.set_item_counts(np.arange(NUM_ITEMS + 1) + 1.0)  # undo the training step's counting
    weighted.model.set_item_counts(np.arange(NUM_ITEMS + 1) + 1.0)
    total, _ = weighted.model._forward_loss(data, training=True)
    mask = positives > 0
    hidden = plain.model(tf.constant(item_ids), training=False).numpy()[mask]
    targets = positives[mask]
    tower = plain.model.item_representation.cold_attribute_embeddings.numpy()
    # The frequencies the cold term read: the main objective's counting of this batch included.
    probabilities = np.exp(weighted.model.item_frequency.log_sampling_probabilities().numpy())[targets]
    expected = losses.served_inbatch_softmax_crossentropy(
        tf.constant(hidden), tf.constant(plain.model.item_embeddings().numpy()[targets]),
        tf.constant(np.stack([mean_rows(tower, i) for i in targets]), tf.float32), tf.constant(targets),
        tf.constant(probabilities, tf.float32), warm_weight=2.0)
    np.testing.assert_allclose((total.numpy() - base.numpy()) / 0.5, expected.numpy(), rtol=1e-4)


@pytest.mark.parametrize("negatives", ["tower", "served"])
def test_the_cold_loss_trains_the_tower_from_every_target_and_counts_them_once(negatives):
    data = build_sequences(generate_interactions(100, NUM_ITEMS, mean_length=6, seed=1))
    config = SASRecConfig(max_len=6, hidden_units=8, num_blocks=1, epochs=1, batch_size=32, seed=2,
                          feature_fusion="sum", feature_cold_tower=True, feature_id_dropout=0.0,
                          loss="inbatch_softmax", logq_correction=True)
    moved, counted = {}, {}
    for weight in (0.0, 1.0):
        cold = dict(feature_cold_loss_weight=weight, feature_cold_negatives=negatives if weight else "tower")
        model = training.build_model(config.replace(**cold), data.num_items,
                                     num_attributes=NUM_ATTRIBUTES, max_item_attributes=3)
        model.set_item_features(TABLE[: data.num_items + 1], np.ones(data.num_items + 1, bool))
        before = model.item_representation.cold_attribute_embeddings.numpy()
        counts = model.item_frequency.counts.numpy().sum()
        history = training.fit(model, leave_one_out(data), eval_every=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        moved[weight] = np.abs(model.item_representation.cold_attribute_embeddings.numpy() - before).max()
        counted[weight] = model.item_frequency.counts.numpy().sum() - counts
    # Without id dropout only the cold loss reaches the tower; the epoch's targets are the same
    # (same pipeline seed) and the log-q counts hold each of them once, not once per objective.
    assert moved[0.0] == 0 and moved[1.0] > 1e-3
    assert counted[0.0] > 0 and counted[1.0] == counted[0.0]


@pytest.mark.parametrize("negatives", ["tower", "served"])
def test_the_cold_loss_trains_the_tower_and_leaves_the_rest_to_the_main_objective(negatives):
    # Same weights, with and without the cold loss: every gradient but the tower's is the same
    # (the queries are held fixed in it); the tower's gains the cold loss's part (the cold
    # targets 36 and 38 reach it through the main objective too).
    item_ids = np.array([[0, 0, 3, 7, 2, 9, 11, 4, 1, 6], [5, 8, 2, 12, 13, 3, 30, 31, 7, 2]], np.int32)
    positives = np.concatenate([item_ids[:, 1:], [[36], [38]]], axis=1)
    data = {"item_ids": tf.constant(item_ids), "positives": tf.constant(positives),
            "negatives": tf.constant(((positives * 7 + 3) % NUM_ITEMS + 1)[..., None])}
    grads = {}
    for weight in (0.0, 1.0):
        model = tower_trained(feature_id_dropout=0.0, feature_cold_loss_weight=weight, loss="inbatch_softmax",
                              feature_cold_negatives=negatives if weight else "tower").model
        with tf.GradientTape() as tape:
            loss, _ = model._forward_loss(data, training=True)
        grads[weight] = {w.name: (None if g is None else tf.convert_to_tensor(g).numpy())
                         for w, g in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights))}
    tower = "item_representation/cold_attribute_embeddings:0"
    assert np.abs(grads[1.0][tower] - grads[0.0][tower]).max() > 1e-4
    for name, plain in grads[0.0].items():
        if name != tower:
            np.testing.assert_allclose(grads[1.0][name], plain, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("bad, message", [(dict(feature_cold_loss_weight=-0.1), "finite number >= 0"),
                                          (dict(feature_cold_loss_weight=float("nan")), "finite number >= 0"),
                                          (dict(feature_cold_loss_weight=0.5), "set feature_cold_tower=true"),
                                          (dict(feature_cold_negatives="served", loss="inbatch_softmax"),
                                           "set feature_cold_loss_weight > 0"),
                                          (dict(feature_cold_negatives="trained"), "must be one of"),
                                          (dict(feature_cold_warm_weight=2.0), "weighs a term of"),
                                          (dict(feature_cold_tower=True, feature_cold_loss_weight=1.0,
                                                feature_cold_negatives="served", loss="inbatch_softmax",
                                                feature_cold_warm_weight=-1.0), "finite number >= 0"),
                                          (dict(feature_cold_tower=True, feature_cold_loss_weight=1.0,
                                                feature_cold_negatives="served", loss="bce"),
                                           "implemented for loss='inbatch_softmax', not loss='bce'")])
def test_a_cold_loss_without_the_tower_or_below_zero_is_refused(bad, message):
    with pytest.raises(OptionError, match=message):
        SASRecConfig(feature_fusion="sum", **bad)
    assert SASRecConfig().feature_cold_loss_weight == 0.0
