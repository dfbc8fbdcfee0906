"""Reading interaction logs (every format, one schema) and filtering them."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest import filter_interactions, read_interactions


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rows(df):
    return list(df[["user", "item", "timestamp"]].itertuples(index=False, name=None))


def _assert_schema(df, rating=False):
    expected = ["user", "item", "timestamp"] + (["rating"] if rating else [])
    assert list(df.columns) == expected
    assert pd.api.types.is_string_dtype(df["user"]) and pd.api.types.is_string_dtype(df["item"])
    assert df["timestamp"].dtype in (np.int64, np.float64)
    assert isinstance(df.index, pd.RangeIndex)


# -------------------------------------------------------------------------------- formats


def test_csv_parses_into_the_common_schema(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp,extra\nu1,i1,10,x\nu2,i2,20,y\n")
    df = read_interactions(path)
    _assert_schema(df)
    assert _rows(df) == [("u1", "i1", 10), ("u2", "i2", 20)]
    assert df["timestamp"].dtype == np.int64


def test_tsv_is_csv_with_tabs(tmp_path):
    path = _write(tmp_path, "log.tsv", "user\titem\ttimestamp\nu1\ti,1\t1.5\n")
    df = read_interactions(path, "tsv")
    assert _rows(df) == [("u1", "i,1", 1.5)]
    assert df["timestamp"].dtype == np.float64


def test_csv_custom_column_names_and_separator(tmp_path):
    path = _write(tmp_path, "log.csv", "uid;sku;ts;stars\na;b;3;4.5\n")
    df = read_interactions(
        path, sep=";", user_col="uid", item_col="sku", time_col="ts", rating_col="stars"
    )
    _assert_schema(df, rating=True)
    assert _rows(df) == [("a", "b", 3)] and df["rating"].tolist() == [4.5]


def test_csv_rating_column_named_rating_is_picked_up(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp,rating\na,b,1,5\n")
    assert read_interactions(path)["rating"].tolist() == [5]


def test_csv_ids_stay_strings_with_leading_zeros(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\n007,0042,1\n7,42,2\n")
    df = read_interactions(path)
    assert df["user"].tolist() == ["007", "7"]
    assert df["item"].tolist() == ["0042", "42"]


def test_csv_ids_that_pandas_would_read_as_missing_stay_ids(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\nNA,null,1\nNone,nan,2\n")
    df = read_interactions(path)
    assert df["user"].tolist() == ["NA", "None"] and df["item"].tolist() == ["null", "nan"]


def test_csv_blank_lines_are_skipped(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\n\nc,d,2\n\n")
    assert _rows(read_interactions(path)) == [("a", "b", 1), ("c", "d", 2)]


def test_csv_iso_dates_become_int64_nanoseconds(tmp_path):
    text = "user,item,timestamp\na,b,2024-01-02\na,c,2024-01-02T00:00:01\n"
    path = _write(tmp_path, "log.csv", text)
    stamps = read_interactions(path)["timestamp"]
    assert stamps.dtype == np.int64
    assert stamps.tolist() == [
        pd.Timestamp("2024-01-02").value, pd.Timestamp("2024-01-02 00:00:01").value
    ]


def test_parquet_parses_and_integer_ids_become_strings(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2], "item": ["007", "x"], "timestamp": [5, 6]}).to_parquet(path)
    df = read_interactions(path, "parquet")
    _assert_schema(df)
    assert _rows(df) == [("1", "007", 5), ("2", "x", 6)]


def test_parquet_datetime_timestamps_become_int64_nanoseconds(tmp_path):
    path = tmp_path / "log.parquet"
    when = pd.to_datetime(["2020-01-01 00:00:00", "2020-01-01 00:00:02"]).as_unit("s")
    pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"], "timestamp": when}).to_parquet(path)
    stamps = read_interactions(path, "parquet")["timestamp"]
    assert stamps.dtype == np.int64
    assert stamps.tolist() == [when[0].value, when[1].value]


def test_dataframe_source_is_normalized_and_not_modified():
    source = pd.DataFrame(
        {"u": [3, 4], "i": [1.0, 2.0], "t": pd.to_datetime(["2021-01-01", "2021-01-02"], utc=True)}
    )
    before = source.copy()
    df = read_interactions(source, user_col="u", item_col="i", time_col="t")
    _assert_schema(df)
    assert df["user"].tolist() == ["3", "4"] and df["item"].tolist() == ["1", "2"]
    assert df["timestamp"].tolist() == [
        pd.Timestamp("2021-01-01").value, pd.Timestamp("2021-01-02").value
    ]
    pd.testing.assert_frame_equal(source, before)


def test_sasrec_format_uses_line_order_as_time(tmp_path):
    path = _write(tmp_path, "data.txt", "1 10\n2 20\n1 11\n\n2 21\n")
    df = read_interactions(path, "sasrec")
    _assert_schema(df)
    assert _rows(df) == [("1", "10", 1), ("2", "20", 2), ("1", "11", 3), ("2", "21", 5)]


def test_s3rec_format_expands_each_line_in_order(tmp_path):
    path = _write(tmp_path, "Beauty.txt", "1 5 6 7\n2 6\n")
    df = read_interactions(path, "s3rec")
    _assert_schema(df)
    assert [(u, i) for u, i, _ in _rows(df)] == [("1", "5"), ("1", "6"), ("1", "7"), ("2", "6")]
    assert df["timestamp"].is_monotonic_increasing


def test_s3rec_user_on_two_lines_keeps_file_order(tmp_path, caplog):
    path = _write(tmp_path, "data.txt", "1 5 6\n2 9\n1 7\n")
    with caplog.at_level(logging.WARNING):
        df = read_interactions(path, "s3rec")
    user_one = df[df["user"] == "1"].sort_values("timestamp", kind="stable")
    assert user_one["item"].tolist() == ["5", "6", "7"]
    assert "more than one line" in caplog.text


def test_movielens_100k_u_data_parses_with_ratings(tmp_path):
    path = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = read_interactions(path, "movielens")
    _assert_schema(df, rating=True)
    assert _rows(df) == [("196", "242", 881250949), ("186", "302", 891717742)]
    assert df["rating"].tolist() == [3, 3]


def test_movielens_1m_ratings_dat_parses_with_ratings(tmp_path):
    path = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\r\n1::661::3::978302109\r\n")
    df = read_interactions(path, "movielens")
    _assert_schema(df, rating=True)
    assert _rows(df) == [("1", "1193", 978300760), ("1", "661", 978302109)]
    assert df["rating"].tolist() == [5, 3]


def test_movielens_dialect_is_detected_from_content_not_name(tmp_path):
    path = _write(tmp_path, "whatever.txt", "1::2::4.5::100\n")
    df = read_interactions(path, "movielens")
    assert _rows(df) == [("1", "2", 100)] and df["rating"].tolist() == [4.5]


def test_movielens_ratings_csv_with_header_parses(tmp_path):
    path = _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    df = read_interactions(path, "movielens")
    assert _rows(df) == [("1", "31", 1260759144)] and df["rating"].tolist() == [2.5]


# -------------------------------------------------------------------------------- ratings


def test_min_rating_keeps_ratings_at_or_above_threshold(tmp_path):
    path = _write(tmp_path, "u.data", "1\ta\t5\t1\n1\tb\t3\t2\n1\tc\t4\t3\n")
    df = read_interactions(path, "movielens", min_rating=4)
    assert df["item"].tolist() == ["a", "c"]
    assert isinstance(df.index, pd.RangeIndex)


def test_min_rating_without_rating_column_is_a_data_error(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\n")
    with pytest.raises(DataError, match="no rating column") as err:
        read_interactions(path, min_rating=4)
    assert str(path) in str(err.value)


def test_min_rating_that_removes_everything_says_so(tmp_path):
    path = _write(tmp_path, "u.data", "1\ta\t2\t1\n1\tb\t3\t2\n")
    with pytest.raises(DataError, match=r"below min_rating=4 \(ratings range from 2 to 3\)"):
        read_interactions(path, "movielens", min_rating=4)


# -------------------------------------------------------------------------------- errors


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="file not found") as err:
        read_interactions(path)
    assert err.value.path == str(path) and str(path) in str(err.value)


def test_unknown_format_is_a_value_error(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\n")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        read_interactions(path, "xml")


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    path = _write(tmp_path, "log.csv", "user,product,timestamp\na,b,1\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    message = str(err.value)
    assert str(path) in message and "['item']" in message and "'product'" in message


def test_missing_column_hints_at_the_separator(tmp_path):
    path = _write(tmp_path, "log.csv", "user\titem\ttimestamp\na\tb\t1\n")
    with pytest.raises(DataError, match="tab-separated"):
        read_interactions(path)


def test_missing_column_in_a_dataframe_is_a_data_error():
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp'\]"):
        read_interactions(pd.DataFrame({"user": ["a"], "item": ["b"]}))


def test_explicit_rating_column_that_does_not_exist_is_a_data_error(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\n")
    with pytest.raises(DataError, match="score"):
        read_interactions(path, rating_col="score")


def test_empty_csv_is_a_data_error(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\n")
    with pytest.raises(DataError, match="empty") as err:
        read_interactions(path)
    assert err.value.path == str(path)


def test_zero_byte_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_interactions(_write(tmp_path, "log.csv", ""))


@pytest.mark.parametrize("fmt", ["sasrec", "s3rec"])
def test_empty_text_format_file_is_a_data_error(tmp_path, fmt):
    with pytest.raises(DataError, match="empty"):
        read_interactions(_write(tmp_path, "data.txt", "\n\n"), fmt)


def test_empty_dataframe_is_a_data_error():
    with pytest.raises(DataError, match="empty"):
        read_interactions(pd.DataFrame({"user": [], "item": [], "timestamp": []}))


def test_csv_row_with_too_many_fields_names_file_and_line(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\nc,d,2,oops\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert err.value.line == 3
    assert f"{path}:3:" in str(err.value) and "'c,d,2,oops'" in str(err.value)


def test_csv_non_numeric_timestamp_names_its_line(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\nc,d,2\ne,f,soon\n")
    with pytest.raises(DataError, match="'soon' is not a number") as err:
        read_interactions(path)
    assert err.value.line == 4 and f"{path}:4:" in str(err.value)


def test_csv_line_numbers_stay_right_after_blank_lines(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\n\na,b,1\n\nc,d,x\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert err.value.line == 5


def test_unparsable_date_strings_are_a_data_error(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,2024-01-01\nc,d,2024-13-45\n")
    with pytest.raises(DataError, match="neither a number nor an ISO 8601 date") as err:
        read_interactions(path)
    assert err.value.line == 3


def test_csv_missing_user_id_names_its_line(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,1\n,d,2\n")
    with pytest.raises(DataError, match="user id") as err:
        read_interactions(path)
    assert err.value.line == 3


def test_csv_missing_timestamp_names_its_line(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\na,b,\n")
    with pytest.raises(DataError, match="missing timestamp") as err:
        read_interactions(path)
    assert err.value.line == 2


def test_csv_non_numeric_rating_names_its_line(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp,rating\na,b,1,5\na,c,2,great\n")
    with pytest.raises(DataError, match="rating 'great'") as err:
        read_interactions(path)
    assert err.value.line == 3


def test_invalid_utf8_is_a_data_error_naming_the_line(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"1 a\n2 \xff\n")
    with pytest.raises(DataError, match="UTF-8") as err:
        read_interactions(path, "sasrec")
    assert err.value.line == 2


def test_null_ids_in_a_dataframe_are_a_data_error():
    frame = pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="missing user id"):
        read_interactions(frame)
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", np.nan], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="missing item id"):
        read_interactions(frame)


def test_nan_timestamp_in_a_dataframe_is_a_data_error():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": [1.0, np.nan]})
    with pytest.raises(DataError, match="missing timestamp"):
        read_interactions(frame)


def test_parquet_non_numeric_timestamp_names_the_row(tmp_path):
    path = tmp_path / "log.parquet"
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": ["1", "later"]})
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"'later' is not a number \(row 1") as err:
        read_interactions(path, "parquet")
    assert err.value.path == str(path)


def test_unreadable_parquet_is_a_data_error(tmp_path):
    path = _write(tmp_path, "log.parquet", "not parquet")
    with pytest.raises(DataError, match="Parquet"):
        read_interactions(path, "parquet")


def test_sasrec_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "data.txt", "1 10\n2 20 30\n")
    with pytest.raises(DataError, match="expected 2") as err:
        read_interactions(path, "sasrec")
    assert err.value.line == 2 and f"{path}:2:" in str(err.value) and "'2 20 30'" in str(err.value)


def test_s3rec_line_with_no_items_names_file_and_line(tmp_path):
    path = _write(tmp_path, "data.txt", "1 10 11\n2\n")
    with pytest.raises(DataError, match="no items") as err:
        read_interactions(path, "s3rec")
    assert err.value.line == 2 and f"{path}:2:" in str(err.value)


@pytest.mark.parametrize(
    "name, text, line",
    [
        ("u.data", "1\t2\t3\t4\n1\t2\t3\n", 2),
        ("u.data", "1\t2\t3\t4\n\n1\t2\t3\t4\t5\n", 3),
        ("ratings.dat", "1::2::3::4\n1::2::3::4::5\n", 2),
        ("ratings.dat", "1::2::3::4\n:::::::\n", 2),
        ("ratings.dat", "1::2::3::4\n::2::3::4\n", 2),
    ],
)
def test_movielens_malformed_line_names_file_and_line(tmp_path, name, text, line):
    path = _write(tmp_path, name, text)
    with pytest.raises(DataError, match="expected 4") as err:
        read_interactions(path, "movielens")
    assert err.value.line == line and f"{path}:{line}:" in str(err.value)


def test_movielens_non_numeric_timestamp_names_its_line(tmp_path):
    path = _write(tmp_path, "u.data", "1\t2\t3\t4\n\n1\t2\t3\tlater\n")
    with pytest.raises(DataError, match="'later' is not a number") as err:
        read_interactions(path, "movielens")
    assert err.value.line == 3


def test_long_offending_lines_are_truncated_in_messages(tmp_path):
    path = _write(tmp_path, "data.txt", "1 2 " + "x" * 500 + "\n")
    with pytest.raises(DataError) as err:
        read_interactions(path, "sasrec")
    assert len(str(err.value)) < 300 and "..." in str(err.value)


def test_unrecognised_movielens_file_is_a_data_error(tmp_path):
    path = _write(tmp_path, "data.txt", "1 2 3 4\n")
    with pytest.raises(DataError, match="not a MovieLens ratings file"):
        read_interactions(path, "movielens")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_data_error_keeps_its_location_through_pickling():
    error = pickle.loads(pickle.dumps(DataError("bad id", path="log.csv", line=7)))
    assert (error.path, error.line, error.reason) == ("log.csv", 7, "bad id")
    assert str(error) == "log.csv:7: bad id"


# -------------------------------------------------------------------------------- filtering


def _log(rows):
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def test_duplicates_keep_leaves_every_row():
    df = _log([("u", "a", 1), ("u", "a", 2), ("u", "b", 3)])
    assert _rows(filter_interactions(df, duplicates="keep")) == _rows(df)


def test_duplicates_first_keeps_the_earliest_occurrence_in_time():
    # Rows out of time order: the earliest ("u", "a") is the second row.
    df = _log([("u", "a", 5), ("u", "a", 1), ("u", "b", 3), ("v", "a", 9)])
    out = filter_interactions(df, duplicates="first")
    assert _rows(out) == [("u", "a", 1), ("u", "b", 3), ("v", "a", 9)]


def test_duplicates_last_keeps_the_latest_occurrence_in_time():
    df = _log([("u", "a", 5), ("u", "a", 1), ("u", "b", 3), ("u", "a", 2)])
    out = filter_interactions(df, duplicates="last")
    assert _rows(out) == [("u", "a", 5), ("u", "b", 3)]


def test_duplicates_with_tied_timestamps_break_ties_by_row_order():
    df = _log([("u", "a", 1), ("u", "b", 1), ("u", "a", 1)]).assign(tag=[0, 1, 2])
    assert filter_interactions(df, duplicates="first")["tag"].tolist() == [0, 1]
    assert filter_interactions(df, duplicates="last")["tag"].tolist() == [1, 2]


def test_unknown_duplicates_policy_is_a_value_error():
    with pytest.raises(ValueError, match="duplicates"):
        filter_interactions(_log([("u", "a", 1)]), duplicates="drop")


def test_k_core_iterates_until_every_user_and_item_meets_the_threshold(caplog):
    # 2-core. Pass 1 removes only item "x" (seen once). That drops user "w" to one interaction,
    # so pass 2 removes "w", which drops item "c" to one interaction, removed in pass 3.
    rows = [
        ("u", "a", 1), ("u", "b", 2),
        ("v", "a", 1), ("v", "b", 2),
        ("w", "c", 1), ("w", "x", 2),
        ("z", "c", 1), ("z", "a", 2), ("z", "b", 3),
    ]
    df = _log(rows)
    one_pass_users = df.groupby("user")["item"].transform("size") >= 2
    one_pass_items = df.groupby("item")["user"].transform("size") >= 2
    assert len(df[one_pass_users & one_pass_items]) == 8  # a single pass is not enough

    with caplog.at_level(logging.INFO, logger="sasrec_tf.data.ingest"):
        out = filter_interactions(df, min_user_interactions=2, min_item_interactions=2)
    assert _rows(out) == [
        ("u", "a", 1), ("u", "b", 2), ("v", "a", 1), ("v", "b", 2), ("z", "a", 2), ("z", "b", 3)
    ]
    assert out.groupby("user").size().min() >= 2 and out.groupby("item").size().min() >= 2
    assert "removed 3 of 9 interactions, 1 of 4 users, 2 of 4 items" in caplog.text


def test_k_core_runs_after_duplicate_removal():
    df = _log([("u", "a", 1), ("u", "a", 2), ("v", "a", 3), ("v", "b", 4)])
    out = filter_interactions(df, min_user_interactions=2, duplicates="first")
    assert _rows(out) == [("v", "a", 3), ("v", "b", 4)]


def test_k_core_that_removes_everything_is_a_data_error():
    with pytest.raises(DataError, match="min_user_interactions=5"):
        filter_interactions(_log([("u", "a", 1), ("v", "b", 2)]), min_user_interactions=5)


def test_negative_threshold_is_a_value_error():
    with pytest.raises(ValueError, match="min_item_interactions"):
        filter_interactions(_log([("u", "a", 1)]), min_item_interactions=-1)
