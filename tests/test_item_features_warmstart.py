"""Warm start from a parent without item features into a feature model: the parent's id rows and
encoder are copied, the attribute embedding and the fusion weights start fresh, and
``sasrec-tf train --warm-start --item-features`` says so in one line."""

import json

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.artifacts import TrainedModel, save_trained
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.warmstart import warm_start

SMALL = dict(max_len=6, hidden_units=8, num_blocks=1)


def id_only_parent(num_items=12, seed=0) -> TrainedModel:
    keras.utils.set_random_seed(seed)
    model = SASRec(SASRecConfig(**SMALL), num_items).build_weights()
    return TrainedModel(model=model, vocab=ItemVocabulary([f"i{i}" for i in range(num_items)]))


def test_the_parents_id_rows_and_encoder_are_copied_and_the_feature_weights_start_fresh():
    parent = id_only_parent()
    vocab = ItemVocabulary(parent.vocab.ids + ["new-a", "new-b"])
    keras.utils.set_random_seed(1)
    child = SASRec(SASRecConfig(**SMALL, feature_fusion="gate"), len(vocab), num_attributes=4,
                   max_item_attributes=2).build_weights()
    features = child.item_representation
    before = {w.name: w.numpy() for w in features.trainable_weights}
    summary = warm_start(child, parent, vocab, attribute_names=("a", "b", "c", "d"))
    ids = child.item_embedding.embeddings.numpy()
    np.testing.assert_array_equal(ids[:13], parent.model.item_embedding.embeddings.numpy())
    np.testing.assert_array_equal(ids[13:], 0)  # new items start from their features alone
    for w in features.trainable_weights:  # attribute embedding, gate kernel and bias: as initialised
        np.testing.assert_array_equal(w.numpy(), before[w.name])
    assert len(before) == 3 and summary.fresh_weights == 3 and summary.to_dict()["fresh_weights"] == 3
    parent_encoder = {w.name: w.numpy() for w in parent.model.encoder.weights}
    for w in child.encoder.weights:
        np.testing.assert_array_equal(w.numpy(), parent_encoder[w.name])
    assert summary.copied_weights == len(parent.model.trainable_weights)
    # An ordinary warm start's record is as it was (no fresh_weights key).
    plain = SASRec(SASRecConfig(**SMALL), len(vocab)).build_weights()
    assert "fresh_weights" not in warm_start(plain, parent, vocab).to_dict()


def test_a_parent_with_features_into_a_model_without_them_is_refused():
    parent = id_only_parent()
    keras.utils.set_random_seed(0)
    featured = SASRec(SASRecConfig(**SMALL, feature_fusion="sum"), 12, num_attributes=3,
                      max_item_attributes=1).build_weights()
    featured_parent = TrainedModel(model=featured, vocab=parent.vocab, attribute_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="the parent uses item features and this model does not"):
        warm_start(SASRec(SASRecConfig(**SMALL), 12).build_weights(), featured_parent, parent.vocab)


def test_train_warm_starts_a_feature_model_from_a_parent_without_features(tmp_path, capsys):
    from sasrec_tf.cli import main
    from sasrec_tf.data.synthetic import generate_interactions

    log = generate_interactions(num_users=60, num_items=30, mean_length=6, seed=2)
    log.to_csv(tmp_path / "log.csv", index=False)
    items = sorted(set(log["item"].astype(str)))
    pd.DataFrame({"item": items, "kind": [f"k{i % 4}" for i in range(len(items))]}).to_csv(
        tmp_path / "features.csv", index=False)
    keras.utils.set_random_seed(0)
    known = items[:20]  # the parent knew 20 of the items, without features
    save_trained(tmp_path / "parent", SASRec(SASRecConfig(**SMALL), len(known)).build_weights(),
                 ItemVocabulary(known))
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "log.csv"), "--format", "csv", "--out", str(tmp_path / "child"),
                 "--warm-start", str(tmp_path / "parent"), "--item-features", str(tmp_path / "features.csv"),
                 "--epochs", "1", "--max-len", "6", "--hidden-units", "8", "--num-blocks", "1",
                 "--eval-every", "1", "--eval-negatives", "10"]) == 0
    out = capsys.readouterr().out
    assert ("warm start: the parent has no item features: its id rows are copied, the attribute embedding and "
            "the fusion weights start fresh") in out
    metrics = json.loads((tmp_path / "child" / "metrics.json").read_text())
    assert metrics["parent"]["fresh_weights"] == 1  # sum fusion: the attribute embedding
    assert metrics["parent"]["new_items"] == len(items) - 20 and metrics["item_features"]["attributes"] == 4
