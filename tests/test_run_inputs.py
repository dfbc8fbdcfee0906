"""Careless inputs to a run get one clear line (issue 28 items 7–10): a seed out of range named as
`--seed` before the data is read, a pipeline file nested too deeply, ids that would not round-trip
through the model directory's one-id-per-line files, a vocabulary that does not match its model."""

import json

import numpy as np
import pandas as pd
import pytest

from sasrec_tf import SASRecConfig
from sasrec_tf.artifacts import load_trained, read_lines, save_trained
from sasrec_tf.cli import main
from sasrec_tf.config import OptionError
from sasrec_tf.data.errors import DataError
from sasrec_tf.data.ingest import read_interactions
from sasrec_tf.data.vocab import ItemVocabulary
from sasrec_tf.experiment import load_pipeline
from sasrec_tf.recommend import read_user_ids
from sasrec_tf.testing.models import make_trained, small_sasrec

# Every character str.splitlines() breaks on, but \n and \r (refused: a line cannot hold them).
SPLITLINES_ONLY = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("seed", [-1, 2**32, 10**24])
def test_a_seed_out_of_range_is_named_before_anything_is_read(seed, tmp_path, capsys):
    with pytest.raises(OptionError, match=r"seed must be an integer in 0\.\.4294967295"):
        SASRecConfig(seed=seed).validate()
    missing = tmp_path / "no-such-log.csv"  # the data is never opened: the seed fails first
    assert main(["train", "--data", str(missing), "--format", "csv", "--out", str(tmp_path / "o"),
                 "--seed", str(seed)]) == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "0..4294967295" in err and "no-such-log" not in err


def test_a_pipeline_file_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_pipeline(path)


@pytest.mark.parametrize("separator", SPLITLINES_ONLY)
def test_user_ids_with_any_other_line_separator_round_trip(separator, tmp_path):
    users = ["u1", f"odd{separator}user", "u3"]
    (tmp_path / "users.txt").write_bytes("".join(u + "\n" for u in users).encode("utf-8"))
    assert read_lines(tmp_path / "users.txt") == users
    assert read_user_ids(tmp_path / "users.txt") == users


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_ids_holding_a_line_break_are_refused_with_the_line(separator, tmp_path):
    log = tmp_path / "log.csv"
    pd.DataFrame({"user": ["u1", f"bad{separator}user", "u1"], "item": ["a", "b", "c"],
                  "timestamp": [1, 2, 3]}).to_csv(log, index=False)
    with pytest.raises(DataError, match=r"log\.csv:3: user id .* holds a line break"):
        read_interactions(log, "csv")


@pytest.mark.parametrize("column", ["user", "item"])
def test_a_frame_with_a_carriage_return_in_an_id_is_refused(column):
    frame = pd.DataFrame({"user": ["u1", "u2"], "item": ["a", "b"], "timestamp": [1, 2]})
    frame.loc[1, column] = "x\ry"
    with pytest.raises(DataError, match=f"{column} id 'x\\\\ry' holds a line break"):
        read_interactions(frame)


def test_a_user_embedding_model_keeps_every_user_id(tmp_path):
    users = np.array(["u1", "a\u2028b", "c\x1dd", "e\x85f"], dtype=object)
    model = small_sasrec(20, num_users=len(users), use_user_embedding=True, max_len=5, hidden_units=8)
    vocab = ItemVocabulary([f"i{i}" for i in range(20)])
    save_trained(tmp_path / "m", model, vocab, user_ids=users)
    assert read_lines(tmp_path / "m" / "users.txt") == users.tolist()
    with pytest.raises(ValueError, match="line break"):
        save_trained(tmp_path / "n", model, vocab, user_ids=np.array(["ok", "no\nway"], dtype=object))


def test_a_vocabulary_that_does_not_match_its_model_is_refused_by_every_command(tmp_path, capsys):
    trained = make_trained(seed=2)
    directory = save_trained(tmp_path / "m", trained.model, trained.vocab, item_counts=trained.item_counts)
    ItemVocabulary(trained.vocab.ids[:100]).save(directory / "vocab.txt")
    with pytest.raises(ValueError, match=r"vocab\.txt has 100 item ids but model\.keras scores"):
        load_trained(directory)
    log = tmp_path / "log.csv"
    pd.DataFrame({"user": ["u1"] * 4, "item": trained.vocab.ids[:4], "timestamp": range(4)}).to_csv(log, index=False)
    assert main(["evaluate", "--model", str(directory), "--data", str(log), "--format", "csv"]) == 2
    assert "vocab.txt has 100 item ids" in capsys.readouterr().err
    json.loads((directory / "config.json").read_text())  # the directory itself is left as it was


def test_more_sampled_negatives_than_the_catalogue_has_is_refused_before_training(tmp_path, capsys):
    from sasrec_tf.data.synthetic import generate_interactions

    log = tmp_path / "log.csv"
    generate_interactions(num_users=40, num_items=30, seed=1).to_csv(log, index=False)
    code = main(["train", "--data", str(log), "--format", "csv", "--out", str(tmp_path / "o"),
                 "--set", "num_negatives=1000000", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "num_negatives" in err and "at most" in err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_running_out_of_memory_is_one_line_naming_the_settings(monkeypatch, capsys):
    import tensorflow as tf

    from sasrec_tf.cli import info

    def exhausted(args):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[10000000,64]")

    monkeypatch.setattr(info, "run", exhausted)
    assert main(["info", "anything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sasrec-tf: error: out of memory (OOM when allocating") and "--max-len" in err
    assert "Traceback" not in err
