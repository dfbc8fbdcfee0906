"""The request boundary of the local server: a request's TensorProtos checked before anything is allocated.

A TensorProto declares its shape separately from its content, so a few bytes can declare a tensor
of billions of elements. TensorFlow's own parser (``Tensor::FromProto``) rejects negative dims and
a ``tensor_content`` of the wrong length, but fills a *typed* value list that is too short by
repeating its last value (the compact form ``tf.make_tensor_proto(x, shape=...)`` writes for a
constant). The local server is stricter, deliberately: every tensor must carry exactly as many
values as its shape declares, so a malformed request is ``INVALID_ARGUMENT`` rather than a
gigabyte allocation or answers for rows the client never sent. Clients built with
``tf.make_tensor_proto(array)`` always send the full content.

What one request may cost is bounded as well: the elements of all its inputs together
(``rows × width`` summed over inputs) may not exceed ``max_elements``
(:data:`DEFAULT_MAX_REQUEST_ELEMENTS` unless the server is told otherwise); larger requests are
``INVALID_ARGUMENT`` and should be split by the client (``PredictionClient(max_batch_size=...)``).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from sasrec_tf.serving.errors import StatusError
from sasrec_tf.serving.options import DEFAULT_MAX_REQUEST_ELEMENTS

__all__ = ["DEFAULT_MAX_REQUEST_ELEMENTS", "proto_shape", "check_request_protos", "check_request_arrays",
           "to_ndarray", "as_proto_field"]

# dtype → (the repeated field holding its values, values per element). tensor_content is the
# alternative for every fixed-size type; strings have only string_val.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: ("float_val", 1),
    types_pb2.DT_DOUBLE: ("double_val", 1),
    types_pb2.DT_INT8: ("int_val", 1),
    types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT32: ("int_val", 1),
    types_pb2.DT_UINT8: ("int_val", 1),
    types_pb2.DT_UINT16: ("int_val", 1),
    types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_UINT32: ("uint32_val", 1),
    types_pb2.DT_UINT64: ("uint64_val", 1),
    types_pb2.DT_BOOL: ("bool_val", 1),
    types_pb2.DT_HALF: ("half_val", 1),
    types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
    types_pb2.DT_STRING: ("string_val", 1),
}
_ITEM_BYTES = {
    types_pb2.DT_FLOAT: 4, types_pb2.DT_DOUBLE: 8, types_pb2.DT_INT8: 1, types_pb2.DT_INT16: 2,
    types_pb2.DT_INT32: 4, types_pb2.DT_UINT8: 1, types_pb2.DT_UINT16: 2, types_pb2.DT_INT64: 8,
    types_pb2.DT_UINT32: 4, types_pb2.DT_UINT64: 8, types_pb2.DT_BOOL: 1, types_pb2.DT_HALF: 2,
    types_pb2.DT_BFLOAT16: 2, types_pb2.DT_COMPLEX64: 8, types_pb2.DT_COMPLEX128: 16,
}


def _invalid(message: str) -> StatusError:
    return StatusError(grpc.StatusCode.INVALID_ARGUMENT, message)


def proto_shape(name: str, proto: tensor_pb2.TensorProto, max_elements: int) -> tuple[int, ...]:
    """The declared shape of input ``name``; INVALID_ARGUMENT for an unknown rank or a negative dim,
    and for a dim above ``max_elements`` (which no accepted request can have)."""
    if proto.tensor_shape.unknown_rank:
        raise _invalid(f"input {name!r}: a tensor needs a known shape (unknown_rank is set)")
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise _invalid(f"input {name!r}: dimensions must be >= 0, got {list(dims)}")
    if any(d > max_elements for d in dims):
        raise _invalid(f"input {name!r}: shape {list(dims)} exceeds the request limit of {max_elements:,} "
                       f"elements; split the request")
    return dims


def _value_count(name: str, proto: tensor_pb2.TensorProto) -> int:
    """How many elements the proto's content holds (without decoding it)."""
    if proto.dtype not in _VALUE_FIELDS:
        dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else proto.dtype
        raise _invalid(f"input {name!r}: dtype {dtype} cannot be sent in a request")
    field, per_element = _VALUE_FIELDS[proto.dtype]
    listed = len(getattr(proto, field))
    if proto.tensor_content:
        if proto.dtype == types_pb2.DT_STRING or listed:
            raise _invalid(f"input {name!r}: tensor_content and {field} are both set")
        size, rest = divmod(len(proto.tensor_content), _ITEM_BYTES[proto.dtype])
        if rest:
            raise _invalid(f"input {name!r}: tensor_content of {len(proto.tensor_content)} bytes is not a "
                           f"whole number of {_ITEM_BYTES[proto.dtype]}-byte values")
        return size
    elements, rest = divmod(listed, per_element)
    if rest:
        raise _invalid(f"input {name!r}: {field} holds {listed} numbers, not pairs")
    return elements


def check_request_protos(inputs: Mapping[str, tensor_pb2.TensorProto],
                         max_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS) -> dict[str, tuple[int, ...]]:
    """Check a request's tensors before decoding any; returns ``{input: shape}``.

    Raises:
        StatusError: INVALID_ARGUMENT when a shape is malformed, the request declares more than
            ``max_elements`` elements in all, or a tensor's content does not hold exactly the
            number of values its shape declares.
    """
    shapes = {name: proto_shape(name, proto, max_elements) for name, proto in inputs.items()}
    _check_total(((name, math.prod(shape)) for name, shape in shapes.items()), max_elements)
    for name, proto in inputs.items():
        declared = math.prod(shapes[name])
        held = _value_count(name, proto)
        if held != declared:
            raise _invalid(f"input {name!r}: shape {list(shapes[name])} declares {declared:,} values but the "
                           f"tensor holds {held:,}; send every value (no implicit repetition)")
    return shapes


def check_request_arrays(arrays: Mapping[str, np.ndarray], max_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS) -> None:
    """The ``max_elements`` bound for inputs that are already arrays (REST bodies, bounded by their size)."""
    _check_total(((name, int(np.size(value))) for name, value in arrays.items()), max_elements)


def _check_total(sizes: Iterable[tuple[str, int]], max_elements: int) -> None:
    sizes = dict(sizes)
    total = sum(sizes.values())
    if total > max_elements:
        raise _invalid(f"the request holds {total:,} elements ({', '.join(f'{k}: {v:,}' for k, v in sizes.items())}); "
                       f"this server accepts at most {max_elements:,} per request: split it into smaller batches")


def to_ndarray(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a checked proto (:func:`check_request_protos`)."""
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as err:
        raise _invalid(f"input {name!r}: malformed tensor: {err}") from None


def as_proto_field(value: np.ndarray, *, tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """An output as TF Serving writes it: every value in the dtype's typed field (``float_val``, ...).

    ``predict_util.cc`` (~174-187) calls ``Tensor::AsProtoField`` unless the server runs with
    ``--enable_serialization_as_tensor_content`` (``tensor_content=True`` here); a non-Python client
    that reads only one of the two forms then reads the same data from either server.
    """
    array = np.asarray(value)
    proto = tf.make_tensor_proto(array)
    if tensor_content or not proto.tensor_content:
        return proto
    field, _ = _VALUE_FIELDS[proto.dtype]
    proto.ClearField("tensor_content")
    flat = array.reshape(-1)
    getattr(proto, field).extend(flat.view(np.uint16) if proto.dtype == types_pb2.DT_HALF else flat)
    return proto
