"""The export holds the item table once: no transposed (or other) copy beside the model's own table,
in the serving module or in the SavedModel's variables, so exporting a catalogue of millions needs
the table's memory once (``benchmarks/catalog_scale.py`` measures it at 1M items)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sasrec_tf.export import SASRecServingModule, export_saved_model
from sasrec_tf.testing.models import make_trained

NUM_ITEMS, D = 150, 16


def _saved_floats(version) -> dict[str, list[int]]:
    reader = tf.train.load_checkpoint(str(version / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    return {name: shapes[name] for name, dtype in reader.get_variable_to_dtype_map().items() if dtype == tf.float32}


def test_saved_model_stores_one_item_table_and_the_popularity(tmp_path):
    trained = make_trained(num_items=NUM_ITEMS)
    version = export_saved_model(trained, tmp_path, "m", k=5, warmup=False)
    floats = _saved_floats(version)
    table_sized = {name: shape for name, shape in floats.items() if int(np.prod(shape)) >= (NUM_ITEMS + 1) * D}
    assert list(table_sized.values()) == [[NUM_ITEMS + 1, D]], table_sized  # before: also [d + 1, N + 1]
    # Everything saved: the model's float weights and one popularity vector [N + 1], nothing more.
    model_floats = sum(v.shape.num_elements() for v in trained.model.variables if v.dtype == tf.float32)
    assert sum(int(np.prod(shape)) for shape in floats.values()) == model_floats + NUM_ITEMS + 1


def test_serving_module_tracks_no_table_beside_the_models(tmp_path):
    trained = make_trained(num_items=NUM_ITEMS)
    vocab = tmp_path / "vocab.txt"
    trained.vocab.save(vocab)
    module = SASRecServingModule(trained.model, vocab, trained.item_counts, k=5)
    model_ids = {id(v) for v in trained.model.variables}
    extra = [v for v in module.variables if id(v) not in model_ids]
    assert [v.shape.as_list() for v in extra] == [[NUM_ITEMS + 1]]  # the popularity only


def test_model_directory_loads_the_same_weights_with_zero_initial_values(tmp_path):
    # The export loads a model directory with every float weight created as zeros (the file's
    # values replace them): the loaded weights must be exactly the saved ones.
    from sasrec_tf.artifacts import load_trained, save_trained
    from sasrec_tf.export.publish import _zeros_until_loaded

    trained = make_trained(num_items=NUM_ITEMS)
    save_trained(tmp_path / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    with tf.variable_creator_scope(_zeros_until_loaded):
        loaded = load_trained(tmp_path / "model")
    assert [w.name for w in loaded.model.weights] == [w.name for w in trained.model.weights]
    for saved, got in zip(trained.model.weights, loaded.model.weights):
        np.testing.assert_array_equal(got.numpy(), saved.numpy(), err_msg=saved.name)
