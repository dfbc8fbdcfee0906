"""Reading ``model.keras``: the same model as ``keras.models.load_model``, without h5py seeking
inside the zip (which made a 768 MB file at 1M items take minutes), and no scratch file left."""

from __future__ import annotations

import tempfile
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.artifacts import load_model_file
from sasrec_tf.testing.models import small_sasrec

IDS = tf.constant([[0, 0, 3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8, 9, 7]])
CONFIGS = [dict(), dict(num_heads=2, frequency_mixing=0.7, layer_norm="pre", ffn_activation="swiglu", ffn_units=16)]


@pytest.mark.parametrize("config", CONFIGS, ids=["paper", "variants"])
def test_the_file_reads_as_keras_reads_it(tmp_path, config):
    model = small_sasrec(30, init_seed=4, max_len=8, hidden_units=8, **config)
    model.save(tmp_path / "model.keras")
    ours = load_model_file(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert ours.config == theirs.config == model.config
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ours(IDS, training=False).numpy(), model(IDS, training=False).numpy())


def test_the_weights_are_never_read_by_seeking_inside_the_zip(tmp_path, monkeypatch):
    model = small_sasrec(30, init_seed=4, max_len=8, hidden_units=8)
    model.save(tmp_path / "model.keras")
    seeks = []
    real = zipfile.ZipExtFile.seek
    monkeypatch.setattr(zipfile.ZipExtFile, "seek", lambda self, *a, **k: seeks.append(a) or real(self, *a, **k))
    keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert seeks  # Keras' own reader: h5py seeks in the member (each backward seek re-reads it)
    seeks.clear()
    load_model_file(tmp_path / "model.keras")
    assert seeks == []


def test_no_scratch_file_is_left_after_a_load_or_a_failed_one(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    small_sasrec(30, init_seed=4, max_len=8, hidden_units=8).save(tmp_path / "model.keras")
    load_model_file(tmp_path / "model.keras")
    assert list(scratch.iterdir()) == []
    # Another model's weights under this model's config: the load fails and cleans up.
    small_sasrec(30, init_seed=4, max_len=8, hidden_units=16).save(tmp_path / "other.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as a, zipfile.ZipFile(tmp_path / "other.keras") as b, \
            zipfile.ZipFile(tmp_path / "mixed.keras", "w") as mixed:
        for name in a.namelist():
            mixed.writestr(name, (b if name == "model.weights.h5" else a).read(name))
    with pytest.raises(ValueError):
        load_model_file(tmp_path / "mixed.keras")
    assert list(scratch.iterdir()) == []
