"""An export that holds each item table once: the tables are written from the model file in slices.

Reading ``model.keras`` the Keras way assigns every weight whole: h5py reads the table into an
array, TensorFlow converts that into a tensor, and the tensor is copied into the variable, so
for a moment three copies of the table are resident (and with oneDNN's caching allocator two of
them stay in its pool: measured 1,723 MiB peak for a 244 MiB table on top of 693 MiB of imports).
Then ``tf.saved_model.save`` writes the variable once more.

For a model without item features (whose export scores against the id table itself), the export
instead:

1. builds the model with its item tables as zeros and does not read them from the weights file
   (:func:`defer_item_tables`: the table layers record where their weight is);
2. traces and saves the SavedModel against those zero tables (the graph does not depend on their
   values);
3. rewrites the SavedModel's variables (:func:`write_deferred_tables`): every other variable as
   saved, and each table from the weights file in row blocks of :data:`TABLE_BLOCK_BYTES`, each
   block a slice of the full tensor (``SaveV2`` with a slice spec, the format TF1's partitioned
   variables were saved in), the pieces merged into one bundle (``MergeV2Checkpoints``).

The export then holds one copy of each table (the zeros) plus one block. Restoring is unchanged:
TensorFlow's bundle reader assembles a tensor saved in slices when it is read whole, as
``tf.saved_model.load`` and TF Serving's session loader read it (tests: ``tests/test_export_memory.py``).
A model with item features serves a fused table computed from the id table, so its export reads the
model file the Keras way.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["TABLE_BLOCK_BYTES", "DeferredTable", "defer_item_tables", "write_deferred_tables"]

# Rows of a table written at once: the export's memory above the table itself.
TABLE_BLOCK_BYTES = 16 << 20

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclasses.dataclass(frozen=True)
class DeferredTable:
    """A table weight left at zeros when the model was read, and where its values are."""

    variable: Any  # the tf.Variable (zeros)
    weights_file: str  # the h5 file holding its values
    dataset: str  # their dataset in that file


def defer_item_tables(model, deferred: list[DeferredTable]) -> None:
    """Make ``model``'s item tables (input and, if unshared, output embedding) record their weight's
    dataset in ``deferred`` instead of reading it, when ``model.load_weights`` runs next. A model
    with item features is left as it is (its export computes the fused table from the id table).
    For :func:`sasrec_tf.artifacts.load_model_file`'s ``prepare``."""
    if getattr(model, "uses_item_features", False):
        return
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
    reached from the root by ``model_variables/<index>`` (every path to it names one node)."""
    index = next(i for i, v in enumerate(module.model_variables) if v is variable)
    node = object_graph.nodes[0]
    for name in ("model_variables", str(index)):
        node = object_graph.nodes[next(child.node_id for child in node.children if child.local_name == name)]
    (attribute,) = [a for a in node.attributes if a.name == "VARIABLE_VALUE"]
    return attribute.checkpoint_key


def write_deferred_tables(saved_model_dir: str | os.PathLike[str], module, deferred: list[DeferredTable],
                          block_bytes: int | None = None) -> dict[str, int]:
    """Replace the zero tables in ``saved_model_dir/variables`` by their values in their weights
    files, written in row blocks; every other variable is kept as saved. Returns each table's
    checkpoint key → the number of slices it was written in."""
    import h5py
    import numpy as np
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
        with h5py.File(table.weights_file, "r") as weights:
            dataset = weights[table.dataset]
            rows, columns = dataset.shape
            block_rows = max(1, block_bytes // max(1, columns * dataset.dtype.itemsize))
            starts = range(0, rows, block_rows)
            for start in starts:
                stop = min(rows, start + block_rows)
                prefixes.append(str(parts / f"table-{len(prefixes)}"))
                tf.raw_ops.SaveV2(prefix=prefixes[-1], tensor_names=[key],
                                  shape_and_slices=[f"{rows} {columns} {start},{stop - start}:-"],
                                  tensors=[np.asarray(dataset[start:stop])])
            slices[key] = len(starts)
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=prefixes, destination_prefix=str(merged / prefix.name),
                                  delete_old_dirs=True)
    shutil.rmtree(parts, ignore_errors=True)
    shutil.rmtree(variables)
    os.rename(merged, variables)
    return slices
