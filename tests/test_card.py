"""The model card (sasrec_tf.card) and the publish gate: card content and round trip, the export carries
it, ``sasrec-tf export --gate-on`` publishes a better model, refuses a worse one writing nothing,
``--force`` overrides, and ``sasrec-tf info`` shows a card."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import SASRec, SASRecConfig
from sasrec_tf import card as model_card
from sasrec_tf.cli import main
from sasrec_tf.data.sequences import build_sequences
from sasrec_tf.experiment import run_fingerprint

CONFIG = SASRecConfig(max_len=8, hidden_units=8, num_blocks=1, num_heads=1, dropout_rate=0.0)


def log(lengths):
    """A log in which user ``u`` has ``lengths[u]`` interactions with items ``i0, i1, ...``."""
    rows = [(f"u{u}", f"i{t % 6}", t) for u, n in enumerate(lengths) for t in range(n)]
    return build_sequences(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def metrics(ndcg, sampled_ndcg=0.5):
    """A metrics.json as train_and_evaluate writes it (both stages, both protocols, training)."""
    stage = {"full": {"hr@10": 2 * ndcg, "ndcg@10": ndcg, "mrr": ndcg / 2},
             "sampled": {"hr@10": 0.9, "ndcg@10": sampled_ndcg, "mrr": 0.4}}
    return {"valid": stage, "test": stage, "dataset": {"users": 10},
            "training": {"epochs": 3, "best_epoch": 2, "stopped": "max_epochs", "wall_seconds": 12.5}}


# ------------------------------------------------------------------------------------ the card
def test_data_statistics_count_users_items_interactions_and_length_percentiles():
    data = log([3] * 50 + [4] * 40 + [10] * 9 + [40])  # 100 users
    stats = model_card.data_statistics(data)
    assert {k: stats[k] for k in ("users", "items", "interactions")} == {"users": 100, "items": 6,
                                                                         "interactions": 150 + 160 + 90 + 40}
    assert stats["sequence_length"] == {"min": 3, "mean": 4.4, "p50": 3, "p90": 4, "p99": 10, "max": 40}


def test_data_statistics_of_sharded_input_come_from_the_manifest_and_equal_the_in_memory_ones(tmp_path):
    from sasrec_tf.data.tfrecord import ShardedSequences, write_shards

    data = log([3] * 5 + [7] * 4 + [12])
    write_shards(data, tmp_path / "shards", num_shards=2)
    shards = ShardedSequences(tmp_path / "shards")
    # train_and_evaluate passes only the evaluated users as `data` with shards: a sample here.
    sample = build_sequences(pd.DataFrame([("u0", "i0", 0), ("u0", "i1", 1), ("u0", "i2", 2)],
                                          columns=["user", "item", "timestamp"]))
    assert model_card.data_statistics(sample, shards) == model_card.data_statistics(data)


def test_a_written_card_reads_back_with_config_metrics_parent_data_fingerprint_and_versions(tmp_path):
    data = log([3, 5, 4, 7])
    fingerprint = run_fingerprint(data, CONFIG)["data"]
    parent = {"parent": "runs/day1", "known_items": 5, "new_items": 1, "retired_items": 0, "copied_weights": 9}
    path = model_card.write_card(tmp_path, CONFIG, data=data, fingerprint=fingerprint, metrics=metrics(0.3),
                                 parent=parent)
    assert path == tmp_path / model_card.CARD_FILE
    assert [p.name for p in tmp_path.iterdir()] == [model_card.CARD_FILE]  # no temporary file left behind
    card = model_card.read_card(tmp_path)
    assert card == json.loads(path.read_text())
    assert card["format"] == model_card.CARD_FORMAT
    assert SASRecConfig.from_dict(card["config"]) == CONFIG
    assert card["metrics"] == {"valid": metrics(0.3)["valid"], "test": metrics(0.3)["test"]}
    assert card["training"]["wall_seconds"] == 12.5
    assert card["parent"] == {"path": "runs/day1", **{k: v for k, v in parent.items() if k != "parent"}}
    assert card["data"]["sha256"] == fingerprint["sha256"] and card["data"]["interactions"] == 19
    assert set(card["versions"]) == {"python", "sasrec_tf", "tensorflow", "tf_keras"}
    assert card["created"].endswith("+00:00")
    # The digest identifies the data: another log gives another one.
    assert run_fingerprint(log([3, 5, 4, 8]), CONFIG)["data"]["sha256"] != fingerprint["sha256"]
    # A path as parent is recorded as {"path": ...}; a cold start as null.
    assert model_card.build_card(CONFIG, parent="runs/day1")["parent"] == {"path": "runs/day1"}
    assert model_card.build_card(CONFIG)["parent"] is None
    # A warm-started run records its parent in metrics.json: the card takes it from there.
    warm = model_card.build_card(CONFIG, metrics={**metrics(0.3), "parent": parent})
    assert warm["parent"] == card["parent"]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(format="other"), "format must be"),
    (lambda c: c.pop("versions"), "missing field"),
    (lambda c: c["metrics"]["valid"]["full"].update({"ndcg@10": float("nan")}), "finite number"),
    (lambda c: c["metrics"].update(train={}), "metrics.train"),
    (lambda c: c["config"].update(hidden_units=-1), "hidden_units"),
    (lambda c: c.update(parent=["day1"]), "parent must be an object"),
    (lambda c: c.update(parent={"known_items": 3}), "parent.path"),
])
def test_invalid_cards_are_refused_naming_the_problem_and_the_file(tmp_path, change, message):
    card = model_card.build_card(CONFIG, metrics=metrics(0.3))
    change(card)
    (tmp_path / model_card.CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ValueError, match=message) as err:
        model_card.read_card(tmp_path)
    assert str(tmp_path / model_card.CARD_FILE) in str(err.value)


def test_the_gate_rule_compares_validation_metrics_with_a_tolerance():
    old, new = model_card.build_card(CONFIG, metrics=metrics(0.30)), model_card.build_card(CONFIG, metrics=metrics(0.28))
    refused = model_card.compare(new, old, "ndcg@10", old_version=4)
    assert not refused.passed and (refused.new, refused.old, refused.old_version) == (0.28, 0.30, 4)
    assert "0.28 is worse than 0.3 of version 4" in refused.message
    assert model_card.compare(new, old, "ndcg@10", tolerance=0.03).passed
    assert model_card.compare(old, new, "ndcg@10").passed  # better
    assert model_card.compare(new, new, "ndcg@10").passed  # equal
    # The sampled protocol when asked: there the new model is better.
    worse_sampled = model_card.build_card(CONFIG, metrics=metrics(0.5, sampled_ndcg=0.1))
    assert model_card.compare(new, worse_sampled, "sampled.ndcg@10").passed
    assert not model_card.compare(worse_sampled, new, "sampled.ndcg@10").passed
    # Nothing to compare with: pass, and say why.
    assert "no earlier version" in model_card.compare(new, None, "ndcg@10").message
    assert "version 2 has no card" in model_card.compare(new, None, "ndcg@10", old_version=2).message
    assert model_card.compare(new, model_card.build_card(CONFIG), "ndcg@10", old_version=2).passed
    with pytest.raises(ValueError, match="no validation hr@5"):
        model_card.compare(new, old, "hr@5")
    with pytest.raises(ValueError, match="PROTOCOL.NAME"):
        model_card.compare(new, old, "test.ndcg@10")
    with pytest.raises(ValueError, match="tolerance"):
        model_card.compare(new, old, "ndcg@10", tolerance=-0.1)


# ------------------------------------------------------------------------------------ export and CLI
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Three model directories of one tiny model (random weights: the gate reads only the cards):
    ``legacy`` has metrics.json but no card (trained before cards), ``better`` and ``worse`` have cards."""
    from sasrec_tf._compat import keras
    from sasrec_tf.artifacts import save_trained
    from sasrec_tf.data.vocab import ItemVocabulary

    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    model = SASRec(CONFIG, num_items=12).build_weights()
    legacy = save_trained(root / "legacy", model, ItemVocabulary([f"sku-{i}" for i in range(12)]))
    (legacy / "metrics.json").write_text(json.dumps(metrics(0.25)))
    dirs = {"legacy": legacy}
    for name, ndcg in (("better", 0.27), ("worse", 0.20)):
        dirs[name] = shutil.copytree(legacy, root / name)
        (dirs[name] / "metrics.json").write_text(json.dumps(metrics(ndcg)))
        model_card.write_card(dirs[name], CONFIG, metrics=metrics(ndcg), parent=str(legacy))
    return dirs


def export(model_dir, base, *flags):
    return main(["export", "--model", str(model_dir), "--export-base", str(base), "--name", "rec", "--k", "3",
                 "--no-warmup", *flags])


def test_export_carries_the_card_and_the_gate_publishes_better_refuses_worse_unless_forced(
        model_dirs, tmp_path, capsys):
    base = tmp_path / "serving"
    # No earlier version: published, and said so. The legacy directory's card comes from its metrics.json.
    assert export(model_dirs["legacy"], base, "--gate-on", "ndcg@10") == 0
    assert "no earlier version" in capsys.readouterr().out
    first = model_card.read_card(base / "rec" / "1")
    assert (base / "rec" / "1" / "assets.extra" / model_card.CARD_FILE).is_file()
    assert first["metrics"]["valid"] == metrics(0.25)["valid"] and first["data"] is None
    assert first["export"]["model_name"] == "rec" and first["export"]["version"] == 1
    assert first["export"]["source"] == str(model_dirs["legacy"])

    # Better: published, with the model directory's card (its parent) and the verdict.
    assert export(model_dirs["better"], base, "--gate-on", "ndcg@10") == 0
    assert "0.27 against 0.25 of version 1" in capsys.readouterr().out
    second = model_card.read_card(base / "rec" / "2")
    assert second["parent"] == {"path": str(model_dirs["legacy"])}
    assert second["export"]["gate"]["passed"] and not second["export"]["gate"]["forced"]
    assert {k: v for k, v in second.items() if k != "export"} == model_card.read_card(model_dirs["better"])

    # Worse than version 2: refused in one line naming both values, nothing written.
    before = sorted(p.name for p in (base / "rec").iterdir())
    assert export(model_dirs["worse"], base, "--gate-on", "ndcg@10") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "0.2 is worse than 0.27 of version 2" in err and "--force" in err
    assert sorted(p.name for p in (base / "rec").iterdir()) == before
    # A tolerance smaller than the drop refuses too (0.2 < 0.27 - 0.05).
    assert export(model_dirs["worse"], base, "--gate-on", "ndcg@10", "--gate-tolerance", "0.05") == 2
    assert "tolerance 0.05" in capsys.readouterr().err
    assert sorted(p.name for p in (base / "rec").iterdir()) == before

    # --force publishes it, and the card says the gate was overridden.
    assert export(model_dirs["worse"], base, "--gate-on", "ndcg@10", "--force") == 0
    assert "published anyway (--force)" in capsys.readouterr().out
    gate = model_card.read_card(base / "rec" / "3")["export"]["gate"]
    assert gate["forced"] and not gate["passed"] and math.isclose(gate["old"], 0.27)

    # --force without a gate is a usage error.
    assert export(model_dirs["worse"], base, "--force") == 2
    assert "--gate-on" in capsys.readouterr().err


def test_info_shows_the_card_of_a_model_directory_and_of_the_latest_export_version(model_dirs, tmp_path, capsys):
    assert main(["info", str(model_dirs["better"])]) == 0
    table = capsys.readouterr().out
    assert next(line for line in table.splitlines() if line.startswith("parent")).endswith(str(model_dirs["legacy"]))
    assert "epochs 3, best_epoch 2, stopped max_epochs, wall_seconds 12.5" in table and "hidden_units=8" in table
    valid = next(line for line in table.splitlines() if line.startswith("valid"))
    assert valid.split()[1:4] == ["0.5400", "0.2700", "0.1350"]  # full hr@10, ndcg@10, mrr

    assert main(["info", "--json", str(model_dirs["better"])]) == 0
    assert json.loads(capsys.readouterr().out) == model_card.read_card(model_dirs["better"])

    # A legacy directory: built from its metrics.json, and said so.
    assert main(["info", str(model_dirs["legacy"])]) == 0
    assert "no card.json: built from config.json and metrics.json" in capsys.readouterr().out

    # An export base's model directory: the latest version's card.
    base = tmp_path / "serving"
    assert export(model_dirs["better"], base) == 0 and export(model_dirs["worse"], base) == 0
    capsys.readouterr()
    assert main(["info", "--json", str(base / "rec")]) == 0
    assert json.loads(capsys.readouterr().out)["export"]["version"] == 2
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_gate_lives_in_its_own_module_and_card_keeps_its_old_names():
    from sasrec_tf import gate

    assert model_card.compare is gate.gate_decision is model_card.gate_decision
    assert model_card.GateRefused is gate.GateRefused and model_card.gate_value is gate.gate_value
