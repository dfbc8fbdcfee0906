"""Item-feature files: S3-Rec's JSON and tables, aligned to a vocabulary; bad files in one line (no TensorFlow)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sasrec_tf.data.errors import DataError
from sasrec_tf.data.item_features import read_item_features
from sasrec_tf.data.synthetic import generate_attribute_interactions
from sasrec_tf.data.vocab import ItemVocabulary


def write_json(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_s3rec_json_reads_attribute_ids_as_tokens_and_aligns_by_dense_id(tmp_path):
    path = write_json(tmp_path / "x_item2attributes.json", json.dumps({"4": [1, 2, 3], "83": [4, 2], "9": []}))
    features = read_item_features(path)
    assert features.attributes["4"] == ("1", "2", "3") and features.source == str(path)
    vocab = ItemVocabulary(["83", "4", "9", "new"])  # "9": an empty list; "new": no features at all
    aligned = features.aligned(vocab)
    assert aligned.attribute_names == ("1", "2", "3", "4")
    rows = [aligned.values[aligned.row_splits[i]:aligned.row_splits[i + 1]].tolist() for i in range(5)]
    assert rows == [[], [4, 2], [1, 2, 3], [], []]
    assert aligned.row_splits.dtype == np.int64 and len(aligned.row_splits) == vocab.size + 1
    assert aligned.items_without_features == 2 and aligned.num_attributes() == 4
    np.testing.assert_array_equal(aligned.padded(), [[0, 0, 0], [4, 2, 0], [1, 2, 3], [0, 0, 0], [0, 0, 0]])
    assert features.missing_from(ItemVocabulary(["4"])) == 2  # features but no interactions


def test_a_fixed_attribute_vocabulary_keeps_its_ids_and_drops_or_appends_unknown_tokens(tmp_path):
    features = read_item_features(write_json(tmp_path / "f.json", '{"a": [1, 7], "b": [3]}'))
    vocab = ItemVocabulary(["a", "b"])
    kept = features.aligned(vocab, attribute_names=["3", "1"])
    assert kept.values.tolist() == [2, 1] and kept.unknown_attributes == 1
    grown = features.aligned(vocab, attribute_names=["3", "1"], grow=True)
    assert grown.attribute_names == ("3", "1", "7") and grown.values.tolist() == [2, 3, 1]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_a_table_namespaces_tokens_by_column_and_splits_multi_valued_cells(tmp_path, suffix):
    frame = pd.DataFrame({"sku": ["x1", "x2", "x3"], "brand": ["acme", "", "zeta"],
                          "tags": ["red|blue", "blue", ""]})
    path = tmp_path / f"items{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    features = read_item_features(path, item_column="sku")
    assert features.attributes == {"x1": ("brand=acme", "tags=red", "tags=blue"), "x2": ("tags=blue",),
                                   "x3": ("brand=zeta",)}


def test_the_generated_log_follows_attributes_and_its_table_covers_every_item(tmp_path):
    log, table = generate_attribute_interactions(num_users=50, num_items=40, num_categories=10, seed=1)
    assert set(log["item"]) <= set(table["item"]) and len(table) == 40
    category = dict(zip(table["item"], table["category"].str[1:].astype(int)))
    follows = []
    for _, items in log.groupby("user", sort=False)["item"]:
        steps = [category[i] for i in items]
        follows += [(b - a) % 10 == 1 for a, b in zip(steps, steps[1:])]
    assert np.mean(follows) > 0.8  # mostly to the next category
    path = tmp_path / "items.csv"
    table.to_csv(path, index=False)
    assert read_item_features(path).attributes["i3"] == ("category=c3", "tags=b" + table["tags"][3][1], "tags=c3")


@pytest.mark.parametrize("text, says", [
    ('{"a": [1, 2],\n "b": [3,,]}', ":2: malformed JSON"),
    ('{"a": 5}', "item 'a': expected a list"),
    ('{"a": [1, "x"]}', "item 'a': attribute 'x' is not an integer"),
    ('{"a": [1, ""]}', "attribute '' is not an integer"),
    ('{"a": [1], "a": [2]}', "item 'a' appears twice"),
    ('[1, 2]', "expected one JSON object"),
])
def test_a_bad_json_file_is_one_line_naming_the_file_and_the_line_or_key(tmp_path, text, says):
    path = write_json(tmp_path / "bad.json", text)
    with pytest.raises(DataError) as err:
        read_item_features(path)
    assert str(err.value).startswith(str(path)) and says in str(err.value) and "\n" not in str(err.value)


def test_a_bad_table_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("item,brand\nx,a\ny,b\nx,c\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.csv:4: item 'x' appears twice"):
        read_item_features(path)
    with pytest.raises(DataError, match="no item column 'sku'"):
        read_item_features(path, item_column="sku")
    path.write_text("item,brand\nx,a\n,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.csv:3: empty item id"):
        read_item_features(path)
    with pytest.raises(DataError, match="cannot tell the item-features format"):
        read_item_features(tmp_path / "t.dat")
    with pytest.raises(DataError, match="not found"):
        read_item_features(tmp_path / "none.json")


def test_reading_features_imports_no_tensorflow():
    code = ("import sys; import sasrec_tf.data.item_features, sasrec_tf.data.synthetic; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_pipeline_file_names_item_features_by_path_or_with_reading_options(tmp_path):
    from sasrec_tf.experiment import load_pipeline

    (tmp_path / "a.json").write_text('{"item_features": "f.json"}', encoding="utf-8")
    assert load_pipeline(tmp_path / "a.json").item_features == {"path": "f.json"}
    (tmp_path / "b.json").write_text('{"item_features": {"path": "t.csv", "item_column": "sku"}}', encoding="utf-8")
    assert load_pipeline(tmp_path / "b.json").item_features == {"path": "t.csv", "item_column": "sku"}
    (tmp_path / "c.json").write_text('{"item_features": {"file": "t.csv"}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.json: item_features must be a path or an object"):
        load_pipeline(tmp_path / "c.json")
