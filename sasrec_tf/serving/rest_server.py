"""The REST side of the local model server: TF Serving's REST API over ``http.server``, bounded.

A connection is a thread, so both what one connection may hold and how many may be open are
bounded: a request (its headers and its body together) must arrive within ``rest_read_timeout``
seconds of its first byte being awaited, however it is trickled (:class:`DeadlineReader` checks a
deadline before every ``recv``; a per-``recv`` timeout alone lets a client send a byte every 29 s
forever); a body that misses it is answered 408, headers that miss it close the connection. At most
``rest_max_connections`` connections are served at once; the next is answered 503 and closed.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from sasrec_tf.export.contract import parse_version
from sasrec_tf.serving import rest
from sasrec_tf.serving.errors import HTTP_STATUS, StatusError
from sasrec_tf.serving.tensors import check_request_arrays

__all__ = ["DeadlineReader", "RestServer"]

logger = logging.getLogger(__name__)


class RequestTimeout(Exception):
    """The request did not arrive before its deadline (answered 408)."""


class DeadlineReader(io.RawIOBase):
    """A socket's input that fails with ``TimeoutError`` once ``clock()`` passes :attr:`deadline`.

    Every ``recv`` waits at most the time left, and none starts after the deadline, so the whole
    of what is read between two settings of :attr:`deadline` is bounded, not each ``recv``.
    """

    def __init__(self, sock: socket.socket, clock: Callable[[], float]):
        super().__init__()
        self._sock = sock
        self._clock = clock
        self.deadline = float("inf")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - self._clock()
        if remaining <= 0:
            raise TimeoutError("the request's deadline passed")
        self._sock.settimeout(min(remaining, 1e6))
        return self._sock.recv_into(buffer)


class RestServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with at most ``max_connections`` connections (threads) at once."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request) -> None:
        """503 and close, from the accepting thread: a tiny reply into the socket's buffer, never blocking."""
        data = json.dumps({"error": f"this server serves at most {self.max_connections} REST connections at "
                                    f"once; retry later"}).encode("utf-8")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode("ascii")
        try:
            request.setblocking(False)
            request.send(head + data)
        except OSError:
            pass
        self.shutdown_request(request)


# http_rest_api_util.cc ~31-34: the path regexes carry (?i), but http_rest_api_handler.cc ~85-104
# then compares the verb with "predict"/"classify"/"regress" and the subresource with "metadata"
# case-sensitively: POST /V1/MODELS/m:PREDICT is a 400, GET /v1/models/m/METADATA is the model status.
_REST_PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>[a-z]+)|/(?P<metadata>metadata))?$", re.IGNORECASE,
)


class RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API: GET status / metadata, POST ``:predict``."""

    model_server: Any  # the LocalModelServer (set by a subclass per server)
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the buffered file over the socket, replaced by one that keeps the deadline
        self._input = DeadlineReader(self.connection, self.model_server.clock)
        self.rfile = io.BufferedReader(self._input)

    def handle_one_request(self) -> None:
        """One request, whose request line, headers and body must all arrive by one deadline."""
        self._input.deadline = self.model_server.clock() + self.timeout
        super().handle_one_request()

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        logger.debug("rest: " + format, *args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.connection.settimeout(self.timeout)  # writing: each send may wait `timeout` (not the time left)
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
        except RequestTimeout as err:
            self.close_connection = True
            self._reply(408, {"error": str(err)})
        except RecursionError:
            self._reply(400, {"error": "the request nests too deep"})
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
        name, verb = match["model"], match["verb"]
        metadata = match["metadata"] == "metadata"
        version = parse_version(match["version"]) if match["version"] else None
        if match["version"] and version is None:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Malformed request: version {match['version']} exceeds an int64")
        label = match["label"]
        server = self.model_server
        if method == "GET" and verb is None and not metadata:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            if version is not None:
                request.model_spec.version.value = version
            elif label:
                request.model_spec.version_label = label
            return json_format.MessageToDict(server.get_model_status(request), preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)
        servable = server.manager.resolve(name, version, label)
        if method == "GET" and metadata:
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
        """The request body, at most ``max_message_bytes``, by the request's deadline (else 408)."""
        limit = self.model_server.max_message_bytes
        given = self.headers.get("Content-Length") or "0"
        if not (given.isascii() and given.isdigit()):
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
            raise RequestTimeout(f"the request (headers and body) did not arrive within {self.timeout:g} s") from None

    def _predict(self, servable) -> dict:
        try:
            body = json.loads(self._read_body() or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {err}") from None
        if not isinstance(body, dict):
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must be a JSON object")
        signature_name = body.get("signature_name") or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        if not isinstance(signature_name, str):
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"'signature_name' must be a string, got {type(signature_name).__name__}")
        # "output_filter" is not read: TF Serving's FillPredictRequestFromJson (util/json_tensor.cc
        # ~490-520) takes only signature_name and instances/inputs, so every output is answered.
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
        server_options = self.model_server
        check_request_arrays(arrays, server_options.max_request_elements)
        servable.check_inputs(signature_name, given)
        servable.check_cost(signature_name, {key: shape for key, (_, shape) in given.items()},
                            max_cells=server_options.max_request_cells,
                            max_reply_bytes=server_options.max_message_bytes)
        outputs = servable.run(signature_name, arrays)
        return rest.encode_outputs(outputs, fmt)
