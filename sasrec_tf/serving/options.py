"""Every default of the local model server, its model manager, the batcher and the clients, in one place.

``LocalModelServer``, ``ModelManager``, ``Batcher``, ``PredictionClient``/``RestClient`` and the
flags of ``sasrec-tf serve`` all take their defaults from :data:`DEFAULTS`, so the server a
client expects and the server the command line starts cannot drift apart. Importable without
TensorFlow (the CLI's help reads it). Where TF Serving has a flag for the same setting, the default
is TF Serving's.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ServingOptions", "DEFAULTS", "DEFAULT_MAX_REQUEST_ELEMENTS", "DEFAULT_MAX_REQUEST_CELLS", "GRPC_PORT", "REST_PORT", "LOOPBACK"]

LOOPBACK = "127.0.0.1"
GRPC_PORT = 8500  # tensorflow_model_server's --port
REST_PORT = 8501  # tensorflow_model_server's --rest_api_port, as deployed (serving/README.md)
# 2**20 string ids: e.g. 8,192 histories of 128 items. A request's cost grows with its rows times
# the catalogue (every row is scored against every item), so big offline jobs should chunk anyway.
DEFAULT_MAX_REQUEST_ELEMENTS = 1 << 20
# 2**25 float32 values (128 MiB) in a request's largest intermediate: rows × (catalogue + 1) for
# the score table of the recommendation signatures, rows × candidates × d for ``score``, rows ×
# width × d for the encoder (see sasrec_tf.serving.cost). E.g. 8,192 rows of a 4,095-item catalogue.
DEFAULT_MAX_REQUEST_CELLS = 1 << 25


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """The serving settings and their defaults (see :class:`~sasrec_tf.serving.LocalModelServer`).

    Attributes:
        model_name: the model name clients ask for, and ``sasrec-tf export --name``'s default.
        host: the interface the server binds; loopback (the server has no authentication).
        port: the gRPC port.
        rest_port: the REST port, or None for no REST API (a client's default is :data:`REST_PORT`).
        poll_seconds: how often the server looks for new or removed versions (0: never).
        max_workers: the server's request threads.
        max_message_bytes: the largest gRPC message or REST body, on both sides.
        max_request_elements: the most string ids one Predict may carry, all inputs together.
        max_request_cells: the most float32 values one Predict of an export may compute in its
            largest intermediate (rows × (catalogue + 1) for the score table of ``serving_default``);
            checked, with the reply's size against ``max_message_bytes`` (rows × k ids and
            scores), before anything is computed. A larger request is ``INVALID_ARGUMENT``, a
            reply too large ``RESOURCE_EXHAUSTED``; both messages say how many rows fit.
        rest_read_timeout: seconds a REST client may take to send its whole request (headers and
            body); then it is answered 408 and the connection closed.
        rest_max_connections: the most REST connections served at once; more are answered 503 and
            closed (each open connection holds a thread).
        allow_version_labels_for_unavailable_models: TF Serving's flag of that name.
        load_retries: retries of a failed version load (``--max_num_load_retries``).
        load_retry_seconds: seconds between load retries (``--load_retry_interval_micros``).
        enable_batching: merge concurrent requests into batches (``--enable_batching``).
        max_batch_size: the largest batch, and the most rows a client sends in one request
            (``serving/batching_parameters.txt``).
        num_batch_threads: threads running batches, per signature.
        max_enqueued_batches: with batching, the most batches waiting per signature; a request that
            would open one more is ``UNAVAILABLE`` (TF Serving's default when the batching file
            does not set it; the shipped file sets 256).
        pad_variable_length_inputs: with batching, pad merged inputs of different widths with each
            request's first element. TF Serving's default is false (a batch of mixed widths then
            fails); the stand-in's ``--enable-batching`` without a file pads, because histories
            differ in width; a batching file's own value always wins.
        enable_serialization_as_tensor_content: write outputs as ``tensor_content`` instead of the
            typed value fields (``float_val``, ...), TF Serving's flag of that name (default off).
        timeout: a client call's deadline in seconds.
    """

    model_name: str = "sasrec"
    host: str = LOOPBACK
    port: int = GRPC_PORT
    rest_port: int | None = None
    poll_seconds: float = 1.0
    max_workers: int = 8
    max_message_bytes: int = 64 * 1024 * 1024
    max_request_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS
    max_request_cells: int = DEFAULT_MAX_REQUEST_CELLS
    rest_read_timeout: float = 30.0
    rest_max_connections: int = 64
    allow_version_labels_for_unavailable_models: bool = False
    load_retries: int = 5
    load_retry_seconds: float = 60.0
    enable_batching: bool = False
    max_batch_size: int = 64
    num_batch_threads: int = 1
    max_enqueued_batches: int = 10
    pad_variable_length_inputs: bool = True
    enable_serialization_as_tensor_content: bool = False
    timeout: float = 10.0


DEFAULTS = ServingOptions()
