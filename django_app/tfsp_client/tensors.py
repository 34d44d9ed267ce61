"""float32 helpers shared by the client and the web tier, without numpy or TensorFlow.

The calculator model works in float32: inputs are checked to fit, and results are shown as the
shortest decimal that reads back as the same float32 (0.1 + 0.2 shows as 0.3, not 0.30000001192...).
"""

from __future__ import annotations

import math
import struct

FLOAT32_MAX = 3.4028234663852886e38


def fits_float32(value: float) -> bool:
    """True when ``value`` is finite and within float32's range."""
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def pack_float32(values: list[float]) -> bytes:
    """Little-endian float32 bytes (TensorProto.tensor_content); ValueError if a value does not fit."""
    for value in values:
        if not fits_float32(value):
            raise ValueError(f"{value!r} does not fit in float32")
    return struct.pack(f"<{len(values)}f", *values)


def shortest_float32(value: float) -> float:
    """The shortest decimal that converts back to the same float32 as ``value``."""
    if not math.isfinite(value):
        return value
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == target:
            return candidate
    return value


_FORMATS = {1: "f", 2: "d", 3: "i", 9: "q"}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64
_VALUE_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val"}


def tensor_values(tensor) -> list[float]:
    """Flat list of the numbers in a numeric TensorProto (either encoding, with TF's value repeat)."""
    dtype = tensor.dtype
    if dtype not in _FORMATS:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= dim.size
    if tensor.tensor_content:
        fmt = _FORMATS[dtype]
        width = struct.calcsize(fmt)
        values = list(struct.unpack(f"<{len(tensor.tensor_content) // width}{fmt}", tensor.tensor_content))
    else:
        values = list(getattr(tensor, _VALUE_FIELDS[dtype]))
        if len(values) == 1 and count > 1:  # TF stores a tensor of equal values as one value
            values = values * count
    return [float(v) for v in values]
