"""Training from TFRecord shards with item features: the features are aligned through the
vocabulary the shard manifest records, and a vocabulary that cannot align them is refused."""

import json

import numpy as np
import pandas as pd
import pytest

from sasrec_tf.cli import main
from sasrec_tf.data.synthetic import generate_interactions

TINY = ["--epochs", "1", "--max-len", "6", "--hidden-units", "8", "--num-blocks", "1", "--eval-every", "1",
        "--eval-negatives", "10"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-shards")
    log = generate_interactions(num_users=60, num_items=30, mean_length=6, seed=2)
    log.to_csv(root / "log.csv", index=False)
    items = sorted(set(log["item"].astype(str)), key=lambda item: int(item[1:]))
    # Every item's attribute is its number mod 4, so a row in the wrong place shows.
    pd.DataFrame({"item": items, "kind": [f"k{int(item[1:]) % 4}" for item in items]}).to_csv(
        root / "features.csv", index=False)
    assert main(["shard", "--data", str(root / "log.csv"), "--format", "csv", "--out", str(root / "shards")]) == 0
    return root


def test_train_from_shards_with_item_features_aligns_them_through_the_manifests_vocabulary(shards, capsys):
    from sasrec_tf.artifacts import load_trained
    from sasrec_tf.data.tfrecord import ShardedSequences

    out = shards / "run"
    assert main(["train", "--data", str(shards / "shards"), "--data-format", "tfrecord", "--item-features",
                 str(shards / "features.csv"), "--out", str(out), "--set", "feature_id_dropout_count=3", *TINY]) == 0
    assert "training streams 60 users" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["item_features"]["attributes"] == 4 and metrics["item_features"]["items_without_features"] == 0
    trained = load_trained(out)
    table = trained.model.item_representation.attribute_table.numpy()
    for dense, raw in enumerate(trained.vocab.ids, start=1):  # each raw id's row holds its own attribute
        assert trained.attribute_names[table[dense, 0] - 1] == f"kind=k{int(raw[1:]) % 4}", raw
    source = ShardedSequences(shards / "shards")
    assert trained.vocab.ids == source.vocab.ids
    # The frequency-aware id dropout counts the shards' training part (the manifest's counts).
    np.testing.assert_array_equal(trained.model.item_representation.target_counts.numpy(),
                                  source.train_item_counts())


def test_shards_whose_vocabulary_cannot_align_the_features_are_refused_in_one_line(shards, tmp_path, capsys):
    import shutil

    broken = tmp_path / "shards"
    shutil.copytree(shards / "shards", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["num_items"] += 1  # a vocabulary one item short of the records' ids
    (broken / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["train", "--data", str(broken), "--data-format", "tfrecord", "--item-features",
                 str(shards / "features.csv"), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "but the manifest records" in err and "cannot be aligned" in err and len(err.splitlines()) == 1, err
    other = tmp_path / "other.csv"
    pd.DataFrame({"item": ["x1", "x2"], "kind": ["a", "b"]}).to_csv(other, index=False)
    assert main(["train", "--data", str(shards / "shards"), "--data-format", "tfrecord", "--item-features",
                 str(other), "--out", str(tmp_path / "run2"), *TINY]) == 2
    assert "no item of the shards' vocabulary" in capsys.readouterr().err
