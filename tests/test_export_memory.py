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


def test_the_export_of_a_model_directory_never_reads_its_item_tables_into_the_model(tmp_path):
    # defer_item_tables: the tables stay zeros and name their datasets; every other weight is read.
    from sasrec_tf.artifacts import load_trained, save_trained
    from sasrec_tf.export.publish import _zeros_until_loaded
    from sasrec_tf.export.tables import defer_item_tables

    trained = make_trained(num_items=NUM_ITEMS, share_item_embedding=False)
    save_trained(tmp_path / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    deferred = []
    with tf.variable_creator_scope(_zeros_until_loaded):
        loaded = load_trained(tmp_path / "model", weights_dir=tmp_path / "w",
                              prepare=lambda model: defer_item_tables(model, deferred))
    tables = [loaded.model.item_embedding.embeddings, loaded.model.output_item_embedding.embeddings]
    assert sorted(id(t.variable) for t in deferred) == sorted(id(t) for t in tables)
    assert (tmp_path / "w" / "model.weights.h5").is_file()
    assert len({t.dataset for t in deferred}) == 2
    for saved, got in zip(trained.model.weights, loaded.model.weights):
        if any(got is table for table in tables):
            assert not got.numpy().any(), got.name
        else:
            np.testing.assert_array_equal(got.numpy(), saved.numpy(), err_msg=saved.name)


def _data_files(version) -> list:
    return sorted((version / "variables").glob("variables.data-*"))


def test_a_directory_exports_its_tables_in_row_blocks_that_load_whole(tmp_path, monkeypatch):
    # Blocks of 10 rows (16 floats each): the input and the output tables of 151 rows in 16 slices
    # each, merged into one bundle with the other weights (1 + 32 data files); tf.saved_model.load
    # reads them whole, equal to the model's, and the signatures score as the model does.
    from sasrec_tf.artifacts import save_trained
    from sasrec_tf.export import tables

    monkeypatch.setattr(tables, "TABLE_BLOCK_BYTES", 10 * D * 4)
    trained = make_trained(num_items=NUM_ITEMS, share_item_embedding=False)
    save_trained(tmp_path / "model", trained.model, trained.vocab, item_counts=trained.item_counts)
    seen = []
    version = export_saved_model(tmp_path / "model", tmp_path / "exports", "m", k=5, warmup=False,
                                 progress=lambda *step: seen.append(step[0]))
    assert "item tables written in 16/16 slices" in seen[1]
    assert len(_data_files(version)) == 1 + 32
    assert not list(version.glob("variables.*")) and not list(version.parent.glob(".tmp-export-*"))
    loaded = tf.saved_model.load(str(version))
    ids = tf.constant(np.array(trained.vocab.ids, dtype=object))
    embeddings = loaded.signatures["item_embeddings"](item_ids=ids)["embeddings"].numpy()
    np.testing.assert_array_equal(embeddings, trained.model.output_item_embedding.embeddings.numpy()[1:])
    history = np.array([["sku-3", "sku-9", "café-7", "sku-40"]], dtype=object)
    dense = trained.vocab.encode(history[0])
    query = trained.model.query_embeddings(tf.constant(dense[None], tf.int32)).numpy()
    served = loaded.signatures["embed"](history=tf.constant(history))
    np.testing.assert_allclose(served["embedding"].numpy(), query, rtol=1e-5, atol=1e-6)
    in_memory = export_saved_model(trained, tmp_path / "exports", "m", k=5, warmup=False)  # the Keras way
    assert len(_data_files(in_memory)) == 1
    reference, written = (tf.train.load_checkpoint(str(v / "variables" / "variables")) for v in (in_memory, version))
    assert reference.get_variable_to_shape_map() == written.get_variable_to_shape_map()
    for key in reference.get_variable_to_shape_map():
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH":
            np.testing.assert_array_equal(written.get_tensor(key), reference.get_tensor(key), err_msg=key)


def test_a_feature_model_directory_exports_its_id_and_fused_tables_in_row_blocks(tmp_path, monkeypatch):
    # A model with item features (gate fusion, 4 attributes per item, cold items served by their
    # attributes): the id table is written in blocks of 40 rows (4 slices), the fused table the
    # signatures score against in blocks of 40 / 4 attributes = 10 rows (16 slices), each fused
    # from the id table's rows as they are read; every tensor equals the in-memory export's, and
    # the served vectors are the model's.
    from test_item_features_export import feature_trained

    from sasrec_tf.artifacts import save_trained
    from sasrec_tf.export import tables

    monkeypatch.setattr(tables, "TABLE_BLOCK_BYTES", 40 * D * 4)
    trained = feature_trained(fusion="gate")
    save_trained(tmp_path / "model", trained.model, trained.vocab, item_counts=trained.item_counts,
                 attribute_names=trained.attribute_names)
    seen = []
    version = export_saved_model(tmp_path / "model", tmp_path / "exports", "m", k=5, warmup=False,
                                 progress=lambda *step: seen.append(step[0]))
    assert "item tables written in 4/16 slices" in seen[1]
    assert len(_data_files(version)) == 1 + 20
    loaded = tf.saved_model.load(str(version))
    ids = tf.constant(np.array(trained.vocab.ids, dtype=object))
    embeddings = loaded.signatures["item_embeddings"](item_ids=ids)["embeddings"].numpy()
    np.testing.assert_allclose(embeddings, trained.model.item_embeddings().numpy()[1:], rtol=1e-6, atol=1e-7)
    in_memory = export_saved_model(trained, tmp_path / "exports", "m", k=5, warmup=False)
    reference, written = (tf.train.load_checkpoint(str(v / "variables" / "variables")) for v in (in_memory, version))
    assert reference.get_variable_to_shape_map() == written.get_variable_to_shape_map()
    for key in reference.get_variable_to_shape_map():
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH":
            np.testing.assert_allclose(written.get_tensor(key), reference.get_tensor(key), rtol=1e-6, atol=1e-7,
                                       err_msg=key)


def test_the_fused_table_is_filled_in_row_blocks_equal_to_the_whole(monkeypatch):
    # The serving module fuses the table block by block (every item at once gathers
    # [N + 1, attributes, d]); the blocks, the last one short, make the model's whole table.
    from test_item_features_export import feature_trained

    from sasrec_tf.export.tables import fused_table

    for fusion in ("sum", "concat", "gate"):
        model = feature_trained(fusion=fusion).model
        table = fused_table(model, block_bytes=4 * 7 * D * 4)  # 4 attributes: 151 rows in 21 blocks of 7, one of 4
        np.testing.assert_allclose(table, model.item_embeddings().numpy(), rtol=1e-6, atol=1e-7, err_msg=fusion)
