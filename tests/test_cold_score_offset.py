"""The cold-score offset (``feature_cold_score_offset``, ``export --cold-score-offset``): every item
without a trained id row scores exactly the offset lower, in the offline ranking and in every
served signature alike; warm items' scores do not move; bad offsets are refused before anything
is written."""

import json

import numpy as np
import pytest
import tensorflow as tf
from test_export import pad, reference_scores, run_signature, sample_histories
from test_item_features_export import COLD, K, NUM_ITEMS, feature_trained

from sasrec_tf import SASRecConfig
from sasrec_tf.artifacts import TrainedModel, save_trained
from sasrec_tf.cli import main
from sasrec_tf.evaluation import evaluate_full
from sasrec_tf.export import UNKNOWN_SCORE, export_saved_model
from sasrec_tf.options import OptionError
from sasrec_tf.ranking import Ranker
from sasrec_tf.testing.models import make_trained

OFFSET = 0.7
COLD_IDS = np.arange(NUM_ITEMS + 1 - COLD, NUM_ITEMS + 1)  # dense ids of feature_trained's cold items


def with_offset(trained: TrainedModel, offset: float) -> TrainedModel:
    """The same model (the same weights) ranked with ``offset``."""
    trained.model.config.feature_cold_score_offset = offset  # a ranking-time setting, read where items are ranked
    return trained


@pytest.fixture(scope="module")
def trained():
    return feature_trained()


@pytest.fixture(scope="module")
def exports(trained, tmp_path_factory):
    """Version 1 without an offset, version 2 with --cold-score-offset from the model directory
    (its tables written block by block), version 3 from the in-memory model."""
    model_dir = tmp_path_factory.mktemp("model")
    save_trained(model_dir, trained.model, trained.vocab, item_counts=trained.item_counts,
                 attribute_names=trained.attribute_names)
    base = tmp_path_factory.mktemp("exports")
    assert main(["export", "--model", str(model_dir), "--export-base", str(base), "--name", "m", "--k", str(K)]) == 0
    assert main(["export", "--model", str(model_dir), "--export-base", str(base), "--name", "m", "--k", str(K),
                 "--cold-score-offset", str(OFFSET)]) == 0
    export_saved_model(trained, base, "m", k=K, cold_score_offset=OFFSET)
    assert trained.model.config.feature_cold_score_offset == 0.0  # the caller's model is left as it was
    return base / "m"


def biased_reference(trained, histories, offset):
    """The documented contract by hand: ``q · M_iᵀ``, minus the offset for cold items (popularity
    rows for histories with no known item take no offset)."""
    scores = reference_scores(trained, histories)
    personal = np.array([any(item in trained.vocab for item in history) for history in histories])
    scores[np.ix_(personal, COLD_IDS)] -= offset
    return scores


def test_every_signature_serves_cold_items_the_offset_lower_and_warm_items_as_before(trained, exports):
    histories = sample_histories(trained) + [["sku-149", "sku-141"], ["nope"]]
    plain = tf.saved_model.load(str(exports / "1"))
    for version in ("2", "3"):
        served = tf.saved_model.load(str(exports / version))
        info = json.loads((exports / version / "assets.extra" / "sasrec_export.json").read_text())
        assert info["cold_score_offset"] == OFFSET and info["config"]["feature_cold_score_offset"] == OFFSET
        candidates = np.array([["sku-149", "sku-140", "sku-0", "nope"]] * 2, object)
        history = pad([["sku-3", "sku-145"], []])
        before = run_signature(plain, "score", history=history, candidates=candidates)["scores"]
        after = run_signature(served, "score", history=history, candidates=candidates)["scores"]
        np.testing.assert_allclose(after[0, :2], before[0, :2] - OFFSET, rtol=1e-5, atol=1e-5)  # cold
        np.testing.assert_array_equal(after[0, 2:], before[0, 2:])  # warm, and unknown (UNKNOWN_SCORE)
        np.testing.assert_array_equal(after[1], before[1])  # no known item: the popularity list
        assert after[0, 3] == UNKNOWN_SCORE
        # The top k: the reference's scores, cold items the offset lower.
        out = run_signature(served, "serving_default", history=pad(histories))
        expected = biased_reference(trained, histories, OFFSET)
        for row, seen in enumerate(histories):
            expected[row, trained.vocab.encode([i for i in seen if i in trained.vocab])] = -np.inf
        top = -np.sort(-expected, axis=1)[:, :K]
        np.testing.assert_allclose(out["scores"], top, rtol=1e-4, atol=1e-5)
        # The item vectors are the features' as before; the offset comes beside them as score_bias.
        ids = np.array(["sku-0", "sku-149", "nope"], object)
        vectors = run_signature(served, "item_embeddings", item_ids=ids)
        np.testing.assert_array_equal(vectors["embeddings"], run_signature(plain, "item_embeddings",
                                                                           item_ids=ids)["embeddings"])
        np.testing.assert_allclose(vectors["score_bias"], [0.0, -OFFSET, 0.0], rtol=1e-6)
        everything = served.all_item_embeddings()["score_bias"].numpy()
        np.testing.assert_allclose(everything, np.where(np.arange(1, NUM_ITEMS + 1) > NUM_ITEMS - COLD, -OFFSET, 0))
        # embed · embeddings + score_bias is the score, as documented for external indexes.
        query = run_signature(served, "embed", history=history[:1])["embedding"]
        np.testing.assert_allclose(query @ vectors["embeddings"][:2].T + vectors["score_bias"][:2],
                                   run_signature(served, "score", history=history[:1],
                                                 candidates=ids[None, :2])["scores"], rtol=1e-4, atol=1e-5)
    plain_bias = plain.all_item_embeddings()["score_bias"].numpy()
    assert plain_bias.shape == (NUM_ITEMS,) and not plain_bias.any()


def test_the_offline_ranking_applies_the_same_offset(trained):
    model = with_offset(trained, OFFSET).model
    try:
        histories = sample_histories(trained, count=6)
        items = np.zeros((len(histories), model.max_len), np.int64)
        for row, history in enumerate(histories):
            known = trained.vocab.encode(history)[-model.max_len:]
            items[row, model.max_len - len(known):] = known
        ranker = Ranker(model)
        scores = ranker.scores(tf.constant(items)).numpy()
        raw = model.query_embeddings(tf.constant(items)).numpy() @ model.item_embeddings().numpy().T
        raw[:, COLD_IDS] -= OFFSET
        np.testing.assert_allclose(scores, raw, rtol=1e-5, atol=1e-5)
        # The sampled protocol scores its candidates the same way.
        negatives = np.tile([[COLD_IDS[0], 1, 2]], (len(histories), 1))
        targets = np.full(len(histories), COLD_IDS[1])
        ranks = ranker.sampled_ranks(tf.constant(items), tf.constant(targets), tf.constant(negatives)).numpy()
        candidate_scores = np.take_along_axis(raw, np.concatenate([targets[:, None], negatives], axis=1), axis=1)
        np.testing.assert_array_equal(ranks, 1 + (candidate_scores[:, 1:] >= candidate_scores[:, :1]).sum(axis=1))
        # Full ranking: a cold target at its offset score among the others.
        full = evaluate_full(model, list(items), targets, exclude_history=False, return_ranks=True)[1]
        expected = 1 + (np.delete(raw, 0, axis=1) > raw[np.arange(len(targets)), targets][:, None]).sum(axis=1)
        np.testing.assert_array_equal(full, expected)
    finally:
        with_offset(trained, 0.0)


def test_bad_offsets_are_refused_before_anything_is_written(trained, tmp_path, capsys):
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(OptionError, match="feature_cold_score_offset must be a finite number >= 0"):
            SASRecConfig(feature_fusion="sum", feature_cold_score_offset=bad)
        with pytest.raises(ValueError, match="cold_score_offset must be a finite number >= 0"):
            export_saved_model(trained, tmp_path, "m", k=K, cold_score_offset=bad)
    with pytest.raises(OptionError, match="needs item features"):
        SASRecConfig(feature_cold_score_offset=1.0)
    with pytest.raises(ValueError, match="uses no item features"):
        export_saved_model(make_trained(), tmp_path, "ids", k=K, cold_score_offset=1.0)
    assert not (tmp_path / "m").exists() and not any((tmp_path / "ids").glob("[0-9]*"))
    assert main(["export", "--model", str(tmp_path), "--export-base", str(tmp_path / "e"),
                 "--cold-score-offset", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--cold-score-offset must be a finite number >= 0, got -1.0" in err and err.count("\n") == 1
