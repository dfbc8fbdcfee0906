"""A shard damaged on disk stops training with one line naming the shard, before training when
the manifest shows it (size, SHA-256, record count), and mid-epoch if it breaks later (issue 28
item 7). Damage is injected (a few bytes cut, one byte flipped), never timed."""

import json
import shutil

import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf.cli import main
from sasrec_tf.data import build_sequences, generate_interactions
from sasrec_tf.data.errors import DataError
from sasrec_tf.data.tfrecord import ShardedSequences, write_shards
from sasrec_tf.data.tfrecord.schema import MANIFEST_FILE
from sasrec_tf.experiment import TrainOptions, read_shards, train_and_evaluate


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards") / "clean"
    data = build_sequences(generate_interactions(num_users=90, num_items=200, mean_length=8, seed=3))
    write_shards(data, directory, num_shards=3)
    return directory


@pytest.fixture
def shards(clean, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(clean, copy)
    return copy


def damage(path, how):
    content = bytearray(path.read_bytes())
    if how == "truncated":
        del content[-3:]
    else:  # one byte flipped in the middle: same size
        content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def second_shard(directory):
    return directory / json.loads((directory / MANIFEST_FILE).read_text())["shards"][1]["file"]


def test_the_writer_records_each_shards_size_and_checksum_and_clean_shards_pass(clean):
    shards = ShardedSequences(clean)
    assert all(len(shard["sha256"]) == 64 and shard["bytes"] > 0 for shard in shards.manifest["shards"])
    shards.verify()


@pytest.mark.parametrize("how, reason", [("truncated", "bytes, but the manifest records"),
                                         ("flipped", "SHA-256 differs")])
def test_train_on_a_damaged_shard_exits_with_one_line_naming_it(shards, tmp_path, capsys, how, reason):
    bad = second_shard(shards)
    damage(bad, how)
    assert main(["train", "--data", str(shards), "--data-format", "tfrecord", "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--max-len", "8", "--hidden-units", "8"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and reason in err and "sasrec-tf shard --overwrite" in err
    assert not (tmp_path / "run").exists(), "nothing is written before the check"


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_manifest_without_checksums_has_its_records_read_and_counted(shards, how):
    manifest = json.loads((shards / MANIFEST_FILE).read_text())
    for shard in manifest["shards"]:  # as another writer (Beam, Spark) may leave it
        del shard["sha256"], shard["bytes"]
    (shards / MANIFEST_FILE).write_text(json.dumps(manifest))
    ShardedSequences(shards).verify()
    bad = second_shard(shards)
    damage(bad, how)
    with pytest.raises(DataError, match="corrupted") as err:
        ShardedSequences(shards).verify()
    assert err.value.path == str(bad)


def test_a_shard_that_breaks_during_training_stops_it_with_the_shard_named(shards, tmp_path):
    config = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, batch_size=32, epochs=1, seed=1)
    options = TrainOptions(eval_every=1)
    sharded, data = read_shards(str(shards), config, options)  # checked and read: clean so far
    bad = second_shard(shards)
    damage(bad, "flipped")
    with pytest.raises(DataError, match="SHA-256 differs") as err:
        train_and_evaluate(data, config, options=options, shards=sharded, out_dir=tmp_path / "run")
    assert err.value.path == str(bad)
