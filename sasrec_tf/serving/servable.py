"""One loaded SavedModel version: its signatures, input checks with TF Serving's status codes, warmup."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from sasrec_tf.export.contract import ASSETS_EXTRA_DIR, WARMUP_FILE
from sasrec_tf.serving.batching import Batcher
from sasrec_tf.serving.cost import ExportCost
from sasrec_tf.serving.errors import StatusError, status_code_from_int
from sasrec_tf.serving.options import DEFAULTS
from sasrec_tf.serving.tensors import DEFAULT_MAX_REQUEST_ELEMENTS, check_request_protos, to_ndarray

__all__ = ["Servable", "read_signature_defs", "dtype_name"]

SERVE_TAG = "serve"
WARMUP_PATH = Path(ASSETS_EXTRA_DIR) / WARMUP_FILE
_MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def dtype_name(dtype_enum: int) -> str:
    """``types_pb2.DT_STRING`` → ``"DT_STRING"``."""
    return types_pb2.DataType.Name(dtype_enum) if dtype_enum in types_pb2.DataType.values() else str(dtype_enum)


def read_signature_defs(path: str | os.PathLike[str]) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the ``serve`` MetaGraph in ``path/saved_model.pb``."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{path}: no MetaGraph with tag {SERVE_TAG!r}")


class Servable:
    """A SavedModel version loaded with ``tf.saved_model.load``, callable by signature name.

    ``run`` is thread-safe; many requests may run at once. Inputs are checked against the
    SignatureDef as TF Serving does: a missing or extra input, a wrong dtype or rank raise
    :class:`StatusError` with ``INVALID_ARGUMENT``, an unknown signature ``FAILED_PRECONDITION``;
    errors raised by the graph keep their canonical code.
    """

    def __init__(self, name: str, version: int, path: str | os.PathLike[str], *,
                 batching: Mapping[str, int] | None = None):
        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self._loaded = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
        self.functions = dict(self._loaded.signatures)
        defs = read_signature_defs(self.path)
        self.all_signature_defs = defs  # GetModelMetadata lists them all, __saved_model_init_op included
        self.signature_defs = {key: defs[key] for key in self.functions}
        self.cost = ExportCost.read(self.path)  # None: not a sasrec-tf export, no cost bound
        self._calls = {key: functools.partial(_call_numpy, function) for key, function in self.functions.items()}
        self._batchers = {}
        if batching is not None:  # one Batcher per signature (see sasrec_tf.serving.batching)
            self._batchers = {key: Batcher(call, name=f"batch-{name}-{version}-{key}", **batching)
                              for key, call in self._calls.items()}
            self._calls.update(self._batchers)

    def close(self) -> None:
        """Stop the batching threads once queued requests are done (the version is unloaded)."""
        for batcher in self._batchers.values():
            batcher.close()

    # ----------------------------------------------------------------------------- checks
    def signature(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        key = signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        try:
            return self.signature_defs[key]
        except KeyError:
            raise StatusError(  # TF Serving's gRPC code; its REST API answers INVALID_ARGUMENT
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Serving signature key {key!r} not found in model {self.name!r} version {self.version}; "
                f"available: {sorted(self.signature_defs)}",
            ) from None

    def check_inputs(self, signature_name: str, given: Mapping[str, tuple[int, tuple[int, ...]]]) -> None:
        """Check ``{input: (dtype enum, shape)}`` against the signature; raise INVALID_ARGUMENT."""
        key = signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        signature = self.signature(key)
        expected = signature.inputs
        missing = sorted(set(expected) - set(given))
        extra = sorted(set(given) - set(expected))
        if missing or extra:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {key!r} takes inputs {sorted(expected)}; missing {missing}, unexpected {extra}",
            )
        for input_name, (dtype, shape) in given.items():
            info = expected[input_name]
            if dtype != info.dtype:
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {input_name!r} of signature {key!r} must be {dtype_name(info.dtype)}, "
                    f"got {dtype_name(dtype)}",
                )
            if not info.tensor_shape.unknown_rank:
                dims = [d.size for d in info.tensor_shape.dim]
                fits = len(dims) == len(shape) and all(d < 0 or d == s for d, s in zip(dims, shape))
                if not fits:
                    want = "[" + ", ".join("None" if d < 0 else str(d) for d in dims) + "]"
                    raise StatusError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"input {input_name!r} of signature {key!r} must have shape {want}, got {list(shape)}",
                    )

        sizes = {name: shape[0] for name, (_, shape) in given.items() if len(shape) >= 1}
        if len(set(sizes.values())) > 1:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the inputs of signature {key!r} must have the same batch size (dimension 0), got {sizes}",
            )

    def check_cost(self, signature_name: str, shapes: Mapping[str, tuple[int, ...]], *,
                   max_cells: int = DEFAULTS.max_request_cells,
                   max_reply_bytes: int = DEFAULTS.max_message_bytes) -> None:
        """What the request would compute and answer, against the limits (:mod:`sasrec_tf.serving.cost`)."""
        if self.cost is not None:
            key = signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
            self.cost.check(key, shapes, max_cells=max_cells, max_reply_bytes=max_reply_bytes)

    # ----------------------------------------------------------------------------- running
    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter=()) -> dict[str, np.ndarray]:
        """Run a signature on checked inputs; returns ``{output: array}`` (all or ``output_filter``)."""
        key = signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        signature = self.signature(key)
        wanted = list(output_filter) or list(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names {unknown}, which signature {key!r} does not output; "
                f"outputs: {sorted(signature.outputs)}",
            )
        try:
            outputs = self._calls[key](inputs)
        except tf.errors.OpError as err:
            raise StatusError(status_code_from_int(err.error_code), _op_error_message(err.message)) from None
        except (TypeError, ValueError) as err:  # conversion of a malformed input
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, str(err).split("\n")[0]) from None
        return {name: outputs[name] for name in wanted}

    def run_proto(self, signature_name: str, inputs, output_filter=(), *,
                  max_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS, max_cells: int = DEFAULTS.max_request_cells,
                  max_reply_bytes: int = DEFAULTS.max_message_bytes) -> dict[str, np.ndarray]:
        """:meth:`run` for a ``map<string, TensorProto>`` (a PredictRequest's ``inputs``).

        Shapes, content sizes and the request's size (``max_elements``, see
        :mod:`sasrec_tf.serving.tensors`) are checked, then the signature, before any tensor is
        decoded, and what it would cost (``max_cells``, ``max_reply_bytes``) before it runs.
        """
        shapes = check_request_protos(inputs, max_elements)
        self.check_inputs(signature_name, {key: (proto.dtype, shapes[key]) for key, proto in inputs.items()})
        self.check_cost(signature_name, shapes, max_cells=max_cells, max_reply_bytes=max_reply_bytes)
        arrays = {key: to_ndarray(key, proto) for key, proto in inputs.items()}
        return self.run(signature_name, arrays, output_filter)

    def warmup(self) -> int:
        """Replay ``assets.extra/tf_serving_warmup_requests`` as TF Serving does; returns the count.

        Raises:
            StatusError: a record fails, the file holds more than 1,000 records (TF Serving's
                limit), or a record is not a Predict log: TF Serving would run a classify or
                regress log against a signature of that kind, which this server does not
                implement, so the load fails here rather than skipping it silently. The version is
                then not served, as in TF Serving.
        """
        path = self.path / WARMUP_PATH
        if not path.exists():
            return 0
        records = [record.numpy() for record in tf.data.TFRecordDataset(str(path)).take(_MAX_WARMUP_RECORDS + 1)]
        if len(records) > _MAX_WARMUP_RECORDS:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Number of warmup records exceeds the maximum ({_MAX_WARMUP_RECORDS}) at {path}")
        for index, record in enumerate(records):
            log = prediction_log_pb2.PredictionLog.FromString(record)
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise StatusError(grpc.StatusCode.UNIMPLEMENTED,
                                  f"warmup record {index} of {path} is a {kind}; this server replays only "
                                  f"predict_log records")
            request = log.predict_log.request
            self.run_proto(request.model_spec.signature_name, request.inputs, request.output_filter)
        return len(records)


def _op_error_message(message: str) -> str:
    """The informative line of a TensorFlow runtime error (not the trace or node boilerplate)."""
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(("Graph execution error", "Detected at node",
                                                                      "<stack traces", "[[{{node", "File "))]
    return useful[0].split(" [[{{node")[0] if useful else message.strip()


def _call_numpy(function, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in function(**inputs).items()}
