"""TensorProto <-> numpy conversions, written the way TF Serving writes tensors.

TF Serving answers with ``Tensor::AsProtoField`` (typed ``*_val`` fields, not
``tensor_content``), so clients without TensorFlow can read ``float_val`` directly.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tf_serving_standin.errors import invalid_argument

_VAL_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
}


def dtype_name(dtype_enum: int) -> str:
    """``DT_FLOAT`` -> ``float``, as TF's DataTypeString prints it."""
    return types_pb2.DataType.Name(dtype_enum).removeprefix("DT_").lower()


def numpy_dtype(dtype_enum: int) -> np.dtype:
    """The numpy dtype of a TF DataType enum (strings map to object)."""
    if dtype_enum == types_pb2.DT_STRING:
        return np.dtype(object)
    return np.dtype(tf.dtypes.as_dtype(dtype_enum).as_numpy_dtype)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a request TensorProto; malformed protos are INVALID_ARGUMENT."""
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:
        raise invalid_argument(f"Cannot parse tensor from proto: {exc}") from exc


def to_tensor_proto(array: np.ndarray, dtype_enum: int) -> tensor_pb2.TensorProto:
    """Encode an output array into typed ``*_val`` fields (Tensor::AsProtoField)."""
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto(
        dtype=dtype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(size)) for size in array.shape]
        ),
    )
    field = _VAL_FIELD.get(dtype_enum)
    flat = array.ravel()
    if field is None:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    elif dtype_enum == types_pb2.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
    elif field == "half_val":
        proto.half_val.extend(int(v) for v in flat.view(np.uint16))
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto
