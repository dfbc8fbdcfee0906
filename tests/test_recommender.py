"""The in-memory recommend API: equal to the export's serving_default and to `sasrec-tf recommend`
for the same histories; unknown ids, empty histories (visible as known == 0), short catalogues."""

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import Recommender
from sasrec_tf.artifacts import save_trained
from sasrec_tf.data.sequences import build_sequences
from sasrec_tf.export import export_saved_model
from sasrec_tf.ranking import UNKNOWN_SCORE
from sasrec_tf.recommend import recommend_to_file
from sasrec_tf.testing.models import make_trained

K = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommender")
    trained = make_trained(seed=3)
    model_dir = save_trained(root / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    version = export_saved_model(model_dir, root / "export", "sasrec", k=K)
    rng = np.random.default_rng(0)
    ids = trained.vocab.ids
    histories = [list(rng.choice(ids, size=int(n))) for n in rng.integers(1, 25, size=30)]
    histories[3] = histories[3] + ["never-seen", ""]  # unknown ids and padding are dropped
    histories[5] = ["never-seen"]  # nothing known: the popularity list, flagged by known == 0
    return trained, model_dir, version, histories


def test_memory_directory_and_export_give_the_same_recommendations(setup):
    trained, model_dir, version, histories = setup
    in_memory = Recommender(trained.model, trained.vocab, trained.item_counts).recommend(histories, k=K)
    from_dir = Recommender.load(model_dir).recommend(histories, k=K)
    served = Recommender.load(version).recommend(histories)
    for other in (from_dir, served):
        np.testing.assert_array_equal(in_memory.item_ids, other.item_ids)
        np.testing.assert_allclose(in_memory.scores, other.scores, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(in_memory.known, other.known)
    assert in_memory.known[5] == 0 and in_memory.known[3] == len(histories[3]) - 2
    popular = trained.vocab.decode(np.argsort(-trained.item_counts[1:], kind="stable")[:K] + 1)
    assert in_memory.item_ids[5].tolist() == list(popular)
    for row, history in enumerate(histories):
        assert not set(in_memory.item_ids[row]) & set(history)  # the history is excluded


def test_equal_to_the_batch_recommend_file(setup, tmp_path):
    trained, model_dir, _, histories = setup
    log = pd.DataFrame([(f"u{row}", item, t) for row, h in enumerate(histories) for t, item in enumerate(h) if item
                        and item != "never-seen"], columns=["user", "item", "timestamp"])
    out = recommend_to_file(model_dir, build_sequences(log), tmp_path / "recs.csv", k=K)
    written = pd.read_csv(out.path, dtype={"item_id": str})
    users = pd.unique(log["user"])
    top = Recommender.load(model_dir).recommend([log.loc[log.user == u, "item"].tolist() for u in users], k=K)
    for row, user in enumerate(users):
        assert written.loc[written.user_id == user, "item_id"].tolist() == top.item_ids[row].tolist()


def test_including_history_and_a_short_catalogue(setup):
    trained, _, version, _ = setup
    recommender = Recommender(trained.model, trained.vocab, trained.item_counts)
    everything = [list(trained.vocab.ids[:-2])]  # all but two items in the history
    top = recommender.recommend(everything, k=K)
    assert top.scores[0, 0] >= top.scores[0, 1]
    assert set(top.item_ids[0, :2]) == set(trained.vocab.ids[-2:])
    assert top.item_ids[0, 2:].tolist() == [""] * (K - 2)
    assert (top.scores[0, 2:] == np.float32(UNKNOWN_SCORE)).all()
    assert len(top.to_frame()) == 2
    including = recommender.recommend(everything, k=K, exclude_history=False)
    served = Recommender.load(version).recommend(everything, exclude_history=False)
    np.testing.assert_array_equal(including.item_ids, served.item_ids)
    assert "" not in including.item_ids[0].tolist()


def test_bad_input_is_said_at_once(setup):
    trained, _, version, _ = setup
    recommender = Recommender(trained.model, trained.vocab)
    with pytest.raises(TypeError, match="not one string"):
        recommender.recommend("sku-1")
    with pytest.raises(TypeError, match=r"histories\[0\] is a string"):
        recommender.recommend(["sku-1"])
    with pytest.raises(TypeError, match="non-string id 3"):
        recommender.recommend([[3]])
    with pytest.raises(ValueError, match="k must be"):
        recommender.recommend([["sku-1"]], k=0)
    with pytest.raises(ValueError, match="exported with"):
        Recommender.load(version).recommend([["sku-1"]], k=K + 1)
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        Recommender.load(version.parent)
    assert len(recommender.recommend([])) == 0


def test_a_served_history_the_model_does_not_know_is_visible_to_the_client(setup):
    from sasrec_tf.serving.client import PredictionClient
    from sasrec_tf.serving.server import LocalModelServer

    trained, _, version, histories = setup
    with LocalModelServer(version.parent.parent, port=0, poll_seconds=0) as server:
        with PredictionClient(server.address, "sasrec", timeout=30) as client:
            top = client.recommend([histories[0], ["never-seen"], []])
    ids, scores = top  # still unpacks as before
    assert top.known_items.tolist() == [len(histories[0]), 0, 0]
    assert ids.shape == scores.shape == (3, K)
