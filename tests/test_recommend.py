"""Batch recommendations (`sasrec-tf recommend`): pinned to the export's serving signatures for the
same histories; the users filter, csv and parquet, history inclusion, chunked writing, the CLI."""

import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf._compat import keras
from sasrec_tf.artifacts import load_trained, save_trained
from sasrec_tf.cli import main
from sasrec_tf.data.pipeline import training_dataset
from sasrec_tf.data.sequences import build_sequences, leave_one_out
from sasrec_tf.data.synthetic import generate_interactions
from sasrec_tf.evaluation import training_item_counts
from sasrec_tf.export import export_saved_model
from sasrec_tf.recommend import COLUMNS, recommend_to_file

K = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A SASRec trained one epoch on a generated log, saved and exported; and a later log with
    items the model does not know (mixed into histories, and one user with nothing else)."""
    root = tmp_path_factory.mktemp("recommend")
    log = generate_interactions(num_users=60, num_items=40, mean_length=8, seed=7)
    data = build_sequences(log)
    split = leave_one_out(data)
    keras.utils.set_random_seed(0)
    config = SASRecConfig(max_len=6, hidden_units=16, num_blocks=1, num_heads=1, dropout_rate=0.0)
    model = SASRec(config, num_items=data.num_items).build_weights()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(training_dataset(split.train, data.num_items, config.max_len, 32, seed=0), epochs=1, verbose=0)
    model_dir = save_trained(root / "model", model, data.vocab,
                             item_counts=training_item_counts(split.train, data.num_items))
    serving = tf.saved_model.load(str(export_saved_model(model_dir, root / "export", "sasrec", k=K)))
    unknown = pd.DataFrame({"user": ["u1", "u2", "u-new", "u-new"], "item": ["new-1", "new-2", "new-1", "new-3"],
                            "timestamp": [1_700_000_000, 1_500_000_000, 5, 6]})
    later = pd.concat([log, unknown], ignore_index=True)
    csv = root / "later.csv"
    later.to_csv(csv, index=False)
    return load_trained(model_dir), serving, later, csv, model_dir


def raw_histories(log: pd.DataFrame) -> dict[str, list[str]]:
    """Every user's raw items, oldest first (stable), unknown items included: what a client sends."""
    data = build_sequences(log)
    return {user: list(data.vocab.decode(seq)) for user, seq in zip(data.user_ids, data.sequences)}


def served(serving, signature: str, histories: list[list[str]]):
    width = max(len(h) for h in histories)
    batch = tf.constant([h + [""] * (width - len(h)) for h in histories])  # "" is ignored anywhere
    result = serving.signatures[signature](history=batch)
    return result["item_ids"].numpy().astype(str), result["scores"].numpy()


def assert_pinned_to_signature(frame: pd.DataFrame, serving, signature: str, histories: dict[str, list[str]]):
    users = list(dict.fromkeys(frame["user_id"]))
    ids, scores = served(serving, signature, [histories[u] for u in users])
    grouped = frame.groupby("user_id", sort=False)
    for row, user in enumerate(users):
        mine = grouped.get_group(user)
        assert mine["rank"].tolist() == list(range(1, K + 1))
        assert mine["item_id"].tolist() == ids[row].tolist(), user
        np.testing.assert_allclose(mine["score"].to_numpy(), scores[row], rtol=1e-5, atol=1e-6)


def test_parquet_equals_serving_default_for_every_user_with_a_known_item(setup, tmp_path):
    trained, serving, later, _, _ = setup
    summary = recommend_to_file(trained, later, tmp_path / "recs.parquet", k=K)
    frame = pq.read_table(tmp_path / "recs.parquet").to_pandas()

    histories = raw_histories(later)
    assert tuple(frame.columns) == COLUMNS
    assert list(dict.fromkeys(frame["user_id"])) == [u for u in build_sequences(later).user_ids if u != "u-new"]
    assert (summary.users, summary.rows) == (60, 60 * K)
    assert (summary.users_without_history, summary.examples_without_history) == (1, ("u-new",))
    assert "u-new" in summary.without_history_line()
    assert_pinned_to_signature(frame, serving, "serving_default", histories)
    assert not any(item in histories[user] for user, item in zip(frame["user_id"], frame["item_id"]))


def test_include_history_equals_recommend_including_history(setup, tmp_path):
    trained, serving, later, _, _ = setup
    recommend_to_file(trained, later, tmp_path / "recs.parquet", k=K, include_history=True)
    frame = pq.read_table(tmp_path / "recs.parquet").to_pandas()
    histories = raw_histories(later)
    assert_pinned_to_signature(frame, serving, "recommend_including_history", histories)
    assert any(item in histories[user] for user, item in zip(frame["user_id"], frame["item_id"]))


def test_chunks_smaller_than_the_user_count_write_the_same_csv_and_parquet(setup, tmp_path):
    trained, _, later, _, _ = setup
    for suffix in ("csv", "parquet"):
        recommend_to_file(trained, later, tmp_path / f"one.{suffix}", k=K, batch_size=3)
        recommend_to_file(trained, later, tmp_path / f"many.{suffix}", k=K, chunk_users=7, batch_size=3)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()
    one, many = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "many.parquet")
    assert one.equals(many) and pq.ParquetFile(tmp_path / "many.parquet").num_row_groups > 1
    from_csv = pd.read_csv(tmp_path / "one.csv", dtype={"user_id": str, "item_id": str})
    pd.testing.assert_frame_equal(from_csv, one.to_pandas(), check_dtype=False)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_users_filter_keeps_the_listed_order_and_reports_unknown_users(setup, tmp_path):
    trained, serving, later, _, _ = setup
    summary = recommend_to_file(trained, later, tmp_path / "recs.csv", k=K, users=["u3", "nobody", "u1", "u3", "u-new"])
    frame = pd.read_csv(tmp_path / "recs.csv", dtype={"user_id": str, "item_id": str})
    assert list(dict.fromkeys(frame["user_id"])) == ["u3", "u1"]
    assert (summary.users_without_history, summary.examples_without_history) == (2, ("nobody", "u-new"))
    assert_pinned_to_signature(frame, serving, "serving_default", raw_histories(later))


def test_bad_arguments_are_refused_before_anything_is_written(setup, tmp_path):
    trained, _, later, _, _ = setup
    with pytest.raises(ValueError, match="k must be"):
        recommend_to_file(trained, later, tmp_path / "recs.csv", k=41)
    with pytest.raises(ValueError, match="output format"):
        recommend_to_file(trained, later, tmp_path / "recs.json")
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_the_file_and_one_summary_line_without_a_progress_bar_off_a_terminal(setup, tmp_path, capsys):
    _, _, later, csv, model_dir = setup
    users = tmp_path / "users.txt"
    users.write_text("u5\n\nnobody\n u2 \n")
    out = tmp_path / "recs.parquet"
    code = main(["recommend", "--model", str(model_dir), "--data", str(csv), "--format", "csv", "--out", str(out),
                 "--k", "3", "--users", str(users)])
    captured = capsys.readouterr()
    assert code == 0
    frame = pq.read_table(out).to_pandas()
    assert frame["user_id"].tolist() == ["u5"] * 3 + ["u2"] * 3 and frame["rank"].tolist() == [1, 2, 3] * 2
    assert "wrote 6 recommendations for 2 users" in captured.out
    assert captured.err.count("\n") == 1 and "1 user(s)" in captured.err and "'nobody'" in captured.err
    assert "\r" not in captured.err + captured.out  # off a terminal: lines, no redrawn bar
    assert any(line.startswith("recommending top 3 to ") and "3/3 users" in line for line in captured.out.splitlines())
    assert main(["recommend", "--model", str(model_dir), "--data", str(csv), "--format", "csv",
                 "--out", str(tmp_path / "recs.txt")]) == 2


def test_cli_draws_a_keras_progress_bar_when_stdout_is_a_terminal(setup, tmp_path, capsys, monkeypatch):
    _, _, _, csv, model_dir = setup
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["recommend", "--model", str(model_dir), "--data", str(csv), "--format", "csv",
                 "--out", str(tmp_path / "recs.csv"), "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "\r61/61 [====" in out  # keras.utils.Progbar, redrawn in place, reaching every user
