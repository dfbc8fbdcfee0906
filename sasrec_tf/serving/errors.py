"""Errors of the serving layer, carrying TF Serving's canonical status codes (``grpc.StatusCode``)."""

from __future__ import annotations

import grpc

__all__ = ["ServingError", "StatusError", "status_code_from_int", "HTTP_STATUS"]

_BY_INT = {code.value[0]: code for code in grpc.StatusCode}

# How TF Serving's REST API reports a canonical code as an HTTP status.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def status_code_from_int(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a canonical error number (as in ``tf.errors.OpError.error_code``)."""
    return _BY_INT.get(int(value), grpc.StatusCode.UNKNOWN)


class StatusError(Exception):
    """Raised inside the local server: becomes a gRPC status (or an HTTP error) for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ServingError(RuntimeError):
    """A request to a model server failed.

    Attributes:
        code: the canonical status, a ``grpc.StatusCode`` (REST errors are mapped back to one).
        details: the server's message.
        method: the call that failed (``Predict``, ``GetModelMetadata``, ``GetModelStatus``, or
            the REST URL).
        target: the server address.
        http_status: the HTTP status for REST calls, else None.
    """

    def __init__(self, code: grpc.StatusCode, details: str, *, method: str, target: str,
                 http_status: int | None = None):
        self.code = code
        self.details = details
        self.method = method
        self.target = target
        self.http_status = http_status
        super().__init__(f"{method} at {target} failed with {code.name}: {details}")
