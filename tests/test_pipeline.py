"""The tf.data training pipeline: windows, padding, shifted targets and negative sampling."""

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.data import pad_sequences, training_dataset

NUM_ITEMS = 30


def sequences_fixture(seed=0, count=50):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, NUM_ITEMS + 1, size=n) for n in rng.integers(1, 25, size=count)]


def collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def test_pad_sequences_keeps_most_recent_items_left_padded():
    out = pad_sequences([np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8, 9]), np.array([], dtype=int)], 4)
    np.testing.assert_array_equal(out, [[0, 1, 2, 3], [6, 7, 8, 9], [0, 0, 0, 0]])
    assert out.dtype == np.int32


def test_batches_hold_last_window_left_padded_with_targets_shifted_by_one():
    sequences = sequences_fixture()
    max_len = 10
    data = collect(training_dataset(sequences, NUM_ITEMS, max_len, batch_size=7, shuffle=False))
    trainable = [s for s in sequences if len(s) >= 2]
    assert len(data["item_ids"]) == len(trainable)
    for row, seq in enumerate(trainable):
        inputs, positives = data["item_ids"][row], data["positives"][row]
        np.testing.assert_array_equal(inputs, pad_sequences([seq[:-1]], max_len)[0])
        np.testing.assert_array_equal(positives, pad_sequences([seq[1:]], max_len)[0])
        real = inputs != 0
        assert not real[: max_len - real.sum()].any(), "padding must be on the left"
    assert data["item_ids"].dtype == np.int32 and data["negatives"].shape[1:] == (max_len, 1)


def test_user_ids_point_at_the_sequence_of_each_example():
    sequences = sequences_fixture()
    data = collect(training_dataset(sequences, NUM_ITEMS, 8, batch_size=5, shuffle=True, seed=3))
    for user, positives in zip(data["user_ids"], data["positives"]):
        expected = pad_sequences([sequences[user - 1][1:]], 8)[0]
        np.testing.assert_array_equal(positives, expected)


def test_sequences_shorter_than_two_items_are_skipped():
    data = collect(training_dataset([np.array([3]), np.array([4, 5])], NUM_ITEMS, 4, shuffle=False))
    np.testing.assert_array_equal(data["item_ids"], [[0, 0, 0, 4]])
    np.testing.assert_array_equal(data["user_ids"], [2])


@pytest.mark.parametrize("num_negatives", [1, 5])
def test_negatives_are_never_padding_nor_the_positive(num_negatives):
    data = collect(training_dataset(sequences_fixture(), NUM_ITEMS, 10, batch_size=16,
                                    num_negatives=num_negatives))
    negatives, positives = data["negatives"], data["positives"]
    assert negatives.shape[-1] == num_negatives
    assert negatives.min() >= 1 and negatives.max() <= NUM_ITEMS
    assert not (negatives == positives[..., None]).any()


def test_negatives_cover_every_other_item_uniformly():
    sequences = [np.array([1, 2, 3, 4, 5, 6])] * 400
    data = collect(training_dataset(sequences, 6, 5, batch_size=64, num_negatives=10))
    counts = np.bincount(data["negatives"][:, -1, :].ravel(), minlength=7)  # positive there is 6
    assert counts[0] == 0 and counts[6] == 0
    share = counts[1:6] / counts[1:6].sum()
    np.testing.assert_allclose(share, 0.2, atol=0.03)


def test_negatives_can_avoid_the_whole_history():
    sequences = sequences_fixture(count=30)
    data = collect(training_dataset(sequences, NUM_ITEMS, 10, batch_size=8, num_negatives=4,
                                    exclude_history=True))
    for user, negatives in zip(data["user_ids"], data["negatives"]):
        history = set(sequences[user - 1].tolist())
        assert not history.intersection(negatives.ravel().tolist())


def test_negatives_are_fresh_every_epoch_and_reproducible_from_the_seed():
    sequences = sequences_fixture()
    dataset = training_dataset(sequences, NUM_ITEMS, 10, batch_size=64, shuffle=False, seed=7)
    first, second = collect(dataset), collect(dataset)
    np.testing.assert_array_equal(first["item_ids"], second["item_ids"])
    assert not np.array_equal(first["negatives"], second["negatives"])
    again = collect(training_dataset(sequences, NUM_ITEMS, 10, batch_size=64, shuffle=False, seed=7))
    np.testing.assert_array_equal(again["negatives"], first["negatives"])


def test_shuffling_changes_order_each_epoch_but_not_content():
    sequences = sequences_fixture()
    dataset = training_dataset(sequences, NUM_ITEMS, 10, batch_size=8, seed=1)
    first, second = collect(dataset)["user_ids"], collect(dataset)["user_ids"]
    assert sorted(first) == sorted(second) and list(first) != list(second)


def test_all_windows_mode_uses_every_target_exactly_once():
    sequence = np.arange(1, 24)  # 23 items: 22 targets → windows of 10, 10, 2 targets
    data = collect(training_dataset([sequence], 30, 10, shuffle=False, windows="all"))
    assert len(data["item_ids"]) == 3
    targets = np.sort(data["positives"][data["positives"] > 0])
    np.testing.assert_array_equal(targets, np.arange(2, 24))
    for inputs, positives in zip(data["item_ids"], data["positives"]):
        real = positives > 0
        np.testing.assert_array_equal(positives[real], inputs[real] + 1)


def test_bad_inputs_are_rejected_clearly():
    with pytest.raises(ValueError, match="1..30"):
        training_dataset([np.array([0, 3, 4])], 30, 5)
    with pytest.raises(ValueError, match="two or more"):
        training_dataset([np.array([3])], 30, 5)
    with pytest.raises(ValueError, match="windows"):
        training_dataset([np.array([3, 4])], 30, 5, windows="every")


def test_pipeline_needs_no_python_in_the_hot_path():
    dataset = training_dataset(sequences_fixture(), NUM_ITEMS, 10, batch_size=8, exclude_history=True)
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    ops |= {node.op for function in graph.library.function for node in function.node_def}
    assert "MapDataset" in ops or "ParallelMapDatasetV2" in ops
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless", "GeneratorDataset"}


def test_length_buckets_cut_batches_to_their_longest_window_without_changing_any_window():
    sequences = sequences_fixture(count=200)
    max_len = 12
    full = collect(training_dataset(sequences, NUM_ITEMS, max_len, batch_size=16, shuffle=False))
    batches = list(training_dataset(sequences, NUM_ITEMS, max_len, batch_size=16, seed=4,
                                    bucket_by_length=True).as_numpy_iterator())
    widths = [b["item_ids"].shape[1] for b in batches]
    assert min(widths) < max_len, "short windows must get narrow batches"
    by_user = {int(u): (i, p) for b in batches for u, i, p in zip(b["user_ids"], b["item_ids"], b["positives"])}
    assert len(by_user) == len(full["user_ids"]) == sum(len(b["user_ids"]) for b in batches)
    for user, inputs, positives in zip(full["user_ids"], full["item_ids"], full["positives"]):
        cut_inputs, cut_positives = by_user[int(user)]
        width = len(cut_inputs)
        assert not inputs[: max_len - width].any(), "only leading padding may be cut"
        np.testing.assert_array_equal(cut_inputs, inputs[max_len - width:])
        np.testing.assert_array_equal(cut_positives, positives[max_len - width:])
    for b in batches:
        assert (b["item_ids"][:, -1] > 0).all()
        assert (b["item_ids"][:, 0] > 0).any(), "each batch is as wide as its longest window, no wider"
        assert not (b["negatives"] == b["positives"][..., None]).any()


@pytest.mark.parametrize("windows", ["last", "all"])
@pytest.mark.parametrize("bucket", [False, True], ids=["random-batches", "bucketed"])
def test_every_batch_is_normalised_by_the_targets_a_full_batch_holds_on_average(bucket, windows):
    # The loss normaliser, sum(expected_targets), is the same constant for every batch however
    # batches are cut: batch_size x the dataset's mean targets per window.
    batches = list(training_dataset(sequences_fixture(), NUM_ITEMS, 8, batch_size=7, windows=windows,
                                    bucket_by_length=bucket, seed=1).as_numpy_iterator())
    targets = sum(int((b["positives"] != 0).sum()) for b in batches)
    windows_seen = sum(len(b["user_ids"]) for b in batches)
    for b in batches:
        assert b["expected_targets"].dtype == np.float32 and b["expected_targets"].shape == b["user_ids"].shape
        assert np.ptp(b["expected_targets"]) == 0, "spread evenly over the batch's rows"
        assert b["expected_targets"].sum() == pytest.approx(7 * targets / windows_seen, rel=1e-5)
    if not bucket:  # a full random batch: the mean targets per window in every row
        np.testing.assert_allclose(batches[0]["expected_targets"], targets / windows_seen, rtol=1e-6)


def test_length_buckets_hold_equal_targets_whatever_their_width_and_every_epoch_has_as_many():
    # A bucket of short windows has many rows, one of long windows few, each about batch_size x
    # mean targets, so every optimiser step sees about as many targets as a random batch -- as in
    # the reference. And as many batches in every epoch as random batching: Keras ends training
    # when an epoch comes up shorter than the first.
    rng = np.random.default_rng(3)
    lengths = np.clip(rng.lognormal(1.6, 1.1, size=600).astype(int), 2, 60)
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=n) for n in lengths]
    max_len, batch_size = 30, 16
    dataset = training_dataset(sequences, NUM_ITEMS, max_len, batch_size=batch_size, seed=2, bucket_by_length=True)
    window_targets = np.minimum(lengths - 1, max_len)
    share = window_targets.sum() / np.ceil(600 / batch_size)  # one pool here: 600 < 64 batches' worth
    for _ in range(3):  # epochs
        batches = list(dataset.as_numpy_iterator())
        assert len(batches) == np.ceil(600 / batch_size)
        targets = np.array([(b["positives"] != 0).sum() for b in batches])
        rows = np.array([len(b["user_ids"]) for b in batches])
        widths = np.array([b["item_ids"].shape[1] for b in batches])
        assert (np.abs(targets - share) <= widths).all(), "within one window of an equal share"
        assert rows[widths == widths.min()].min() > batch_size > rows[widths == max_len].max()
        assert targets.sum() == window_targets.sum(), "every window exactly once"
        assert batches[0]["expected_targets"].sum() == pytest.approx(batch_size * window_targets.mean(), rel=1e-5)


def test_length_buckets_of_a_tiny_batch_size_fall_back_to_rows_rather_than_leave_a_batch_empty():
    # batch_size 1: an equal share of targets is the mean window, shorter than the longest.
    sequences = [np.arange(1, n + 1) for n in (2, 3, 9, 9, 12)]
    batches = list(training_dataset(sequences, NUM_ITEMS, 10, batch_size=1, bucket_by_length=True,
                                    seed=0).as_numpy_iterator())
    assert sorted(len(b["user_ids"]) for b in batches) == [1] * 5


@pytest.mark.parametrize("bucket_by_length", [False, True])
@pytest.mark.parametrize("windows", ["last", "all"])
def test_steps_per_epoch_is_the_number_of_batches_an_epoch_has(bucket_by_length, windows):
    from sasrec_tf.data.pipeline import steps_per_epoch

    rng = np.random.default_rng(4)
    sequences = [rng.integers(1, 30, size=n) for n in rng.integers(1, 40, size=700)]
    dataset = training_dataset(sequences, 29, 10, 32, windows=windows, bucket_by_length=bucket_by_length, seed=1)
    assert steps_per_epoch(sequences, 10, 32, windows=windows) == sum(1 for _ in dataset)
    if not bucket_by_length:
        dropped = training_dataset(sequences, 29, 10, 32, windows=windows, drop_remainder=True, seed=1)
        assert steps_per_epoch(sequences, 10, 32, windows=windows, drop_remainder=True) == sum(1 for _ in dropped)
