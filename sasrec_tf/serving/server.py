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

import json
import logging
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Mapping

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from sasrec_tf.serving import rest
from sasrec_tf.serving.errors import HTTP_STATUS, StatusError
from sasrec_tf.serving.manager import ModelManager
from sasrec_tf.serving.options import DEFAULTS, LOOPBACK
from sasrec_tf.serving.tensors import check_request_arrays

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
        rest_read_timeout: seconds a REST connection may take to send a request before it is closed.
        allow_version_labels_for_unavailable_models: as TF Serving's flag: a *new* label may name a
            version that is not loaded yet (moving an existing label there is always refused).
        load_retries, load_retry_seconds: how often, and how far apart, a failed load is retried
            (TF Serving's ``--max_num_load_retries`` and ``--load_retry_interval_micros``).
        enable_batching: merge concurrent requests to the same signature into batches of up to
            ``max_batch_size`` rows, run by ``num_batch_threads`` threads per signature
            (see :mod:`sasrec_tf.serving.batching`; off by default, as in TF Serving).

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
        rest_read_timeout: float = DEFAULTS.rest_read_timeout,
        allow_version_labels_for_unavailable_models: bool = DEFAULTS.allow_version_labels_for_unavailable_models,
        load_retries: int = DEFAULTS.load_retries,
        load_retry_seconds: float = DEFAULTS.load_retry_seconds,
        enable_batching: bool = DEFAULTS.enable_batching,
        max_batch_size: int = DEFAULTS.max_batch_size,
        num_batch_threads: int = DEFAULTS.num_batch_threads,
    ):
        for name, value in (("port", port), ("rest_port", 0 if rest_port is None else rest_port)):
            if not 0 <= int(value) <= 65535:
                raise ValueError(f"{name} must be a TCP port, 1-65535 (or 0 for any free port), got {value}")
        positive = {"max_batch_size": max_batch_size, "num_batch_threads": num_batch_threads,
                    "max_workers": max_workers, "max_message_bytes": max_message_bytes,
                    "max_request_elements": max_request_elements}
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not rest_read_timeout > 0:
            raise ValueError(f"rest_read_timeout must be > 0 seconds, got {rest_read_timeout}")
        batching = ({"max_batch_size": max_batch_size, "num_batch_threads": num_batch_threads}
                    if enable_batching else None)
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
        self.rest_read_timeout = float(rest_read_timeout)
        self.port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
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
            handler = type("_Handler", (_RestHandler,), {"model_server": self, "timeout": self.rest_read_timeout})
            self._http = ThreadingHTTPServer((self.host, int(self._requested_rest_port)), handler)
            self._http.daemon_threads = True
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
                                     max_elements=self.max_request_elements)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
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


# --------------------------------------------------------------------------------------- REST
_REST_PATH = re.compile(  # TF Serving matches these case-insensitively; anything else is a 400
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[a-z]+)|/(?P<metadata>metadata))?$", re.IGNORECASE,
)


class _RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API: GET status / metadata, POST ``:predict``."""

    model_server: LocalModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        logger.debug("rest: " + format, *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            body = self._route(method)
        except StatusError as err:
            self._reply(HTTP_STATUS.get(err.code, 500), {"error": err.message})
        except Exception as err:  # noqa: BLE001
            logger.exception("rest request failed")
            self._reply(500, {"error": f"{type(err).__name__}: {err}"})
        else:
            self._reply(200, body)

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def _route(self, method: str) -> dict:
        from google.protobuf import json_format

        match = _REST_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {self.path}")
        name, verb = match["model"], (match["verb"] or "").lower() or None
        version = int(match["version"]) if match["version"] else None
        label = match["label"]
        server = self.model_server
        if method == "GET" and verb is None and not match["metadata"]:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            elif label:
                request.model_spec.version_label = label
            return json_format.MessageToDict(server.get_model_status(request), preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)
        servable = server.manager.resolve(name, version, label)
        if method == "GET" and match["metadata"]:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.all_signature_defs.items():
                signature_map.signature_def[key].CopyFrom(signature_def)
            return {
                "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
                "metadata": {"signature_def": json_format.MessageToDict(signature_map,
                                                                        preserving_proto_field_name=True)},
            }
        if method == "POST" and verb == "predict":
            return self._predict(servable)
        if method == "POST" and verb in ("classify", "regress"):
            raise StatusError(grpc.StatusCode.UNIMPLEMENTED, f"{verb} is not implemented by this server")
        raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {self.path}")

    def _read_body(self) -> bytes:
        """The request body, at most ``max_message_bytes``; the handler's ``timeout`` bounds the wait."""
        limit = self.model_server.max_message_bytes
        given = self.headers.get("Content-Length") or "0"
        if not given.isdigit():
            self.close_connection = True
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"Content-Length must be a byte count, got {given!r}")
        if int(given) > limit:
            self.close_connection = True
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"the request body of {int(given):,} bytes exceeds this server's limit of {limit:,}")
        try:
            return self.rfile.read(int(given))
        except TimeoutError:
            self.close_connection = True
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"the request body did not arrive within {self.timeout:g} s") from None

    def _predict(self, servable) -> dict:
        try:
            body = json.loads(self._read_body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {err}") from None
        if not isinstance(body, dict):
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must be a JSON object")
        signature_name = body.get("signature_name") or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        try:
            signature = servable.signature(signature_name)
        except StatusError as err:  # TF Serving's REST answers an unknown signature INVALID_ARGUMENT
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, err.message) from None
        formats = [f for f in ("instances", "inputs") if f in body]
        if len(formats) != 1:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              "the request needs exactly one of 'instances' (row format) or 'inputs' (columnar)")
        fmt = formats[0]
        names = sorted(signature.inputs)
        if fmt == "instances":
            rows = body["instances"]
            if not isinstance(rows, list):
                raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a list")
            if len(names) == 1 and not all(isinstance(r, dict) for r in rows):
                columns = {names[0]: rows}
            elif all(isinstance(r, dict) for r in rows):
                keys = {key for row in rows for key in row}
                columns = {key: [row.get(key) for row in rows] for key in keys}
            else:
                raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"each instance must be an object with the inputs {names}")
        else:
            value = body["inputs"]
            columns = value if isinstance(value, dict) else ({names[0]: value} if len(names) == 1 else None)
            if columns is None:
                raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"'inputs' must be an object with the inputs {names}")
        arrays, given = {}, {}
        for key, value in columns.items():
            info = signature.inputs.get(key)
            dtype = tf.dtypes.as_dtype(info.dtype) if info is not None else tf.string
            numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
            try:
                arrays[key] = rest.decode_json_tensor(value, numpy_dtype)
            except ValueError as err:
                raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"input {key!r}: {err}") from None
            given[key] = (dtype.as_datatype_enum, arrays[key].shape)
        check_request_arrays(arrays, self.model_server.max_request_elements)
        servable.check_inputs(signature_name, given)
        outputs = servable.run(signature_name, arrays, body.get("output_filter") or ())
        return rest.encode_outputs(outputs, fmt)
