"""Clients for a served SASRec: gRPC (``PredictionClient``) and REST (``RestClient``).

Both speak TF Serving's APIs, so they work against ``tensorflow_model_server`` and against
``sasrec-tf serve`` alike. A model version is chosen per client or per call with ``version=N``
or ``label="stable"`` (never both); default: the latest. Every call has a deadline (``timeout``
seconds); a failure raises :class:`~sasrec_tf.serving.errors.ServingError` naming the call, the
server, the status code and the server's message.

Histories are sent as ``DT_STRING [batch, 1 + longest]``: each row starts with ``""`` and is
padded with ``""`` at the end. The leading ``""`` matters under TF Serving's batching with
``pad_variable_length_inputs``, which pads merged requests with each request's *first element*:
this way the padding is the ignored token rather than a real item.

TF Serving refuses a request with more rows than its batching ``max_batch_size`` ("Task size N is
larger than maximum input batch size"), so both clients split larger requests into chunks of
``max_batch_size`` rows (64, as the shipped ``serving/batching_parameters.txt``; ``None``: never
split) and put the answers back together in order.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping, NamedTuple, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from sasrec_tf.export.contract import (
    CANDIDATES,
    EMBED,
    HISTORY,
    ITEM_EMBEDDINGS,
    ITEM_IDS,
    KNOWN_ITEMS,
    RECOMMEND_INCLUDING_HISTORY,
    SCORE,
    SERVING_DEFAULT,
)
from sasrec_tf.serving import rest
from sasrec_tf.serving.errors import HTTP_STATUS, ServingError
from sasrec_tf.serving.options import DEFAULTS, REST_PORT

__all__ = ["PredictionClient", "RestClient", "TopK", "history_tensor", "candidates_tensor"]

_FROM_HTTP = {status: code for code, status in reversed(list(HTTP_STATUS.items()))}
DEFAULT_MAX_BATCH_SIZE = DEFAULTS.max_batch_size  # serving/batching_parameters.txt


def _chunked(inputs: Mapping[str, Any], max_rows: int | None) -> list[dict[str, Any]]:
    """``inputs`` split along the batch dimension into requests of at most ``max_rows`` rows."""
    rows = {len(value) for value in inputs.values() if np.ndim(value) > 0}
    if max_rows is None or len(rows) != 1 or next(iter(rows)) <= max_rows:
        return [dict(inputs)]
    total = next(iter(rows))
    return [{name: value[start: start + max_rows] for name, value in inputs.items()}
            for start in range(0, total, max_rows)]


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts], axis=0) for name in parts[0]}


def _check_max_batch_size(max_batch_size: int | None) -> None:
    if max_batch_size is not None and (isinstance(max_batch_size, bool) or int(max_batch_size) < 1):
        raise ValueError(f"max_batch_size must be a positive number of rows or None, got {max_batch_size!r}")


class _ItemsAndScores(NamedTuple):
    item_ids: np.ndarray
    scores: np.ndarray


class TopK(_ItemsAndScores):
    """Recommendations: ``item_ids`` (str, ``[batch, k]``; ``""`` past the eligible items), ``scores``,
    and the attribute ``known_items`` (``[batch]``: how many history ids the model knows; 0 = the row
    is the popularity list; None from an export older than that output). Unpacks as
    ``item_ids, scores``, as it always did."""

    known_items: np.ndarray | None = None  # the class default, for copies made by ``_replace``

    def __new__(cls, item_ids: np.ndarray, scores: np.ndarray, known_items: np.ndarray | None = None):
        self = super().__new__(cls, item_ids, scores)
        self.known_items = known_items
        return self


def history_tensor(histories: Sequence[Sequence[str]]) -> np.ndarray:
    """Histories (oldest first) → object array ``[batch, 1 + longest]``, a leading ``""``, ``""``-padded."""
    histories = [list(h) for h in histories]
    width = 1 + max((len(h) for h in histories), default=0)
    out = np.full((len(histories), width), "", dtype=object)
    for row, items in enumerate(histories):
        for column, item in enumerate(items, start=1):
            if not isinstance(item, str):
                raise TypeError(f"item ids are strings; history {row} has {item!r}")
            out[row, column] = item
    return out


def candidates_tensor(candidates: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[int]]:
    """Candidate lists → (object array ``[batch, 1 + longest]`` with a leading ``""``, their lengths)."""
    lengths = [len(c) for c in candidates]
    return history_tensor(candidates), lengths


def _decode(array: np.ndarray) -> np.ndarray:
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8") if isinstance(b, bytes) else b, otypes=[object])(array) \
            if array.size else array
    return array


def _version_spec(spec, version: int | None, label: str | None) -> None:
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label


class PredictionClient:
    """gRPC client for TF Serving's Predict, GetModelMetadata and GetModelStatus.

    Args:
        target: ``host:port`` of the gRPC endpoint (TF Serving's default port is 8500).
        model: the model name.
        version: default version for every call (None: the latest).
        label: default version label (``stable``, ``canary``; see ``serving/models.config``).
        timeout: default deadline in seconds.
        channel: an existing channel (for TLS or custom options); ``target`` then only names it.
        max_message_bytes: the largest response accepted.
        max_batch_size: the most rows one request carries; larger calls are split into several
            requests (in order). Match the server's batching ``max_batch_size``; ``None``: never split.

    ``with PredictionClient(...) as client:`` closes the channel at the end.
    """

    def __init__(self, target: str = f"{DEFAULTS.host}:{DEFAULTS.port}", model: str = DEFAULTS.model_name, *,
                 version: int | None = None, label: str | None = None, timeout: float = DEFAULTS.timeout,
                 channel: grpc.Channel | None = None, max_message_bytes: int = DEFAULTS.max_message_bytes,
                 max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE):
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        _check_max_batch_size(max_batch_size)
        self.max_batch_size = max_batch_size
        self.target = target
        self.model = model
        self.version = version
        self.label = label
        self.timeout = float(timeout)
        self._own_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", max_message_bytes),
                             ("grpc.max_send_message_length", max_message_bytes)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def __enter__(self) -> "PredictionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------- plumbing
    def _spec(self, spec, version, label, signature: str | None = None) -> None:
        spec.name = self.model
        if version is None and label is None:
            version, label = self.version, self.label
        _version_spec(spec, version, label)
        if signature is not None:
            spec.signature_name = signature

    def _call(self, stub_method, request, method: str, timeout: float | None):
        timeout = self.timeout if timeout is None else timeout
        try:
            return stub_method(request, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
            details = err.details() if callable(getattr(err, "details", None)) else str(err)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                details = f"no answer within {timeout:g} s ({details})"
            elif code == grpc.StatusCode.UNAVAILABLE:
                details = (f"the server is unreachable (is it running at {self.target}?) or overloaded (its batch "
                           f"queue is full: retry with backoff): {details}")
            spec = request.model_spec
            choice = spec.WhichOneof("version_choice")
            what = f"{method} {spec.name!r}"
            if choice == "version":
                what += f" version {spec.version.value}"
            elif choice == "version_label":
                what += f" label {spec.version_label!r}"
            if getattr(spec, "signature_name", ""):
                what += f" signature {spec.signature_name!r}"
            raise ServingError(code, details, method=what, target=self.target) from None

    # ----------------------------------------------------------------------------- the API
    def predict(self, inputs: Mapping[str, Any], signature: str = SERVING_DEFAULT, *,
                version: int | None = None, label: str | None = None, timeout: float | None = None,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Run a signature: ``{input: array}`` → ``{output: array}`` (strings decoded to ``str``).

        Inputs are converted with ``tf.make_tensor_proto``: pass numpy arrays of the signature's
        dtype (integers as int64, strings as ``str``/``bytes``/object arrays). More rows than
        ``max_batch_size`` go as several requests (to the same version or label).
        """
        parts = []
        for chunk in _chunked(inputs, self.max_batch_size):
            request = predict_pb2.PredictRequest()
            self._spec(request.model_spec, version, label, signature)
            for name, value in chunk.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            request.output_filter.extend(output_filter)
            response = self._call(self._predict.Predict, request, "Predict", timeout)
            parts.append({name: _decode(tf.make_ndarray(proto)) for name, proto in response.outputs.items()})
        return _joined(parts)

    def recommend(self, histories: Sequence[Sequence[str]], *, exclude_history: bool = True, **call) -> TopK:
        """Top-k items for each history (``serving_default``, or ``recommend_including_history``)."""
        signature = SERVING_DEFAULT if exclude_history else RECOMMEND_INCLUDING_HISTORY
        out = self.predict({HISTORY: history_tensor(histories)}, signature, **call)
        return TopK(out["item_ids"], out["scores"], out.get(KNOWN_ITEMS))

    def score(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]],
              **call) -> list[np.ndarray]:
        """Scores of each history's candidates (one array per row; unknown ids: the lowest float32)."""
        if len(histories) != len(candidates):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        tensor, lengths = candidates_tensor(candidates)
        scores = self.predict({HISTORY: history_tensor(histories), CANDIDATES: tensor}, SCORE, **call)["scores"]
        return [scores[row, 1: 1 + n] for row, n in enumerate(lengths)]

    def embed(self, histories: Sequence[Sequence[str]], **call) -> np.ndarray:
        """Sequence representations ``[batch, d]``."""
        return self.predict({HISTORY: history_tensor(histories)}, EMBED, **call)["embedding"]

    def item_embeddings(self, item_ids: Sequence[str], **call) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings [n, d], known [n])`` of the given item ids."""
        out = self.predict({ITEM_IDS: np.array(list(item_ids), dtype=object)}, ITEM_EMBEDDINGS, **call)
        return out["embeddings"], out["known"]

    def metadata(self, *, version: int | None = None, label: str | None = None,
                 timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """``(version, {signature name: SignatureDef})`` of the model (GetModelMetadata)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, version, label)
        response = self._call(self._predict.GetModelMetadata, request, "GetModelMetadata", timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return response.model_spec.version.value, dict(signature_map.signature_def)

    def status(self, *, version: int | None = None, label: str | None = None,
               timeout: float | None = None) -> list[dict[str, Any]]:
        """``[{"version", "state" ("AVAILABLE", ...), "error_code", "error_message"}]`` (GetModelStatus)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version, label)
        response = self._call(self._models.GetModelStatus, request, "GetModelStatus", timeout)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": states.Name(s.state), "error_code": s.status.error_code,
                 "error_message": s.status.error_message} for s in response.model_version_status]


class RestClient:
    """Client for TF Serving's REST API (``:8501``) using only the standard library.

    ``POST /v1/models/NAME[/versions/N | /labels/L]:predict`` with columnar ``inputs`` (default)
    or row ``instances``; ``GET`` of the same path gives the status, ``.../metadata`` the
    signatures. ``max_batch_size`` splits large calls as in :class:`PredictionClient`.
    """

    def __init__(self, base_url: str = f"http://{DEFAULTS.host}:{REST_PORT}", model: str = DEFAULTS.model_name, *,
                 version: int | None = None, label: str | None = None, timeout: float = DEFAULTS.timeout,
                 max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE):
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        _check_max_batch_size(max_batch_size)
        self.max_batch_size = max_batch_size
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.version = version
        self.label = label
        self.timeout = float(timeout)

    def url(self, suffix: str = "", *, version: int | None = None, label: str | None = None) -> str:
        if version is None and label is None:
            version, label = self.version, self.label
        return self.base_url + rest.model_path(self.model, version, label) + suffix

    def predict_request(self, inputs: Mapping[str, Any], signature: str = SERVING_DEFAULT, *,
                        fmt: str = "inputs", version: int | None = None,
                        label: str | None = None) -> urllib.request.Request:
        """The HTTP request :meth:`predict` sends (exposed for inspection and tests)."""
        body = rest.predict_body(inputs, signature, fmt)
        return urllib.request.Request(
            self.url(":predict", version=version, label=label), data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"}, method="POST")

    def _send(self, request: urllib.request.Request, timeout: float | None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        what = f"{request.get_method()} {request.full_url}"
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                message = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace")
            code = _FROM_HTTP.get(err.code, grpc.StatusCode.UNKNOWN)
            raise ServingError(code, message, method=what, target=self.base_url, http_status=err.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
            code = grpc.StatusCode.DEADLINE_EXCEEDED if timed_out else grpc.StatusCode.UNAVAILABLE
            details = f"no answer within {timeout:g} s" if timed_out else f"cannot reach the server: {reason}"
            raise ServingError(code, details, method=what, target=self.base_url) from None

    def predict(self, inputs: Mapping[str, Any], signature: str = SERVING_DEFAULT, *, fmt: str = "inputs",
                version: int | None = None, label: str | None = None,
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """Run a signature; returns ``{output: array}`` whichever format was used."""
        return _joined([self._predict_once(chunk, signature, fmt, version, label, timeout)
                        for chunk in _chunked(inputs, self.max_batch_size)])

    def _predict_once(self, inputs: Mapping[str, Any], signature: str, fmt: str, version: int | None,
                      label: str | None, timeout: float | None) -> dict[str, np.ndarray]:
        request = self.predict_request(inputs, signature, fmt=fmt, version=version, label=label)
        body = self._send(request, timeout)
        if "outputs" in body:
            outputs = body["outputs"]
        elif "predictions" in body:
            rows = body["predictions"]
            outputs = ({key: [row[key] for row in rows] for key in rows[0]}
                       if rows and isinstance(rows[0], dict) else rows)
        else:
            raise ServingError(grpc.StatusCode.UNKNOWN, f"unexpected response: {str(body)[:200]}",
                               method=request.full_url, target=self.base_url)
        if not isinstance(outputs, dict):  # a single output comes back bare
            outputs = {"output": outputs}
        return {key: np.array(value, dtype=object if _is_strings(value) else None) for key, value in outputs.items()}

    def recommend(self, histories: Sequence[Sequence[str]], *, exclude_history: bool = True, **call) -> TopK:
        signature = SERVING_DEFAULT if exclude_history else RECOMMEND_INCLUDING_HISTORY
        out = self.predict({HISTORY: history_tensor(histories)}, signature, **call)
        known = out.get(KNOWN_ITEMS)
        return TopK(out["item_ids"], out["scores"].astype(np.float32), None if known is None else known.astype(np.int32))

    def status(self, *, version: int | None = None, label: str | None = None, timeout: float | None = None) -> Any:
        return self._send(urllib.request.Request(self.url(version=version, label=label)), timeout)

    def metadata(self, *, version: int | None = None, label: str | None = None, timeout: float | None = None) -> Any:
        return self._send(urllib.request.Request(self.url("/metadata", version=version, label=label)), timeout)


def _is_strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str)
