"""Sharded TFRecord sequences: exact round trip, balanced shards, and a reader that yields the
very batches of the in-memory pipeline, split between workers without overlap."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

from sasrec_tf.cli import main
from sasrec_tf.data import build_sequences, generate_interactions, leave_one_out, pad_sequences, training_dataset
from sasrec_tf.data.tfrecord import ShardedSequences, tfrecord_training_dataset, write_shards
from sasrec_tf.evaluation import training_item_counts

MAX_LEN = 8


@pytest.fixture(scope="module")
def data():
    # Lengths from 2 to 40: windows="all" cuts the long ones; a few users are too short to evaluate.
    return build_sequences(generate_interactions(num_users=150, num_items=70, mean_length=9, min_length=2,
                                                 max_length=40, seed=4))


@pytest.fixture(scope="module")
def shard_dir(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    write_shards(data, directory, num_shards=4)
    return directory


def collect(dataset):
    return list(dataset.as_numpy_iterator())


def test_records_round_trip_exactly_with_vocabulary_and_counts(data, shard_dir):
    shards = ShardedSequences(shard_dir)
    back = shards.read_sequences()
    assert back.vocab == data.vocab
    assert list(back.user_ids) == list(data.user_ids)
    assert len(back.sequences) == data.num_users
    for original, restored in zip(data.sequences, back.sequences):
        np.testing.assert_array_equal(original, restored)
    assert (shards.num_users, shards.num_items, shards.num_interactions) == (
        data.num_users, data.num_items, int(data.lengths().sum()))
    assert list(shards.user_ids()) == list(data.user_ids)
    expected_counts = training_item_counts(leave_one_out(data).train, data.num_items)
    np.testing.assert_array_equal(shards.train_item_counts(), expected_counts)

    subset = shards.read_sequences(users=[7, 3, 120])
    assert list(subset.user_ids) == [data.user_ids[i] for i in (3, 7, 120)]
    np.testing.assert_array_equal(subset.sequences[2], data.sequences[120])


def test_shards_split_users_into_balanced_contiguous_ranges_none_lost_or_duplicated(data, shard_dir):
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    seen = []
    for shard in manifest["shards"]:
        records = tf.data.TFRecordDataset(str(shard_dir / shard["file"]))
        users = [tf.train.Example.FromString(r).features.feature["user_index"].int64_list.value[0]
                 for r in records.as_numpy_iterator()]
        assert len(users) == shard["records"] and shard["bytes"] > 0
        assert users == list(range(shard["first_user_index"], shard["first_user_index"] + len(users)))
        seen.extend(users)
    assert sorted(seen) == list(range(data.num_users)) and len(set(seen)) == len(seen)
    sizes = [shard["records"] for shard in manifest["shards"]]
    assert max(sizes) - min(sizes) <= 1
    assert sum(shard["interactions"] for shard in manifest["shards"]) == manifest["num_interactions"]


OPTIONS = [
    {},
    {"windows": "all"},
    {"exclude_history": True, "num_negatives": 3},
    {"bucket_by_length": True},
    {"windows": "all", "bucket_by_length": True, "exclude_history": True},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("loo", [False, True], ids=["full-sequences", "leave-one-out"])
def test_reader_yields_the_same_batches_as_the_in_memory_pipeline(data, shard_dir, options, loo):
    sequences = leave_one_out(data).train if loo else data.sequences
    expected = collect(training_dataset(sequences, data.num_items, MAX_LEN, 16, shuffle=False, seed=5, **options))
    actual = collect(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, shuffle=False, seed=5, leave_one_out=loo,
                                               **options))
    assert len(actual) == len(expected)
    for mine, theirs in zip(actual, expected):
        assert set(mine) == set(theirs) == {"item_ids", "positives", "negatives", "user_ids", "expected_targets"}
        for key in theirs:
            assert mine[key].dtype == theirs[key].dtype and mine[key].shape == theirs[key].shape, key
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


def test_shuffled_batches_are_left_padded_windows_with_shifted_targets_and_valid_negatives(data, shard_dir):
    batches = collect(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, num_negatives=4, seed=9))
    users = np.concatenate([b["user_ids"] for b in batches])
    trainable = [u + 1 for u, s in enumerate(data.sequences) if len(s) >= 2]
    assert sorted(users) == trainable, "every window exactly once per epoch"
    for batch in batches:
        for row, user in enumerate(batch["user_ids"]):
            sequence = data.sequences[user - 1]
            np.testing.assert_array_equal(batch["item_ids"][row], pad_sequences([sequence[:-1]], MAX_LEN)[0])
            np.testing.assert_array_equal(batch["positives"][row], pad_sequences([sequence[1:]], MAX_LEN)[0])
        negatives, positives = batch["negatives"], batch["positives"]
        assert negatives.shape == (*positives.shape, 4)
        assert (negatives >= 1).all() and (negatives <= data.num_items).all()
        assert not (negatives == positives[..., None]).any()


def test_negatives_and_order_are_fresh_every_epoch(shard_dir):
    dataset = tfrecord_training_dataset(shard_dir, MAX_LEN, 16, shuffle=False, seed=1).repeat(2)
    batches = collect(dataset)
    first, second = batches[: len(batches) // 2], batches[len(batches) // 2:]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["item_ids"], b["item_ids"])
    same = np.mean([np.mean(a["negatives"] == b["negatives"]) for a, b in zip(first, second)])
    assert same < 0.1
    shuffled = collect(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, seed=1).repeat(2))
    orders = np.concatenate([b["user_ids"] for b in shuffled]).reshape(2, -1)
    assert not np.array_equal(orders[0], orders[1]) and sorted(orders[0]) == sorted(orders[1])


@pytest.mark.parametrize("windows, loo", [("last", False), ("all", False), ("all", True), ("last", True)])
def test_manifest_counts_give_the_windows_and_steps_of_an_epoch(shard_dir, windows, loo):
    shards = ShardedSequences(shard_dir)
    batches = collect(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, windows=windows, leave_one_out=loo))
    assert shards.num_windows(MAX_LEN, windows, leave_one_out=loo) == sum(len(b["user_ids"]) for b in batches)
    assert shards.steps_per_epoch(MAX_LEN, 16, windows, leave_one_out=loo) == len(batches)


def test_input_contexts_split_files_between_two_workers_without_overlap(data, shard_dir):
    per_worker = []
    for index in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2)
        batches = collect(ShardedSequences(shard_dir).dataset_fn(MAX_LEN, 16, repeat=False)(context))
        assert max(len(b["user_ids"]) for b in batches) == 8, "the per-replica batch: 16 / 2 replicas"
        per_worker.append(batches)
    users = [np.concatenate([b["user_ids"] for b in batches]) for batches in per_worker]
    assert not set(users[0]) & set(users[1])
    assert sorted(np.concatenate(users)) == [u + 1 for u, s in enumerate(data.sequences) if len(s) >= 2]
    # Different seeds per worker: the negatives of the two first batches are not the same draws.
    assert np.mean(per_worker[0][0]["negatives"] == per_worker[1][0]["negatives"]) < 0.2

    too_many = tf.distribute.InputContext(num_input_pipelines=5, input_pipeline_id=0, num_replicas_in_sync=5)
    with pytest.raises(ValueError, match="at least 5 shards"):
        tfrecord_training_dataset(shard_dir, MAX_LEN, 20, input_context=too_many)


def test_data_auto_sharding_gives_each_worker_a_disjoint_share_of_every_batch(data, shard_dir):
    users = []
    for index in range(2):
        dataset = _AutoShardDataset(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, seed=3), 2, index, 2)
        users.append(np.concatenate([b["user_ids"] for b in collect(dataset)]))
    assert not set(users[0]) & set(users[1])
    assert sorted(np.concatenate(users)) == [u + 1 for u, s in enumerate(data.sequences) if len(s) >= 2]


def test_compressed_shards_and_glob_patterns_read_the_same(data, shard_dir, tmp_path):
    manifest = write_shards(data, tmp_path / "gz", num_shards=3, compression="gzip")
    assert all(shard["file"].endswith(".tfrecord.gz") for shard in manifest["shards"])
    plain = collect(tfrecord_training_dataset(shard_dir, MAX_LEN, 16, shuffle=False))
    packed = collect(tfrecord_training_dataset(str(tmp_path / "gz" / "*.tfrecord.gz"), MAX_LEN, 16, shuffle=False,
                                               num_items=data.num_items))
    for a, b in zip(plain, packed, strict=True):
        np.testing.assert_array_equal(a["item_ids"], b["item_ids"])
        np.testing.assert_array_equal(a["negatives"], b["negatives"])
    with pytest.raises(ValueError, match="num_items is required"):
        tfrecord_training_dataset(str(tmp_path / "gz" / "*.gz"), MAX_LEN, 16)


def test_invalid_requests_and_bad_records_fail_clearly(data, shard_dir, tmp_path):
    with pytest.raises(ValueError, match="already holds shards"):
        write_shards(data, shard_dir, num_shards=4)
    with pytest.raises(ValueError, match="some shards would be empty"):
        write_shards(data, tmp_path / "many", num_shards=data.num_users + 1)
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        tfrecord_training_dataset(str(tmp_path / "nothing-*.tfrecord"), MAX_LEN, 16, num_items=10)

    bad = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(bad)) as writer:
        example = tf.train.Example(features=tf.train.Features(feature={
            "items": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 99])),
            "user_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
        }))
        writer.write(example.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match="above num_items=10"):
        collect(tfrecord_training_dataset(str(bad), MAX_LEN, 16, num_items=10))


def test_cli_shards_a_log_and_trains_on_the_shards(tmp_path, capsys):
    log = tmp_path / "log.csv"
    generate_interactions(num_users=120, num_items=300, mean_length=8, seed=2).to_csv(log, index=False)
    assert main(["shard", "--data", str(log), "--format", "csv", "--out", str(tmp_path / "shards"),
                 "--num-shards", "3"]) == 0
    assert "wrote 3 shards" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "shards"), "--data-format", "tfrecord", "--out",
                 str(tmp_path / "run"), "--strategy", "mirrored", "--epochs", "1", "--max-len", "8",
                 "--hidden-units", "16", "--eval-every", "1", "--max-eval-users", "60"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"]["users"] == 120 and metrics["training"]["epochs"] == 1
    assert {"model.keras", "vocab.txt", "item_counts.npy"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert main(["shard", "--data", str(log), "--format", "csv", "--out", str(tmp_path / "shards")]) == 2
    assert "--overwrite" in capsys.readouterr().err
