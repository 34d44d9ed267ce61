"""The signature table of the calculator SavedModel: one place for every name.

The graph builder, the validation after export, the warmup file and the tests all
read these constants, so a client-facing name is spelled exactly once. No
TensorFlow import here.
"""

from __future__ import annotations

from dataclasses import dataclass

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

DEFAULT_SIGNATURE = "serving_default"

#: Predict signatures and the arithmetic each one applies elementwise to ``a`` and ``b``.
PREDICT_OPERATIONS: dict[str, str] = {"add": "a + b", "subtract": "a - b", "multiply": "a * b"}
#: The predict signature that ``serving_default`` duplicates.
DEFAULT_OPERATION = "add"

CLASSIFY_SIGNATURE = "classify"
REGRESS_SIGNATURE = "regress"

#: Class labels of the classify signature, in the order of its ``classes``/``scores`` columns.
CLASS_LABELS: tuple[str, ...] = ("less", "equal", "greater")

#: The tf.Example float features the classify and regress signatures read.
EXAMPLE_FEATURES: tuple[str, ...] = ("a", "b")

#: Warmup file, relative to a version directory (TensorFlow Serving's fixed location).
WARMUP_RELATIVE_PATH = "assets.extra/tf_serving_warmup_requests"


@dataclass(frozen=True)
class SignatureSpec:
    """What TensorFlow Serving sees for one signature: method name and tensor keys."""

    name: str
    method_name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def expected_signatures() -> dict[str, SignatureSpec]:
    """Return the full signature table, keyed by signature name."""
    table = {
        name: SignatureSpec(name, PREDICT_METHOD, ("a", "b"), ("result",))
        for name in (*PREDICT_OPERATIONS, DEFAULT_SIGNATURE)
    }
    table[CLASSIFY_SIGNATURE] = SignatureSpec(
        CLASSIFY_SIGNATURE, CLASSIFY_METHOD, ("inputs",), ("classes", "scores")
    )
    table[REGRESS_SIGNATURE] = SignatureSpec(REGRESS_SIGNATURE, REGRESS_METHOD, ("inputs",), ("outputs",))
    return table


def predict_operation(signature_name: str) -> str:
    """Return the predict operation a predict signature runs (``serving_default`` is add)."""
    return DEFAULT_OPERATION if signature_name == DEFAULT_SIGNATURE else signature_name
