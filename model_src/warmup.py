"""The warmup file: one TF Serving request per signature, replayed by the server on load.

TF Serving reads ``<version>/assets.extra/tf_serving_warmup_requests``, a TFRecord of
``PredictionLog`` messages, and runs each request before it marks the version
AVAILABLE, so the first real request does not pay for graph initialisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from model_src.signatures import (
    CLASSIFY_SIGNATURE,
    DEFAULT_SIGNATURE,
    PREDICT_OPERATIONS,
    REGRESS_SIGNATURE,
    WARMUP_RELATIVE_PATH,
)

#: Inputs of every warmup request (small, finite, a batch of three).
WARMUP_A: tuple[float, ...] = (1.0, 2.0, -3.0)
WARMUP_B: tuple[float, ...] = (4.0, 2.0, -5.0)


def make_example(a: float, b: float) -> tf.train.Example:
    """Return a tf.Example with the float features ``a`` and ``b`` the classify/regress signatures read."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "a": tf.train.Feature(float_list=tf.train.FloatList(value=[a])),
                "b": tf.train.Feature(float_list=tf.train.FloatList(value=[b])),
            }
        )
    )


def make_input(a: Sequence[float], b: Sequence[float]) -> input_pb2.Input:
    """Return the ``Input`` (an example list) of a Classify or Regress request."""
    request_input = input_pb2.Input()
    request_input.example_list.examples.extend(make_example(x, y) for x, y in zip(a, b, strict=True))
    return request_input


def warmup_logs(model_name: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """Yield one PredictionLog per signature of the calculator."""
    for signature_name in (*PREDICT_OPERATIONS, DEFAULT_SIGNATURE):
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
        )
        request.inputs["a"].CopyFrom(tf.make_tensor_proto(list(WARMUP_A), dtype=tf.float32))
        request.inputs["b"].CopyFrom(tf.make_tensor_proto(list(WARMUP_B), dtype=tf.float32))
        yield prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    classify = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=CLASSIFY_SIGNATURE),
        input=make_input(WARMUP_A, WARMUP_B),
    )
    yield prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(request=classify))
    regress = regression_pb2.RegressionRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=REGRESS_SIGNATURE),
        input=make_input(WARMUP_A, WARMUP_B),
    )
    yield prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(request=regress))


def write_warmup(version_dir: Path, model_name: str) -> Path:
    """Write the warmup file into a version directory and return its path."""
    path = version_dir / WARMUP_RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_logs(model_name):
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: Path) -> list[prediction_log_pb2.PredictionLog]:
    """Parse every record of a version's warmup file."""
    path = version_dir / WARMUP_RELATIVE_PATH
    logs = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        logs.append(prediction_log_pb2.PredictionLog.FromString(record))
    return logs
