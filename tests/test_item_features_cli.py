"""Issue 26's "Done when": `sasrec-tf train --item-features` on a log whose transitions follow
attributes, then `sasrec-tf add-items` puts a never-seen item into a new export version, and the
served top-k (the SavedModel's serving_default) recommends it to the histories that lead to it."""

import contextlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf.cli import main
from sasrec_tf.data.synthetic import generate_attribute_interactions

CATEGORIES = 24
NEW = {"i7": 7, "i40": 16}  # never in the log; category c follows category c - 1


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    log, table = generate_attribute_interactions(num_users=600, num_items=120, num_categories=CATEGORIES, seed=0)
    log[~log["item"].isin(NEW)].to_csv(root / "log.csv", index=False)
    table[~table["item"].isin(NEW)].to_csv(root / "features.csv", index=False)
    table[table["item"].isin(NEW)].to_csv(root / "new.csv", index=False)
    return root


@pytest.fixture(scope="module")
def run(files):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--data", str(files / "log.csv"), "--format", "csv",
                     "--item-features", str(files / "features.csv"), "--out", str(files / "run"),
                     "--epochs", "20", "--max-len", "20", "--hidden-units", "32", "--num-blocks", "1",
                     "--learning-rate", "0.01", "--dropout-rate", "0.2", "--eval-every", "100",
                     "--eval-negatives", "20"])
    assert code == 0
    (files / "run" / "printed.txt").write_text(printed.getvalue())
    return files / "run"


def served_top_k(version_dir, histories):
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return serve(history=tf.constant(histories))["item_ids"].numpy().astype(str)


def histories_ending_in(category):
    """Five two-item histories whose last item is of ``category`` (items ``c, c + 24, ...``)."""
    return [[f"i{(category - 1) % CATEGORIES + CATEGORIES * ((j + 1) % 5)}", f"i{category + CATEGORIES * j}"]
            for j in range(5)]


def test_training_with_item_features_records_them_and_keeps_them_beside_the_model(run, files):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["item_features"]["fusion"] == "sum" and metrics["item_features"]["items_without_features"] == 0
    assert metrics["item_features"]["attributes"] == 53  # 24 categories in two columns, 5 brands
    assert json.loads((run / "config.json").read_text())["sasrec_config"]["feature_fusion"] == "sum"
    assert (run / "attributes.txt").is_file() and (run / "item_attributes.npz").is_file()
    # Counted once, by the run that aligns them, and printed from what metrics.json records.
    lines = [line for line in (run / "printed.txt").read_text().splitlines() if line.startswith("item features: ")]
    assert lines[-1].startswith(f"item features: {files / 'features.csv'}: {metrics['item_features']['items_read']} "
                                f"items, 53 attributes, fusion sum; 0 items of the log have none, 0 with features")


def test_a_new_item_added_to_the_export_is_served_to_the_histories_that_lead_to_it(run, files, capsys):
    base = files / "exports"
    assert main(["export", "--model", str(run), "--export-base", str(base), "--name", "m", "--k", "10"]) == 0
    before = served_top_k(base / "m" / "1", histories_ending_in(6))
    assert not np.isin(before, list(NEW)).any()  # unknown to the trained model
    assert main(["add-items", "--model", str(run), "--items", str(files / "new.csv"), "--export-base", str(base),
                 "--name", "m", "--k", "10", "--out", str(files / "grown")]) == 0
    assert "added 2 items" in capsys.readouterr().out
    info = json.loads((base / "m" / "2" / "assets.extra" / "sasrec_export.json").read_text())
    assert info["num_items"] == 120 and info["cold_items"]["added"] == 2
    for item, category in NEW.items():
        leading = served_top_k(base / "m" / "2", histories_ending_in(category - 1))
        elsewhere = served_top_k(base / "m" / "2", histories_ending_in(category + 5))
        assert np.mean([item in row for row in leading]) >= 0.8, leading
        assert not any(item in row for row in elsewhere), elsewhere
    assert (files / "grown" / "vocab.txt").read_text().splitlines()[-2:] == list(NEW)
    # The exposure knob: the same new items served far lower leave every top 10, warm items take their places.
    assert main(["add-items", "--model", str(run), "--items", str(files / "new.csv"), "--export-base", str(base),
                 "--name", "m", "--k", "10", "--cold-score-offset", "1000"]) == 0
    info = json.loads((base / "m" / "3" / "assets.extra" / "sasrec_export.json").read_text())
    assert info["cold_score_offset"] == 1000
    for item, category in NEW.items():
        leading = served_top_k(base / "m" / "3", histories_ending_in(category - 1))
        assert not np.isin(leading, list(NEW)).any() and (leading != "").all(), leading


def test_bad_feature_files_and_models_without_features_are_one_line_and_exit_2(run, files, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"i1": [1, "x"]}', encoding="utf-8")
    code = main(["add-items", "--model", str(run), "--items", str(bad), "--export-base", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}: item 'i1': attribute 'x' is not an integer id" in err and err.count("\n") == 1
    code = main(["train", "--data", str(files / "log.csv"), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--set", "feature_fusion=gate"])
    err = capsys.readouterr().err
    assert code == 2 and "needs item features" in err and err.count("\n") == 1
