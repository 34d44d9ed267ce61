"""Check an exported SavedModel the way TF Serving will use it, before it is published.

The model is loaded with the SavedModel loader into a session and every signature is
run by the tensor names in its SignatureDef, which is what TF Serving does. Results
are compared with the numpy reference (NaN where numpy has NaN, ±inf where numpy
overflows), the signature table is compared with :func:`expected_signatures`, a length
mismatch must be rejected, and every warmup record must replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow_serving.apis import input_pb2, prediction_log_pb2

from model_src import reference
from model_src.signatures import (
    CLASSIFY_SIGNATURE,
    DEFAULT_SIGNATURE,
    PREDICT_OPERATIONS,
    REGRESS_SIGNATURE,
    expected_signatures,
    predict_operation,
)
from model_src.warmup import make_input, read_warmup

v1 = tf.compat.v1

#: Fixed validation inputs: signs, zeros (incl. -0.0), float32 overflow, NaN and ±inf.
_NAN, _INF = float("nan"), float("inf")
CHECK_A: tuple[float, ...] = (-3.0, 0.0, -0.0, 2.5, 1e38, -3e38, 3e38, _NAN, _INF, _INF, 0.0, -_INF)
CHECK_B: tuple[float, ...] = (4.0, 0.0, 0.0, 2.5, 1e38, 3e38, 3e38, 1.0, _INF, 0.0, _NAN, 2.0)


class ValidationError(Exception):
    """The exported model does not behave as the signature table and the numpy reference say."""


class LoadedModel:
    """A SavedModel loaded into its own graph and session, run by SignatureDef tensor names."""

    def __init__(self, export_dir: Path) -> None:
        self.graph = tf.Graph()
        self.session = v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = v1.saved_model.loader.load(
                self.session, [v1.saved_model.tag_constants.SERVING], str(export_dir)
            )
        self.signature_defs = dict(meta_graph.signature_def)

    def close(self) -> None:
        """Release the session."""
        self.session.close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, signature_name: str, inputs: Mapping[str, npt.ArrayLike]) -> dict[str, np.ndarray]:
        """Run one signature; inputs and the returned outputs are keyed as in the SignatureDef."""
        signature = self.signature_defs[signature_name]
        if set(inputs) != set(signature.inputs):
            raise ValueError(
                f"{signature_name} takes inputs {sorted(signature.inputs)}, got {sorted(inputs)}"
            )
        feeds = {signature.inputs[key].name: value for key, value in inputs.items()}
        fetches = {key: info.name for key, info in signature.outputs.items()}
        return self.session.run(fetches, feed_dict=feeds)

    def predict(self, signature_name: str, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
        """Run a predict signature on float32 a and b and return ``result``."""
        feeds = {"a": np.asarray(a, np.float32), "b": np.asarray(b, np.float32)}
        return self.run(signature_name, feeds)["result"]

    def run_examples(self, signature_name: str, request_input: input_pb2.Input) -> dict[str, np.ndarray]:
        """Run a classify or regress signature on the examples of a request ``Input``."""
        examples = request_input.example_list.examples
        serialized = np.array([example.SerializeToString() for example in examples], dtype=object)
        return self.run(signature_name, {"inputs": serialized})

    def replay(self, log: prediction_log_pb2.PredictionLog) -> dict[str, np.ndarray]:
        """Run the request recorded in a PredictionLog (predict, classify or regress)."""
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request = log.predict_log.request
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            return self.run(request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs)
        if kind in ("classify_log", "regress_log"):
            request = getattr(log, kind).request
            return self.run_examples(request.model_spec.signature_name or DEFAULT_SIGNATURE, request.input)
        raise ValueError(f"unsupported warmup record type {kind!r}")


def _same(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Equal values, shapes and dtypes; NaN matches NaN, and the sign of zero and inf counts."""
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return False
    if actual.dtype.kind == "f":
        same_nan = np.array_equal(np.isnan(actual), np.isnan(expected))
        finite = ~np.isnan(expected)
        same_sign = np.array_equal(np.signbit(actual[finite]), np.signbit(expected[finite]))
        return same_nan and same_sign and np.array_equal(actual[finite], expected[finite])
    return np.array_equal(actual, expected)


def _check_signature_table(model: LoadedModel, problems: list[str]) -> None:
    expected = expected_signatures()
    if set(model.signature_defs) != set(expected):
        problems.append(f"signatures are {sorted(model.signature_defs)}, expected {sorted(expected)}")
    for name, spec in expected.items():
        signature = model.signature_defs.get(name)
        if signature is None:
            continue
        if signature.method_name != spec.method_name:
            problems.append(f"{name}: method name {signature.method_name!r}, expected {spec.method_name!r}")
        if set(signature.inputs) != set(spec.inputs) or set(signature.outputs) != set(spec.outputs):
            problems.append(
                f"{name}: inputs {sorted(signature.inputs)} outputs {sorted(signature.outputs)}, "
                f"expected {sorted(spec.inputs)} {sorted(spec.outputs)}"
            )


def _check_results(model: LoadedModel, problems: list[str]) -> None:
    a, b = np.array(CHECK_A, np.float32), np.array(CHECK_B, np.float32)
    for name in (*PREDICT_OPERATIONS, DEFAULT_SIGNATURE):
        actual = model.predict(name, a, b)
        expected = reference.predict(predict_operation(name), a, b)
        if not _same(actual, expected):
            problems.append(f"{name}: got {actual.tolist()}, numpy says {expected.tolist()}")
        try:
            model.predict(name, a, b[:1])
        except tf.errors.InvalidArgumentError:
            pass
        else:
            problems.append(f"{name}: a of length {a.size} with b of length 1 was not rejected")
    classified = model.run_examples(CLASSIFY_SIGNATURE, make_input(CHECK_A, CHECK_B))
    if not _same(classified["scores"], reference.classify_scores(a, b)):
        problems.append(f"{CLASSIFY_SIGNATURE}: scores {classified['scores'].tolist()} differ from numpy")
    if not _same(classified["classes"], reference.classify_classes(a.size)):
        problems.append(f"{CLASSIFY_SIGNATURE}: classes {classified['classes'].tolist()} are not the labels")
    regressed = model.run_examples(REGRESS_SIGNATURE, make_input(CHECK_A, CHECK_B))["outputs"]
    expected = reference.regress(a, b)
    if not _same(regressed, expected):
        problems.append(f"{REGRESS_SIGNATURE}: got {regressed.tolist()}, numpy says {expected.tolist()}")


def _check_warmup(model: LoadedModel, export_dir: Path, problems: list[str]) -> None:
    logs = read_warmup(export_dir)
    covered: set[str] = set()
    for log in logs:
        request = getattr(log, log.WhichOneof("log_type")).request
        covered.add(request.model_spec.signature_name)
        try:
            model.replay(log)
        except (tf.errors.OpError, ValueError, KeyError) as error:
            problems.append(f"warmup request for {request.model_spec.signature_name!r} fails: {error}")
    missing = set(expected_signatures()) - covered
    if missing:
        problems.append(f"warmup file has no request for {sorted(missing)}")


def validate_export(export_dir: Path) -> None:
    """Load export_dir and raise ValidationError listing every difference from the contract."""
    problems: list[str] = []
    with LoadedModel(export_dir) as model:
        _check_signature_table(model, problems)
        if not problems:
            _check_results(model, problems)
            _check_warmup(model, export_dir, problems)
    if problems:
        raise ValidationError("; ".join(problems))
