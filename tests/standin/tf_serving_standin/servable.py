"""One loaded model version: a SavedModel run with real TensorFlow.

Signature metadata (method names, tensor infos) comes from the SavedModel's
MetaGraphDef, as TF Serving sees it; inference calls the loaded signature
functions (tf.saved_model.load). Validation and error messages follow TF
Serving's predict_util.cc, classifier.cc and regressor.cc.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tf_serving_standin.errors import ServingError, from_exception, invalid_argument
from tf_serving_standin.tensors import dtype_name, numpy_dtype

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def _read_meta_graph(path: Path, tags: set[str]) -> meta_graph_pb2.MetaGraphDef:
    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if pb.exists():
            saved_model.ParseFromString(pb.read_bytes())
        elif pbtxt.exists():
            text_format.Parse(pbtxt.read_text(), saved_model)
        else:
            raise ServingError(
                "NOT_FOUND",
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}",
            )
    except (DecodeError, text_format.ParseError) as exc:
        raise ServingError("DATA_LOSS", f"Can't parse {pb} as binary proto") from exc
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == tags:
            return meta_graph
    available = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ServingError(
        "NOT_FOUND",
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(sorted(tags))} }}. "
        f"To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        f"`saved_model_cli` (available: {available})",
    )


class Servable:
    """A loaded SavedModel version; thread-safe for concurrent requests."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        tags: Sequence[str] = ("serve",),
        delay_seconds: float = 0.0,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        #: Test-only (--standin_test_delay_file): time added to every inference call.
        self.delay_seconds = delay_seconds
        tag_set = set(tags)
        self.meta_graph = _read_meta_graph(path, tag_set)
        self.signature_defs = dict(self.meta_graph.signature_def)
        try:
            self._loaded = tf.saved_model.load(str(path), tags=list(tag_set))
        except Exception as exc:
            raise from_exception(exc) from exc
        self._functions = self._loaded.signatures

    # -- signature lookup --------------------------------------------------

    def _function(self, signature_name: str):
        try:
            return self._functions[signature_name]
        except KeyError:
            raise ServingError("INTERNAL", f"Signature {signature_name} has no loaded function") from None

    def _run(self, signature_name: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = self.signature_defs[signature_name]
        tensors = {}
        for key, value in feeds.items():
            info = signature.inputs[key]
            if value.dtype == object:
                tensors[key] = tf.constant(value, dtype=tf.string)
            else:
                tensors[key] = tf.constant(value)
            if tensors[key].dtype.as_datatype_enum != info.dtype:
                raise invalid_argument(
                    f"Expects arg[{sorted(feeds).index(key)}] to be {dtype_name(info.dtype)} "
                    f"but {dtype_name(tensors[key].dtype.as_datatype_enum)} is provided"
                )
        try:
            outputs = self._function(signature_name)(**tensors)
        except ServingError:
            raise
        except (TypeError, ValueError) as exc:
            raise invalid_argument(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
        except Exception as exc:
            raise from_exception(exc, "INVALID_ARGUMENT") from exc
        if self.delay_seconds > 0:
            time.sleep(self.delay_seconds)
        return {key: value.numpy() for key, value in outputs.items()}

    # -- Predict -------------------------------------------------------------

    def predict(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> tuple[str, dict[str, np.ndarray]]:
        """Run a Predict; return (signature name used, outputs by alias)."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(signature_name)
        if signature is None:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.')
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                "INTERNAL",
                "Expected prediction signature method_name to be one of {"
                f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}",
            )
        sent, wanted = set(inputs), set(signature.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not signature.defaults):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}."
            )
        for key in sorted(sent - wanted):
            raise invalid_argument(f"Input to signature '{signature_name}' not found: {key}")
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                    f"the set {{{','.join(sorted(signature.outputs))}}}."
                )
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        outputs = self._run(signature_name, inputs)
        if output_filter:
            outputs = {alias: outputs[alias] for alias in output_filter}
        return signature_name, outputs

    # -- Classify / Regress ----------------------------------------------------

    def _example_signature(self, signature_name: str, method: str, kind: str):
        signature_name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(signature_name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {signature_name}")
        if signature.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}"
            )
        if len(signature.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        if "inputs" not in signature.inputs:
            raise ServingError("FAILED_PRECONDITION", f"No {kind} inputs found in SignatureDef: {signature}")
        return signature_name, signature

    def classify(self, signature_name: str, examples: Sequence[bytes]) -> tuple[str, list[list[tuple]]]:
        """Run a Classify; return (signature name, per example a list of (label, score))."""
        signature_name, signature = self._example_signature(signature_name, CLASSIFY_METHOD, "classification")
        if len(signature.outputs) not in (1, 2):
            raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            raise ServingError(
                "FAILED_PRECONDITION",
                'Expected classification signature outputs to contain at least one of "classes" or '
                f'"scores". Signature was: {signature}',
            )
        if not examples:
            raise invalid_argument("Input is empty.")
        outputs = self._run(signature_name, {"inputs": np.array(list(examples), dtype=object)})
        classes, scores = outputs.get("classes"), outputs.get("scores")
        for name, tensor, expected in (("classes", classes, np.object_), ("scores", scores, np.float32)):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise invalid_argument(
                    f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
                )
            if tensor.dtype != expected:
                want = "DT_STRING" if name == "classes" else "DT_FLOAT"
                raise invalid_argument(f"Expected {name} Tensor of {want}. Got: {tensor.dtype}")
            if tensor.shape[0] != len(examples):
                raise invalid_argument(
                    f"Expected {name} output batch size of {len(examples)}. Got: {tensor.shape[0]}"
                )
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise invalid_argument(
                f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} "
                f"vs. {scores.shape[1]}"
            )
        num_classes = (classes if classes is not None else scores).shape[1]
        result = []
        for i in range(len(examples)):
            row = []
            for c in range(num_classes):
                label = classes[i, c] if classes is not None else None
                score = float(scores[i, c]) if scores is not None else None
                row.append((label, score))
            result.append(row)
        return signature_name, result

    def regress(self, signature_name: str, examples: Sequence[bytes]) -> tuple[str, list[float]]:
        """Run a Regress; return (signature name, one value per example)."""
        signature_name, signature = self._example_signature(signature_name, REGRESS_METHOD, "regression")
        if len(signature.outputs) != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "outputs" not in signature.outputs:
            raise ServingError(
                "FAILED_PRECONDITION", f"No regression outputs found in SignatureDef: {signature}"
            )
        if not examples:
            raise invalid_argument("Input is empty.")
        outputs = self._run(signature_name, {"inputs": np.array(list(examples), dtype=object)})
        values = outputs["outputs"]
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise invalid_argument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                f"{list(values.shape)}"
            )
        if values.dtype != np.float32:
            raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
        if values.shape[0] != len(examples):
            raise invalid_argument(
                f"Input batch size did not match output batch size: {len(examples)} vs. {values.shape[0]}"
            )
        return signature_name, [float(v) for v in values.reshape(-1)]

    # -- helpers for the APIs ---------------------------------------------------

    def input_dtype(self, signature_name: str, key: str):
        """numpy dtype of a signature input (for JSON decoding)."""
        return numpy_dtype(self.signature_defs[signature_name].inputs[key].dtype)

    def warmup_records(self) -> list[bytes]:
        """The serialized PredictionLog records of the version's warmup file (may be empty)."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return []
        try:
            records = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
        except Exception as exc:
            raise from_exception(exc, "DATA_LOSS") from exc
        if len(records) > MAX_WARMUP_RECORDS:
            raise invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        return records
