"""Per-user chronological sequences, the leave-one-out split, and load_dataset end to end."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.sequences import (
    LeaveOneOutSplit,
    SequenceData,
    build_sequences,
    leave_one_out,
    load_dataset,
)
from sasrec_tf.data.vocab import ItemVocabulary


def _log(rows):
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def _as_lists(arrays):
    return [a.tolist() for a in arrays]


def _decoded(data: SequenceData):
    return {u: data.vocab.decode(s).tolist() for u, s in zip(data.user_ids, data.sequences)}


def test_sequences_are_sorted_by_time_per_user():
    df = _log([("u", "c", 30), ("v", "x", 5), ("u", "a", 10), ("u", "b", 20)])
    data = build_sequences(df)
    assert _decoded(data) == {"u": ["a", "b", "c"], "v": ["x"]}


def test_users_come_in_order_of_first_appearance():
    df = _log([("z", "a", 3), ("a", "b", 1), ("m", "c", 2), ("a", "c", 0)])
    assert build_sequences(df).user_ids.tolist() == ["z", "a", "m"]


def test_tied_timestamps_keep_input_row_order():
    df = _log([("u", "d", 5), ("u", "c", 1), ("u", "a", 1), ("u", "b", 1), ("u", "e", 0)])
    assert _decoded(build_sequences(df))["u"] == ["e", "c", "a", "b", "d"]


def test_tie_order_is_stable_for_large_logs():
    # Quicksort-based sorts reorder ties once arrays get large; the sort must stay stable.
    n = 50_000
    items = [f"i{k}" for k in range(n)]
    df = pd.DataFrame({"user": ["u"] * n, "item": items, "timestamp": np.zeros(n, dtype=np.int64)})
    data = build_sequences(df)
    assert data.vocab.decode(data.sequences[0]).tolist() == items


def test_sequences_hold_int64_dense_ids_of_the_vocabulary():
    df = _log([("u", "a", 1), ("u", "b", 2), ("v", "b", 1)])
    data = build_sequences(df)
    assert data.vocab.ids == ["b", "a"]  # b is more frequent
    assert all(s.dtype == np.int64 for s in data.sequences)
    assert _as_lists(data.sequences) == [[2, 1], [1]]
    assert data.num_users == 2 and data.num_items == 2
    assert data.lengths().tolist() == [2, 1]


def test_sequences_are_read_only():
    data = build_sequences(_log([("u", "a", 1), ("u", "b", 2)]))
    with pytest.raises(ValueError, match="read-only"):
        data.sequences[0][0] = 5


def test_given_vocabulary_is_used_as_is():
    vocab = ItemVocabulary(["z", "b", "a"])
    data = build_sequences(_log([("u", "a", 1), ("u", "b", 2)]), vocab=vocab)
    assert data.vocab is vocab and _as_lists(data.sequences) == [[3, 2]]


def test_items_missing_from_a_given_vocabulary_are_a_data_error_with_count_and_examples():
    df = _log([("u", "a", 1), ("u", "q", 2), ("v", "q", 3), ("v", "r", 4)])
    with pytest.raises(DataError, match=r"3 interactions \(2 distinct items\).*'q', 'r'"):
        build_sequences(df, vocab=ItemVocabulary(["a"]))


def test_build_sequences_normalizes_raw_dataframes():
    df = pd.DataFrame({"user": [1, 1], "item": [10, 20], "timestamp": [2.0, 1.0]})
    data = build_sequences(df)
    assert data.user_ids.tolist() == ["1"] and _decoded(data) == {"1": ["20", "10"]}


def test_build_sequences_is_fast_enough_for_a_million_interactions():
    rng = np.random.default_rng(0)
    n = 1_000_000
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 50_000, n).astype(str),
            "item": rng.integers(0, 20_000, n).astype(str),
            "timestamp": rng.integers(0, 1_000, n),
        }
    )
    start = time.perf_counter()
    data = build_sequences(df)
    assert time.perf_counter() - start < 10  # ~1 s here; generous for slow CI machines
    assert data.lengths().sum() == n


# -------------------------------------------------------------------------------- leave one out


def _data(sequences, n_items=9):
    return SequenceData(
        user_ids=np.array([f"u{i}" for i in range(len(sequences))], dtype=object),
        sequences=[np.array(s, dtype=np.int64) for s in sequences],
        vocab=ItemVocabulary([f"i{k}" for k in range(1, n_items + 1)]),
    )


def test_leave_one_out_matches_the_paper_on_a_hand_made_example():
    data = _data([[1, 2, 3, 4, 5], [6, 7], [7, 8, 9], [2]])
    split = leave_one_out(data)
    assert isinstance(split, LeaveOneOutSplit)
    assert _as_lists(split.train) == [[1, 2, 3], [6, 7], [7], [2]]
    assert _as_lists(split.valid_inputs) == [[1, 2, 3], [7]]
    assert split.valid_targets.tolist() == [4, 8]
    assert split.valid_users.tolist() == [0, 2]
    assert _as_lists(split.test_inputs) == [[1, 2, 3, 4], [7, 8]]
    assert split.test_targets.tolist() == [5, 9]
    assert split.test_users.tolist() == [0, 2]
    assert split.num_short_users == 2 and split.num_items == 9
    for array in (split.valid_targets, split.valid_users, split.test_targets, split.test_users):
        assert array.dtype == np.int64


def test_short_users_train_on_everything_and_are_counted_with_a_warning(caplog):
    data = _data([[1, 2, 3, 4], [5], [6, 7], [1, 2, 3]])
    with caplog.at_level(logging.WARNING, logger="sasrec_tf.data.sequences"):
        split = leave_one_out(data, min_length=4)
    assert split.num_short_users == 3
    assert _as_lists(split.train) == [[1, 2], [5], [6, 7], [1, 2, 3]]
    assert split.test_users.tolist() == [0]
    assert "3 of 4 users have fewer than 4 interactions" in caplog.text


def test_no_warning_when_every_user_is_evaluated(caplog):
    with caplog.at_level(logging.WARNING, logger="sasrec_tf.data.sequences"):
        split = leave_one_out(_data([[1, 2, 3]]))
    assert split.num_short_users == 0 and caplog.text == ""


def test_min_length_below_three_is_rejected():
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out(_data([[1, 2, 3]]), min_length=2)


def test_split_does_not_modify_the_sequences():
    data = _data([[1, 2, 3, 4]])
    leave_one_out(data)
    assert data.sequences[0].tolist() == [1, 2, 3, 4]


# -------------------------------------------------------------------------------- load_dataset


def test_load_dataset_reads_filters_and_builds_end_to_end(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "user,item,timestamp,rating\n"
        "u1,a,3,5\nu1,b,1,4\nu1,c,2,5\nu1,a,4,5\n"  # u1: b c a (the later 'a' is a repeat)
        "u2,a,1,5\nu2,b,2,5\nu2,c,3,4\nu2,d,4,1\n"  # u2's 'd' is rated 1: below min_rating
        "u3,z,1,5\n",  # u3 and z have one interaction each: removed by the 2-core
        encoding="utf-8",
    )
    data = load_dataset(
        path, min_rating=4, duplicates="first", min_user_interactions=2, min_item_interactions=2
    )
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert _decoded(data) == {"u1": ["b", "c", "a"], "u2": ["a", "b", "c"]}
    assert sorted(data.vocab.ids) == ["a", "b", "c"]
    split = leave_one_out(data)
    assert split.num_short_users == 0
    assert split.test_targets.tolist() == data.vocab.encode(["a", "c"]).tolist()
    assert split.valid_targets.tolist() == data.vocab.encode(["c", "b"]).tolist()


def test_load_dataset_passes_reader_options_through(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("1 5 6 7\n2 6 5\n", encoding="utf-8")
    data = load_dataset(path, "s3rec")
    assert _decoded(data) == {"1": ["5", "6", "7"], "2": ["6", "5"]}

    path = tmp_path / "log.tsv"
    path.write_text("uid\tsku\tts\nx\ty\t1\n", encoding="utf-8")
    data = load_dataset(path, "tsv", user_col="uid", item_col="sku", time_col="ts")
    assert _decoded(data) == {"x": ["y"]}


def test_load_dataset_reports_read_filter_and_sequences_in_order(tmp_path):
    from sasrec_tf.data.sequences import LOAD_STEPS, load_dataset

    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"u{u},i{j},{j}\n" for u in range(4) for j in range(5))
                    + "u9,i1,1\n")
    seen = []
    data = load_dataset(path, "csv", min_user_interactions=2, progress=lambda *step: seen.append(step))
    assert [(done, total) for _, done, total in seen] == [(1, 3), (2, 3), (3, 3)] and len(LOAD_STEPS) == 3
    assert seen[0][0] == "read 21 interactions" and "20 interactions kept of 21" in seen[1][0]
    assert seen[2][0] == f"{data.num_users} user sequences, {data.num_items} items"
