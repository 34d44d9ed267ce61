"""The calculator's arithmetic in plain numpy: the oracle the exported model must match.

float32 throughout, so overflow to ±inf and NaN propagation are exactly what the
model computes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model_src.signatures import CLASS_LABELS

FloatArray = npt.NDArray[np.float32]

_PREDICT = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}


def _float32(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float32)


def predict(operation: str, a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Return ``a <operation> b`` elementwise in float32 (operation: add, subtract, multiply)."""
    a32, b32 = _float32(a), _float32(b)
    if a32.shape != b32.shape:
        raise ValueError(f"a and b must have the same shape, got {a32.shape} and {b32.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        return _PREDICT[operation](a32, b32).astype(np.float32)


def classify_scores(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Return [batch, 3] scores for (less, equal, greater): 1.0 where the comparison holds.

    A NaN operand is unordered: every score of that row is 0.0, as every numpy
    comparison with NaN is False.
    """
    a32, b32 = _float32(a), _float32(b)
    columns = (np.less(a32, b32), np.equal(a32, b32), np.greater(a32, b32))
    return np.stack(columns, axis=-1).astype(np.float32)


def classify_classes(batch_size: int) -> npt.NDArray[np.bytes_]:
    """Return the [batch, 3] label matrix that goes with :func:`classify_scores`."""
    labels = np.array([label.encode() for label in CLASS_LABELS], dtype=object)
    return np.tile(labels, (batch_size, 1))


def regress(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Return the regression target a + b in float32."""
    return predict("add", a, b)
