"""An export that holds each item table once: the tables are written from the model file in slices.

Reading ``model.keras`` the Keras way assigns every weight whole: h5py reads the table into an
array, TensorFlow converts that into a tensor, and the tensor is copied into the variable, so
for a moment three copies of the table are resident (and with oneDNN's caching allocator two of
them stay in its pool: measured 1,723 MiB peak for a 244 MiB table on top of 693 MiB of imports).
Then ``tf.saved_model.save`` writes the variable once more.

The export of a model directory instead:

1. builds the model with its item tables as zeros and does not read them from the weights file
   (:func:`defer_item_tables`: the table layers record where their weight is);
2. traces and saves the SavedModel against those zero tables (the graph does not depend on their
   values);
3. rewrites the SavedModel's variables (:func:`write_deferred_tables`): every other variable as
   saved, and each table from the weights file in row blocks of :data:`TABLE_BLOCK_BYTES`, each
   block a slice of the full tensor (``SaveV2`` with a slice spec, the format TF1's partitioned
   variables were saved in), the pieces merged into one bundle (``MergeV2Checkpoints``).

A model with item features serves a fused table (each item's id row fused with its attributes,
or its cold tower's vector) beside its id table: the serving module computes it in row blocks
(:func:`fill_fused_table`), and a model directory's export writes it as one more deferred table
(:class:`FusedTable`), each block fused from the id table's block as it is read.

The export then holds one copy of each table (the zeros) plus one block. Restoring is unchanged:
TensorFlow's bundle reader assembles a tensor saved in slices when it is read whole, as
``tf.saved_model.load`` and TF Serving's session loader read it (tests: ``tests/test_export_memory.py``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["TABLE_BLOCK_BYTES", "DeferredTable", "FusedTable", "defer_item_tables", "fused_table",
           "fusion_block_bytes", "write_deferred_tables"]

# Rows of a table written at once: the export's memory above the table itself.
TABLE_BLOCK_BYTES = 16 << 20

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclasses.dataclass(frozen=True)
class DeferredTable:
    """A table weight left at zeros when the model was read, and where its values are."""

    variable: Any  # the tf.Variable (zeros)
    weights_file: str  # the h5 file holding its values
    dataset: str  # their dataset in that file

    def blocks(self, block_bytes: int):
        """``(start, stop, rows)`` over the table in row blocks of at most ``block_bytes``."""
        import h5py
        import numpy as np

        with h5py.File(self.weights_file, "r") as weights:
            dataset = weights[self.dataset]
            for start, stop in _row_blocks(dataset.shape, dataset.dtype.itemsize, block_bytes):
                yield start, stop, np.asarray(dataset[start:stop])


@dataclasses.dataclass(frozen=True)
class FusedTable:
    """The serving module's fused item table of a model with item features (zeros until written),
    computed block by block from the deferred id table it fuses (:func:`fused_rows`)."""

    variable: Any  # the serving module's item matrix
    source: DeferredTable  # the id table of the prediction layer
    model: Any  # the SASRec, its attribute weights read

    def blocks(self, block_bytes: int):
        for start, stop, rows in self.source.blocks(fusion_block_bytes(self.model, block_bytes)):
            yield start, stop, fused_rows(self.model, rows, start).numpy()


def fusion_block_bytes(model, block_bytes: int) -> int:
    """The id rows fused at once for a block of ``block_bytes``: fusing gathers ``[rows, attributes,
    d]`` (twice with the cold tower), so a block of table rows is divided by the attributes per item
    (1M x 64, 6 attributes, 16 MiB blocks: the fill left 470 MiB resident undivided)."""
    return max(1, int(block_bytes) // max(1, int(model.item_representation.max_attributes)))


def _row_blocks(shape, itemsize: int, block_bytes: int):
    rows, columns = shape
    block_rows = max(1, block_bytes // max(1, columns * itemsize))
    return [(start, min(rows, start + block_rows)) for start in range(0, rows, block_rows)]


def fused_rows(model, id_rows, start: int):
    """The served vectors of items ``start, start + 1, ...`` of a model with item features, from
    their rows ``id_rows`` of the prediction layer's id table (as ``model.item_embeddings()``'s
    rows, outside training)."""
    import tensorflow as tf

    id_rows = tf.convert_to_tensor(id_rows, tf.float32)
    return model.item_representation(id_rows, tf.range(start, start + tf.shape(id_rows)[0]), training=False)


def fused_table(model, block_bytes: int | None = None):
    """``model.item_embeddings()`` of a model with item features as a float32 array ``[N + 1, d]``,
    fused in row blocks: fusing every item at once gathers ``[N + 1, attributes, d]`` (6 tables'
    worth on the Amazon logs) where a block holds one block's. The rows are read by ``sparse_read``
    (a slice of the variable reads the whole table) and written into the array, not into a
    variable: a scatter into a variable leaves it copying itself on every later dense read."""
    import numpy as np
    import tensorflow as tf

    table = (model.output_item_embedding or model.item_embedding).embeddings
    out = np.empty(table.shape, np.float32)
    block_bytes = fusion_block_bytes(model, TABLE_BLOCK_BYTES if block_bytes is None else block_bytes)
    for start, stop in _row_blocks(table.shape, table.dtype.size, block_bytes):
        out[start:stop] = fused_rows(model, table.sparse_read(tf.range(start, stop)), start).numpy()
    return out


def defer_item_tables(model, deferred: list[DeferredTable]) -> None:
    """Make ``model``'s item tables (input and, if unshared, output embedding) record their weight's
    dataset in ``deferred`` instead of reading it, when ``model.load_weights`` runs next (a model
    with item features: its id tables; the attribute weights are read). For
    :func:`sasrec_tf.artifacts.load_model_file`'s ``prepare``."""
    for layer in (model.item_embedding, model.output_item_embedding):
        if layer is None:
            continue

        def load_own_variables(store, layer=layer):
            (variable,) = layer.weights  # an Embedding has one weight
            if list(store.keys()) != ["0"]:
                raise ValueError(f"layer {layer.name!r} expected 1 variable in the weights file, got "
                                 f"{len(store.keys())}")
            dataset = store["0"]
            if tuple(dataset.shape) != tuple(variable.shape) or dataset.dtype != variable.dtype.as_numpy_dtype:
                raise ValueError(f"layer {layer.name!r}: the weights file holds {dataset.dtype}{tuple(dataset.shape)}, "
                                 f"the model {variable.dtype.name}{tuple(variable.shape)}")
            deferred.append(DeferredTable(variable=variable, weights_file=dataset.file.filename, dataset=dataset.name))

        layer.load_own_variables = load_own_variables


def _checkpoint_key(object_graph, module, variable) -> str:
    """The key under which ``tf.saved_model.save(module, ...)`` stored ``variable``: the node
    reached from the root by ``model_variables/<index>``, or ``_item_matrix`` for the module's
    fused table (every path to it names one node)."""
    if variable is module._item_matrix and not any(v is variable for v in module.model_variables):
        path = ("_item_matrix",)
    else:
        path = ("model_variables", str(next(i for i, v in enumerate(module.model_variables) if v is variable)))
    node = object_graph.nodes[0]
    for name in path:
        node = object_graph.nodes[next(child.node_id for child in node.children if child.local_name == name)]
    (attribute,) = [a for a in node.attributes if a.name == "VARIABLE_VALUE"]
    return attribute.checkpoint_key


def write_deferred_tables(saved_model_dir: str | os.PathLike[str], module, deferred: list,
                          block_bytes: int | None = None) -> dict[str, int]:
    """Replace the zero tables in ``saved_model_dir/variables`` by their values (a
    :class:`DeferredTable`'s in its weights file, a :class:`FusedTable`'s fused from one), written
    in row blocks; every other variable is kept as saved. Returns each table's checkpoint key → the
    number of slices it was written in."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    block_bytes = TABLE_BLOCK_BYTES if block_bytes is None else int(block_bytes)
    variables = Path(saved_model_dir) / tf.saved_model.VARIABLES_DIRECTORY
    prefix = variables / tf.saved_model.VARIABLES_FILENAME
    reader = tf.train.load_checkpoint(str(prefix))
    object_graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    tables = {_checkpoint_key(object_graph, module, table.variable): table for table in deferred}
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for key, table in tables.items():
        if shapes.get(key) != list(table.variable.shape):
            raise RuntimeError(f"the SavedModel holds {key!r} as {shapes.get(key)}, the table is {table.variable.shape}")

    parts = variables.with_name(variables.name + ".parts")
    merged = variables.with_name(variables.name + ".merged")
    for scratch in (parts, merged):
        shutil.rmtree(scratch, ignore_errors=True)
    parts.mkdir()
    prefixes = [str(parts / "rest")]
    others = sorted(key for key in shapes if key not in tables)
    tf.raw_ops.SaveV2(prefix=prefixes[0], tensor_names=others, shape_and_slices=[""] * len(others),
                      tensors=[tf.constant(reader.get_tensor(key), dtype=dtypes[key]) for key in others])
    slices = {}
    for key, table in tables.items():
        rows, columns = table.variable.shape
        slices[key] = 0
        for start, stop, block in table.blocks(block_bytes):
            prefixes.append(str(parts / f"table-{len(prefixes)}"))
            tf.raw_ops.SaveV2(prefix=prefixes[-1], tensor_names=[key],
                              shape_and_slices=[f"{rows} {columns} {start},{stop - start}:-"], tensors=[block])
            slices[key] += 1
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=str(merged / prefix.name),
                                  delete_old_dirs=True)
    shutil.rmtree(parts, ignore_errors=True)
    shutil.rmtree(variables)
    os.rename(merged, variables)
    return slices
