"""The sequence rules shared by every reader, pinned on hand-computed cases, in numpy and in a graph."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.data import rules

LENGTHS = [1, 2, 3, 5, 60]
MAX_LEN = 50


def test_leave_one_out_keeps_all_but_the_last_two_of_users_with_three_or_more():
    kept = rules.leave_one_out_lengths(np.array(LENGTHS))
    assert isinstance(kept, np.ndarray) and kept.dtype == np.int64
    np.testing.assert_array_equal(kept, [1, 2, 1, 3, 58])
    np.testing.assert_array_equal(rules.leave_one_out_lengths(LENGTHS, min_length=4), [1, 2, 3, 3, 58])
    with pytest.raises(ValueError, match="at least 3"):
        rules.leave_one_out_lengths(LENGTHS, min_length=2)


@pytest.mark.parametrize("windows, per_sequence, rows, ends, targets", [
    # One window per sequence of two or more items, ending at its last item.
    ("last", [0, 1, 1, 1, 1], [1, 2, 3, 4], [2, 3, 5, 60], [1, 2, 4, 50]),
    # 59 targets of the 60-item sequence: windows of 50 and 9 targets, most recent first.
    ("all", [0, 1, 1, 1, 2], [1, 2, 3, 4, 4], [2, 3, 5, 60, 10], [1, 2, 4, 50, 9]),
])
def test_windows_of_each_sequence_and_their_targets(windows, per_sequence, rows, ends, targets):
    np.testing.assert_array_equal(rules.windows_per_sequence(LENGTHS, MAX_LEN, windows), per_sequence)
    got_rows, got_ends = rules.window_ends(LENGTHS, MAX_LEN, windows)
    assert isinstance(got_rows, np.ndarray) and isinstance(got_ends, np.ndarray), "numpy in, numpy out"
    assert got_rows.dtype == got_ends.dtype == np.int64
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_ends, ends)
    np.testing.assert_array_equal(rules.window_targets(got_ends, MAX_LEN), targets)
    assert rules.count_windows(LENGTHS, MAX_LEN, windows) == len(rows)
    assert rules.mean_window_targets(LENGTHS, MAX_LEN, windows) == sum(targets) / len(targets)


def test_windows_of_the_leave_one_out_training_parts():
    rows, ends = rules.window_ends(rules.leave_one_out_lengths(LENGTHS), MAX_LEN, "all")
    np.testing.assert_array_equal(rows, [1, 3, 4, 4])
    np.testing.assert_array_equal(ends, [2, 3, 58, 8])


@pytest.mark.parametrize("windows, count, mean", [("last", 4, 53 / 4), ("all", 5, 62 / 5)])
def test_weights_count_sequences_per_length_like_a_histogram(windows, count, mean):
    lengths, users = [2, 60, 1], [3, 1, 7]  # a manifest histogram: three users of 2 items, ...
    assert rules.count_windows(lengths, MAX_LEN, windows, weights=users) == count
    assert rules.mean_window_targets(lengths, MAX_LEN, windows, weights=users) == mean
    expanded = np.repeat(lengths, users)
    assert rules.count_windows(expanded, MAX_LEN, windows) == count
    assert rules.mean_window_targets(expanded, MAX_LEN, windows) == mean


def test_no_window_gives_zero_windows_and_a_neutral_normaliser():
    assert rules.count_windows([0, 1], MAX_LEN, "all") == 0
    assert rules.mean_window_targets([0, 1], MAX_LEN, "all") == 1.0
    assert rules.mean_window_targets([], MAX_LEN) == 1.0


def test_the_same_rules_run_in_a_graph_on_tensors():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def in_graph(lengths):
        kept = rules.leave_one_out_lengths(lengths)
        rows, ends = rules.window_ends(kept, MAX_LEN, "all")
        return kept, rows, ends, rules.window_targets(ends, MAX_LEN)

    kept, rows, ends, targets = (t.numpy() for t in in_graph(tf.constant(LENGTHS, tf.int64)))
    np.testing.assert_array_equal(kept, rules.leave_one_out_lengths(LENGTHS))
    expected_rows, expected_ends = rules.window_ends(kept, MAX_LEN, "all")
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(ends, expected_ends)
    np.testing.assert_array_equal(targets, rules.window_targets(expected_ends, MAX_LEN))


def test_unknown_windows_mode_is_rejected():
    with pytest.raises(ValueError, match="windows must be 'last' or 'all'"):
        rules.window_ends(LENGTHS, MAX_LEN, "every")
    with pytest.raises(ValueError, match="windows must be 'last' or 'all'"):
        rules.count_windows(LENGTHS, MAX_LEN, "every")


def test_item_counts_count_every_interaction_and_never_padding():
    counts = rules.item_counts([np.array([1, 2, 2]), np.array([3, 2]), np.array([0, 0, 4])], 5)
    np.testing.assert_array_equal(counts, [0, 1, 3, 1, 1, 0])
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(rules.item_counts([], 2), [0, 0, 0])
    with pytest.raises(ValueError, match="0..5"):
        rules.item_counts([np.array([6])], 5)
