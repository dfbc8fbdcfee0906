"""TF Serving's REST (JSON) request and response formats, shared by the REST client and server.

Predict bodies are either row format ``{"signature_name": ..., "instances": [row, ...]}`` (a row
is ``{input: value}``, or the bare value when the signature has one input) answered with
``{"predictions": [...]}``, or columnar ``{"inputs": {input: batch}}`` (or the bare batch)
answered with ``{"outputs": ...}``. Strings travel as JSON strings (binary ones as
``{"b64": ...}``); floats as JSON numbers. TF Serving's REST API writes and reads non-finite
floats as ``-Infinity``/``Infinity``/``NaN``, which RFC 8259 JSON lacks and strict parsers
(``JSON.parse``, Go's ``encoding/json``, Jackson's defaults) reject; the export's unknown-score
value is therefore the finite lowest float32, which every JSON reader accepts and which still
sorts last.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

import numpy as np

__all__ = ["model_path", "predict_body", "decode_json_tensor", "encode_outputs", "to_jsonable", "MAX_JSON_RANK"]

# The deepest nesting a JSON tensor may have: NumPy's limit on dimensions (TensorFlow allows more,
# but no signature of an export has more than two). Checked without recursion before decoding.
MAX_JSON_RANK = 32


def model_path(model: str, version: int | None = None, label: str | None = None) -> str:
    """``/v1/models/NAME[/versions/N | /labels/L]``."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def to_jsonable(value: Any) -> Any:
    """Arrays (str, bytes, numbers, bools) → nested lists of JSON values."""
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        return _map_nested(array.tolist(), _string_to_json)
    if array.dtype.kind == "f":
        return array.astype(np.float64).tolist()
    return array.tolist()


def _string_to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _map_nested(value: Any, fn) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def predict_body(inputs: Mapping[str, Any], signature_name: str | None = None, fmt: str = "inputs") -> dict:
    """The JSON body of a REST Predict: columnar ``inputs`` or row ``instances`` (rows of equal width)."""
    if fmt not in ("inputs", "instances"):
        raise ValueError(f"fmt must be 'inputs' or 'instances', got {fmt!r}")
    body: dict[str, Any] = {}
    if signature_name:
        body["signature_name"] = signature_name
    columns = {name: to_jsonable(value) for name, value in inputs.items()}
    if fmt == "inputs":
        body["inputs"] = columns
    else:
        sizes = {name: len(value) for name, value in columns.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"every input needs the same batch size for 'instances', got {sizes}")
        batch = next(iter(sizes.values()), 0)
        body["instances"] = [{name: columns[name][i] for name in columns} for i in range(batch)]
    return body


def _check_depth(value: Any) -> None:
    """ValueError when ``value`` nests lists deeper than :data:`MAX_JSON_RANK` (iteratively: no RecursionError)."""
    level = [value]
    for _ in range(MAX_JSON_RANK + 1):
        level = [v for item in level if isinstance(item, list) for v in item]
        if not level:
            return
    raise ValueError(f"the value nests lists more than {MAX_JSON_RANK} deep; a tensor has at most "
                     f"{MAX_JSON_RANK} dimensions")


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"a {{\"b64\": ...}} value must be a string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"invalid base64 in a {{\"b64\": ...}} value: {err}") from None


def _json_to_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return _b64(value["b64"])
        raise ValueError(f"unexpected object in a tensor: {str(value)[:80]}")
    if isinstance(value, list):
        return [_json_to_value(v) for v in value]
    return value


def decode_json_tensor(value: Any, numpy_dtype: np.dtype | type) -> np.ndarray:
    """A JSON (nested) list → array of ``numpy_dtype`` (``object`` for strings); ragged, nested more
    than :data:`MAX_JSON_RANK` deep, invalid base64 → ValueError."""
    _check_depth(value)
    value = _json_to_value(value)
    if numpy_dtype is object:
        array = np.array(value, dtype=object)
        if array.size and any(isinstance(v, list) for v in array.ravel()):
            raise ValueError("rows of different lengths: pad every row to the same width")
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel().tolist()]
        if any(not isinstance(v, bytes) for v in flat):
            raise ValueError("expected strings")
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    try:
        return np.array(value, dtype=numpy_dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot read the values as {np.dtype(numpy_dtype).name}: {err}") from None


def encode_outputs(outputs: Mapping[str, np.ndarray], fmt: str) -> dict:
    """Signature outputs → ``{"predictions": rows}`` (row format) or ``{"outputs": columns}``."""
    columns = {name: to_jsonable(value) for name, value in outputs.items()}
    single = len(columns) == 1
    if fmt == "instances":
        batch = len(next(iter(columns.values()))) if columns else 0
        if single:
            return {"predictions": next(iter(columns.values()))}
        return {"predictions": [{name: columns[name][i] for name in columns} for i in range(batch)]}
    return {"outputs": next(iter(columns.values())) if single else columns}
