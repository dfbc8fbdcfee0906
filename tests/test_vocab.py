"""ItemVocabulary: raw id ↔ dense id, 0 = padding, saved as a file TensorFlow reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.vocab import ItemVocabulary


def test_ids_get_dense_ids_from_one_in_order():
    vocab = ItemVocabulary(["b", "a", "c"])
    assert vocab.encode(["b", "a", "c"]).tolist() == [1, 2, 3]
    assert vocab.ids == ["b", "a", "c"]


def test_len_counts_real_items_and_size_adds_the_padding_row():
    vocab = ItemVocabulary(["x", "y"])
    assert len(vocab) == 2 and vocab.size == 3


def test_from_interactions_orders_by_count_then_first_appearance():
    df = pd.DataFrame({"item": ["c", "b", "a", "b", "a", "d", "c", "a"]})
    # counts: a=3, c=2, b=2 (c seen before b), d=1
    assert ItemVocabulary.from_interactions(df).ids == ["a", "c", "b", "d"]


def test_from_interactions_is_deterministic_for_the_same_log():
    df = pd.DataFrame({"item": [str(i % 7) for i in range(100)]})
    assert ItemVocabulary.from_interactions(df) == ItemVocabulary.from_interactions(df)


def test_encode_keeps_the_input_shape_and_returns_int64():
    vocab = ItemVocabulary(["a", "b"])
    dense = vocab.encode(np.array([["a", "b"], ["b", "a"]]))
    assert dense.dtype == np.int64 and dense.tolist() == [[1, 2], [2, 1]]


def test_encode_accepts_pandas_string_series():
    vocab = ItemVocabulary(["a", "b"])
    assert vocab.encode(pd.Series(["b", "a"], dtype=str)).tolist() == [2, 1]


def test_encode_unknown_error_raises_with_count_and_examples():
    vocab = ItemVocabulary(["a"])
    message = r"3 item ids are not in the vocabulary \(2 distinct\)"
    with pytest.raises(KeyError, match=message) as err:
        vocab.encode(["a", "zz", "yy", "zz"])
    assert "'zz'" in str(err.value) and "unknown='zero'" in str(err.value)


def test_encode_unknown_zero_maps_unknown_ids_to_padding():
    vocab = ItemVocabulary(["a", "b"])
    assert vocab.encode(["b", "nope", "a"], unknown="zero").tolist() == [2, 0, 1]


def test_encode_padding_token_is_zero_even_when_unknown_ids_are_errors():
    vocab = ItemVocabulary(["a"])
    assert vocab.encode(["", "a", ""]).tolist() == [0, 1, 0]


def test_encode_rejects_numeric_ids_with_a_hint():
    with pytest.raises(TypeError, match=r"astype\(str\)"):
        ItemVocabulary(["1", "2"]).encode(np.array([1, 2]))


def test_decode_maps_padding_to_empty_string():
    vocab = ItemVocabulary(["a", "b"])
    decoded = vocab.decode(np.array([[2, 0], [1, 0]]))
    assert decoded.dtype == object and decoded.tolist() == [["b", ""], ["a", ""]]


def test_decode_inverts_encode():
    vocab = ItemVocabulary(["x", "007", "7"])
    raw = np.array(["7", "", "007", "x"], dtype=object)
    assert vocab.decode(vocab.encode(raw)).tolist() == raw.tolist()


def test_decode_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="out of range 0..2"):
        ItemVocabulary(["a", "b"]).decode([3])
    with pytest.raises(IndexError):
        ItemVocabulary(["a", "b"]).decode([-1])


def test_contains_knows_items_but_not_padding():
    vocab = ItemVocabulary(["a"])
    assert "a" in vocab and "b" not in vocab and "" not in vocab and 1 not in vocab


def test_equality_is_same_ids_in_same_order():
    assert ItemVocabulary(["a", "b"]) == ItemVocabulary(["a", "b"])
    assert ItemVocabulary(["a", "b"]) != ItemVocabulary(["b", "a"])
    assert ItemVocabulary(["a"]) != ["a"]


@pytest.mark.parametrize(
    "ids, match",
    [
        (["a", "b", "a"], "unique"),
        (["a", ""], "padding token"),
        (["a\nb"], "newline"),
        (["a\rb"], "carriage return"),
        (["a\tb"], "tab"),
        (["a", 7], "not a string"),
    ],
)
def test_invalid_ids_are_rejected_at_construction(ids, match):
    with pytest.raises(DataError, match=match):
        ItemVocabulary(ids)


def test_save_load_round_trip_keeps_unicode_and_numeric_looking_ids(tmp_path):
    ids = ["007", "7", "1e3", "nan", "NULL", "  spaced  ", "日本語", "émoji 🎧", "-0", "a,b"]
    vocab = ItemVocabulary(ids)
    path = tmp_path / "vocab.txt"
    vocab.save(path)
    loaded = ItemVocabulary.load(path)
    assert loaded == vocab and loaded.ids == ids


def test_saved_file_has_one_id_per_line_with_line_number_as_dense_id(tmp_path):
    path = tmp_path / "vocab.txt"
    ItemVocabulary(["b", "a"]).save(path)
    assert path.read_bytes() == b"b\na\n"


def test_save_replaces_an_existing_file_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "vocab.txt"
    ItemVocabulary(["old"]).save(path)
    ItemVocabulary(["new", "ids"]).save(path)
    assert ItemVocabulary.load(path).ids == ["new", "ids"]
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]


def test_load_tolerates_crlf_line_endings(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"a\r\nb\r\n")
    assert ItemVocabulary.load(path).ids == ["a", "b"]


def test_load_blank_line_is_a_data_error_naming_the_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\n\nb\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        ItemVocabulary.load(path)
    assert err.value.line == 2 and f"{path}:2:" in str(err.value)


def test_load_repeated_id_is_a_data_error_naming_the_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(DataError, match="repeats line 1") as err:
        ItemVocabulary.load(path)
    assert err.value.line == 3


def test_load_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ItemVocabulary.load(tmp_path / "missing.txt")


def test_saved_file_feeds_string_lookup_with_the_same_dense_ids(tmp_path):
    keras = pytest.importorskip("tf_keras")
    vocab = ItemVocabulary(["b", "007", "日本"])
    path = tmp_path / "vocab.txt"
    vocab.save(path)
    lookup = keras.layers.StringLookup(vocabulary=str(path), num_oov_indices=1, mask_token=None)
    raw = ["日本", "b", "unknown", "007"]
    assert lookup(raw).numpy().tolist() == vocab.encode(raw, unknown="zero").tolist()


def test_saved_vocabulary_is_readable_by_other_users(tmp_path):
    import stat

    from sasrec_tf.data.vocab import ItemVocabulary

    path = tmp_path / "vocab.txt"
    ItemVocabulary(["a", "b"]).save(path)
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044
