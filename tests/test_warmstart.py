"""Warm start: stable ids for known items, their learned rows carried over, faster to quality."""

import json

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import SASRecConfig, training
from sasrec_tf.artifacts import TrainedModel
from sasrec_tf.data.ingest import read_interactions
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.evaluation import evaluate_full, training_item_counts
from sasrec_tf.warmstart import extend_vocabulary, warm_start

SMALL = dict(max_len=20, hidden_units=32, num_blocks=2, dropout_rate=0.2, batch_size=128, seed=1)


@pytest.fixture(scope="module")
def days():
    """Two "days" of one log with sequential structure: yesterday is the first 70% of the time
    span without the 30 items that only appear today; today is the whole log."""
    log = read_interactions(generate_interactions(num_users=1200, num_items=300, mean_length=15, seed=3))
    late_items = {f"i{i}" for i in range(270, 300)}
    cutoff = log["timestamp"].quantile(0.7)
    yesterday = log[(log["timestamp"] < cutoff) & ~log["item"].isin(late_items)].reset_index(drop=True)
    return yesterday, log


@pytest.fixture(scope="module")
def parent(days):
    yesterday, _ = days
    data = build_sequences(yesterday)
    model = training.build_model(SASRecConfig(**SMALL, epochs=15), data.num_items)
    training.fit(model, leave_one_out(data), eval_every=100, verbose=0)
    return TrainedModel(model=model, vocab=data.vocab)


def test_the_extended_vocabulary_keeps_every_known_id_and_appends_new_items_most_frequent_first():
    parent = ItemVocabulary(["a", "b", "c"])
    log = pd.DataFrame({"user": ["u"] * 6, "item": ["c", "z", "y", "z", "a", "x"], "timestamp": range(6)})
    vocab = extend_vocabulary(parent, log)
    assert vocab.ids == ["a", "b", "c", "z", "y", "x"]  # "b" is gone from the log but keeps its id
    assert extend_vocabulary(parent, log[log["item"].isin(["a", "c"])]) is parent



def test_reading_a_log_with_a_parents_vocabulary_grows_it_or_drops_the_unknown_items(days, tmp_path):
    from sasrec_tf.data.errors import DataError
    from sasrec_tf.data.sequences import load_dataset
    from sasrec_tf.experiment import DataOptions

    yesterday, today = days
    vocab = build_sequences(yesterday).vocab
    today.to_csv(tmp_path / "today.csv", index=False)
    grown = load_dataset(today, vocab=vocab, unknown_items="append")
    assert grown.vocab == extend_vocabulary(vocab, today)
    assert DataOptions(format="csv").read(str(tmp_path / "today.csv"), vocab, grow=True).vocab == grown.vocab
    dropped = load_dataset(today, vocab=vocab, unknown_items="drop")
    assert dropped.vocab == vocab and sum(map(len, dropped.sequences)) == int(today["item"].isin(vocab.ids).sum())
    with pytest.raises(DataError, match="not in the given vocabulary"):
        load_dataset(today, vocab=vocab)

def test_known_items_start_with_the_parents_rows_and_the_model_scores_them_as_the_parent_did(days, parent):
    _, today = days
    vocab = extend_vocabulary(parent.vocab, today)
    assert len(vocab) > len(parent.vocab)
    child = training.build_model(SASRecConfig(**SMALL, epochs=1), len(vocab))
    fresh = child.item_embedding.embeddings.numpy()
    counts = training_item_counts(build_sequences(today, vocab).sequences, len(vocab))
    summary = warm_start(child, parent, vocab, item_counts=counts, parent_path="runs/yesterday")

    known = len(parent.vocab) + 1  # rows 0..N_old: padding and every known item
    old_table, new_table = parent.model.item_embedding.embeddings.numpy(), child.item_embedding.embeddings.numpy()
    np.testing.assert_array_equal(new_table[:known], old_table)
    np.testing.assert_array_equal(new_table[known:], fresh[known:])  # new items: the initializer's rows
    assert summary.new_items == len(vocab) - len(parent.vocab) == 30
    assert summary.known_items + summary.retired_items == len(parent.vocab)
    assert summary.known_items == np.count_nonzero(counts[1:known])
    # Same encoder, same known rows: a history of known items gets the same query and scores.
    history = np.arange(1, 21, dtype=np.int32)[None, :]
    np.testing.assert_allclose(child.query_embeddings(history), parent.model.query_embeddings(history), atol=1e-6)


def test_a_warm_started_model_reaches_the_cold_models_quality_in_fewer_epochs(days, parent):
    _, today = days
    vocab = extend_vocabulary(parent.vocab, today)
    split = leave_one_out(build_sequences(today, vocab))

    def validation_ndcg(model):
        return evaluate_full(model, split.valid_inputs, split.valid_targets)["ndcg@10"]

    cold = training.build_model(SASRecConfig(**SMALL, epochs=4), len(vocab))
    training.fit(cold, split, eval_every=100, verbose=0)
    warm = training.build_model(SASRecConfig(**SMALL, epochs=1), len(vocab))
    warm_start(warm, parent, vocab)
    training.fit(warm, split, eval_every=100, verbose=0)
    assert validation_ndcg(warm) > validation_ndcg(cold), "one warm epoch beats four cold ones"


def test_warm_start_refuses_what_it_cannot_carry_over(days, parent):
    _, today = days
    vocab = extend_vocabulary(parent.vocab, today)
    wider = training.build_model(SASRecConfig(**{**SMALL, "hidden_units": 16}), len(vocab))
    with pytest.raises(ValueError, match="architecture differs"):
        warm_start(wider, parent, vocab)
    deeper = training.build_model(SASRecConfig(**{**SMALL, "num_blocks": 3}), len(vocab))
    with pytest.raises(ValueError, match="architecture differs"):
        warm_start(deeper, parent, vocab)
    shuffled = ItemVocabulary(list(reversed(vocab.ids)))
    model = training.build_model(SASRecConfig(**SMALL), len(shuffled))
    with pytest.raises(ValueError, match="parent's items first"):
        warm_start(model, parent, shuffled)


def test_sasrec_tf_train_warm_start_keeps_known_ids_and_records_its_parent(days, tmp_path, capsys):
    from sasrec_tf.cli import main

    yesterday, today = days
    yesterday.to_csv(tmp_path / "yesterday.csv", index=False)
    today.to_csv(tmp_path / "today.csv", index=False)
    tiny = ["--format", "csv", "--epochs", "1", "--max-len", "20", "--hidden-units", "16", "--eval-every", "1"]
    assert main(["train", "--data", str(tmp_path / "yesterday.csv"), "--out", str(tmp_path / "day1"), *tiny]) == 0
    assert main(["train", "--data", str(tmp_path / "today.csv"), "--out", str(tmp_path / "day2"), *tiny,
                 "--warm-start", str(tmp_path / "day1")]) == 0
    assert "30 new" in capsys.readouterr().out
    old = ItemVocabulary.load(tmp_path / "day1" / "vocab.txt").ids
    new = ItemVocabulary.load(tmp_path / "day2" / "vocab.txt").ids
    assert new[: len(old)] == old and len(new) == len(old) + 30
    parent = json.loads((tmp_path / "day2" / "metrics.json").read_text())["parent"]
    assert parent["parent"] == str(tmp_path / "day1") and parent["new_items"] == 30
    assert main(["train", "--data", str(tmp_path / "today.csv"), "--out", str(tmp_path / "day3"), *tiny,
                 "--warm-start", str(tmp_path / "nowhere")]) == 2
