"""A local model server that speaks TF Serving's gRPC API (and its REST API, optionally).

It implements ``PredictionService.Predict`` and ``GetModelMetadata`` and
``ModelService.GetModelStatus`` with the stubs of ``tensorflow_serving.apis``, over the export
directory layout ``BASE/NAME/<version>/`` (see :mod:`sasrec_tf.serving.manager` for versions,
policies and labels). It is the embedded default for development and the test double for
clients; in production run ``tensorflow_model_server`` (see ``serving/README.md``).

Status codes follow TF Serving: unknown model or version, or a model with no available version
→ ``NOT_FOUND``; missing/extra input, wrong dtype or rank, a malformed tensor, unknown version
label → ``INVALID_ARGUMENT``; unknown signature → ``FAILED_PRECONDITION`` over gRPC and
``INVALID_ARGUMENT`` (400) over REST; a malformed REST path → 400; other graph errors keep their
canonical code. Classify, Regress, MultiInference and HandleReloadConfigRequest answer
``UNIMPLEMENTED``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures
from typing import Callable, Mapping

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.manager import ModelManager
from sasrec_tf.serving.options import DEFAULTS, LOOPBACK
from sasrec_tf.serving.rest_server import RestHandler, RestServer
from sasrec_tf.serving.tensors import as_proto_field

__all__ = ["LocalModelServer"]

logger = logging.getLogger(__name__)

_STATE_CODES = dict(get_model_status_pb2.ModelVersionStatus.State.items())


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class LocalModelServer:
    """TF Serving's gRPC API over ``BASE/NAME/<version>/`` exports, in a thread pool.

    Defaults: :data:`sasrec_tf.serving.options.DEFAULTS`.

    Args:
        model_base: the export base (``BASE`` of ``BASE/NAME/<version>``).
        model_config_file: TF Serving's ``models.config`` (names, version policy, labels).
        labels: extra version labels, ``{model: {label: version}}``.
        host: the interface to bind; loopback by default (the server has no authentication).
        port: the gRPC port; ``0`` picks a free one (read :attr:`port` after :meth:`start`).
        rest_port: also serve TF Serving's REST API on this port (``0``: a free one).
        poll_seconds: how often to look for new or removed versions (``0``: never).
        max_workers: request threads.
        max_message_bytes: the largest request and response (gRPC message or REST body).
        max_request_elements: the most elements (``rows × width`` summed over the inputs) one
            Predict may hold; larger requests are ``INVALID_ARGUMENT`` (see
            :mod:`sasrec_tf.serving.tensors`).
        max_request_cells: the most float32 values one Predict of an export may compute in its
            largest intermediate (rows × (catalogue + 1) for ``serving_default``); checked with the
            reply's size (against ``max_message_bytes``) before it runs (see
            :mod:`sasrec_tf.serving.cost`).
        rest_read_timeout: seconds a REST client may take to send a whole request (headers and body);
            then it is answered 408 and the connection closed.
        rest_max_connections: REST connections served at once; more are answered 503 and closed.
        clock: the monotonic clock the REST deadline reads (a test may pass its own).
        allow_version_labels_for_unavailable_models: as TF Serving's flag: a *new* label may name a
            version that is not loaded yet (moving an existing label there is always refused).
        load_retries, load_retry_seconds: how often, and how far apart, a failed load is retried
            (TF Serving's ``--max_num_load_retries`` and ``--load_retry_interval_micros``).
        enable_batching: merge concurrent requests to the same signature into batches of up to
            ``max_batch_size`` rows, run by ``num_batch_threads`` threads per signature
            (see :mod:`sasrec_tf.serving.batching`; off by default, as in TF Serving), with at
            most ``max_enqueued_batches`` batches waiting (then ``UNAVAILABLE``), padding merged
            inputs of different widths when ``pad_variable_length_inputs``.
        enable_serialization_as_tensor_content: outputs as ``tensor_content``, not typed value
            fields (TF Serving's flag; off by default, as there).

    Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        model_base: str | os.PathLike[str] | None = None,
        *,
        model_config_file: str | os.PathLike[str] | None = None,
        labels: Mapping[str, Mapping[str, int]] | None = None,
        host: str = DEFAULTS.host,
        port: int = DEFAULTS.port,
        rest_port: int | None = DEFAULTS.rest_port,
        poll_seconds: float = DEFAULTS.poll_seconds,
        max_workers: int = DEFAULTS.max_workers,
        max_message_bytes: int = DEFAULTS.max_message_bytes,
        max_request_elements: int = DEFAULTS.max_request_elements,
        max_request_cells: int = DEFAULTS.max_request_cells,
        rest_read_timeout: float = DEFAULTS.rest_read_timeout,
        rest_max_connections: int = DEFAULTS.rest_max_connections,
        allow_version_labels_for_unavailable_models: bool = DEFAULTS.allow_version_labels_for_unavailable_models,
        load_retries: int = DEFAULTS.load_retries,
        load_retry_seconds: float = DEFAULTS.load_retry_seconds,
        enable_batching: bool = DEFAULTS.enable_batching,
        max_batch_size: int = DEFAULTS.max_batch_size,
        num_batch_threads: int = DEFAULTS.num_batch_threads,
        max_enqueued_batches: int = DEFAULTS.max_enqueued_batches,
        pad_variable_length_inputs: bool = DEFAULTS.pad_variable_length_inputs,
        enable_serialization_as_tensor_content: bool = DEFAULTS.enable_serialization_as_tensor_content,
        clock: Callable[[], float] = time.monotonic,
    ):
        for name, value in (("port", port), ("rest_port", 0 if rest_port is None else rest_port)):
            if not 0 <= int(value) <= 65535:
                raise ValueError(f"{name} must be a TCP port, 1-65535 (or 0 for any free port), got {value}")
        positive = {"max_batch_size": max_batch_size, "num_batch_threads": num_batch_threads,
                    "max_workers": max_workers, "max_message_bytes": max_message_bytes,
                    "max_request_elements": max_request_elements, "max_request_cells": max_request_cells,
                    "rest_max_connections": rest_max_connections, "max_enqueued_batches": max_enqueued_batches}
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not rest_read_timeout > 0:
            raise ValueError(f"rest_read_timeout must be > 0 seconds, got {rest_read_timeout}")
        batching = ({"max_batch_size": max_batch_size, "num_batch_threads": num_batch_threads,
                     "max_enqueued_batches": max_enqueued_batches,
                     "pad_variable_length_inputs": bool(pad_variable_length_inputs)} if enable_batching else None)
        self.tensor_content = bool(enable_serialization_as_tensor_content)
        self.manager = ModelManager(
            model_base, model_config_file, labels, batching=batching,
            allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
            load_retries=load_retries, load_retry_seconds=load_retry_seconds)
        self.host = host
        self._requested_port = int(port)
        self._requested_rest_port = rest_port
        self.poll_seconds = float(poll_seconds)
        self.max_workers = int(max_workers)
        self.max_message_bytes = int(max_message_bytes)
        self.max_request_elements = int(max_request_elements)
        self.max_request_cells = int(max_request_cells)
        self.rest_max_connections = int(rest_max_connections)
        self.clock = clock
        self.rest_read_timeout = float(rest_read_timeout)
        self.port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._http: RestServer | None = None
        self._http_thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def address(self) -> str:
        """``host:port`` of the gRPC endpoint (after :meth:`start`)."""
        return _host_port(self.host, self.port)

    def start(self) -> "LocalModelServer":
        """Load the models (first poll), bind, and serve in background threads.

        Raises:
            ValueError: a bad ``models.config``, or a label naming a version that is not available.
            OSError: the port cannot be bound.
        """
        try:
            self.manager.start(self.poll_seconds)
        except BaseException:
            self.manager.stop()
            raise
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                        thread_name_prefix="sasrec-grpc"), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionServicer(self), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self), server)
        try:
            port = server.add_insecure_port(_host_port(self.host, self._requested_port))
        except RuntimeError as err:
            port, cause = 0, err
        else:
            cause = None
        if not port:
            self.manager.stop()
            raise OSError(f"cannot bind gRPC to {_host_port(self.host, self._requested_port)} "
                          f"(port in use or bad host){f': {cause}' if cause else ''}")
        self.port = port
        server.start()
        self._grpc = server
        if self._requested_rest_port is not None:
            handler = type("_Handler", (RestHandler,), {"model_server": self, "timeout": self.rest_read_timeout})
            self._http = RestServer((self.host, int(self._requested_rest_port)), handler, self.rest_max_connections)
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True, name="sasrec-rest")
            self._http_thread.start()
        if self.host not in (LOOPBACK, "localhost", "::1"):
            logger.warning("serving on %s: this server has no authentication or TLS", self.host)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting requests, let running ones finish (up to ``grace`` seconds), stop polling."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        self.manager.stop()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from another thread or a signal handler)."""
        if self._grpc is not None:
            self._grpc.wait_for_termination()

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- the API
    def _servable(self, spec):
        if not spec.name:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
        choice = spec.WhichOneof("version_choice")
        version = spec.version.value if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        return self.manager.resolve(spec.name, version, label)

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        servable = self._servable(request.model_spec)
        signature = request.model_spec.signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        outputs = servable.run_proto(signature, request.inputs, request.output_filter,
                                     max_elements=self.max_request_elements, max_cells=self.max_request_cells,
                                     max_reply_bytes=self.max_message_bytes)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(as_proto_field(value, tensor_content=self.tensor_content))
        return response

    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest):
        fields = list(request.metadata_field)
        if not fields:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              "GetModelMetadataRequest must specify at least one metadata_field")
        unsupported = [f for f in fields if f != "signature_def"]
        if unsupported:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Metadata field {unsupported[0]!r} is not supported (only 'signature_def')")
        servable = self._servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.all_signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest):
        """Every version's state; a ``version_label`` is ignored (all versions), as in TF Serving."""
        spec = request.model_spec
        if not spec.name:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
        choice = spec.WhichOneof("version_choice")
        rows = self.manager.status(spec.name, spec.version.value if choice == "version" else None)
        response = get_model_status_pb2.GetModelStatusResponse()
        for row in rows:
            status = response.model_version_status.add(version=row.version, state=_STATE_CODES[row.state])
            status.status.error_code = row.error_code.value[0]
            status.status.error_message = row.error_message
        return response


# --------------------------------------------------------------------------------------- gRPC
def _handle(context, method, request):
    try:
        return method(request)
    except StatusError as err:
        context.abort(err.code, err.message)
    except Exception as err:  # noqa: BLE001 - never leak a stack trace to the client
        logger.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: LocalModelServer):
        self._server = server

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return _handle(context, self._server.predict, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _handle(context, self._server.get_model_metadata, request)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: LocalModelServer):
        self._server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        return _handle(context, self._server.get_model_status, request)
