"""The warmup file parses as PredictionLog records, covers every signature and replays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from model_src.validate import LoadedModel

WARMUP = "assets.extra/tf_serving_warmup_requests"
LOG_TYPE_OF_SIGNATURE = {
    "add": "predict_log",
    "subtract": "predict_log",
    "multiply": "predict_log",
    "serving_default": "predict_log",
    "classify": "classify_log",
    "regress": "regress_log",
}


@pytest.fixture(scope="module")
def warmup_logs(version_dir: Path) -> list[prediction_log_pb2.PredictionLog]:
    records = tf.data.TFRecordDataset(str(version_dir / WARMUP)).as_numpy_iterator()
    return [prediction_log_pb2.PredictionLog.FromString(record) for record in records]


def _request(log: prediction_log_pb2.PredictionLog) -> object:
    return getattr(log, log.WhichOneof("log_type")).request


def test_one_record_per_signature(warmup_logs: list[prediction_log_pb2.PredictionLog]) -> None:
    kinds = {_request(log).model_spec.signature_name: log.WhichOneof("log_type") for log in warmup_logs}
    assert kinds == LOG_TYPE_OF_SIGNATURE
    assert len(warmup_logs) == len(LOG_TYPE_OF_SIGNATURE)


def test_requests_name_the_model(warmup_logs: list[prediction_log_pb2.PredictionLog]) -> None:
    assert {_request(log).model_spec.name for log in warmup_logs} == {"calculator"}


def test_every_record_replays(
    loaded_model: LoadedModel, warmup_logs: list[prediction_log_pb2.PredictionLog]
) -> None:
    for log in warmup_logs:
        request = _request(log)
        outputs = loaded_model.replay(log)
        name = request.model_spec.signature_name
        if log.HasField("predict_log"):
            a, b = tf.make_ndarray(request.inputs["a"]), tf.make_ndarray(request.inputs["b"])
            operation = {"serving_default": np.add, "add": np.add, "subtract": np.subtract}.get(
                name, np.multiply
            )
            np.testing.assert_array_equal(outputs["result"], operation(a, b))
        else:
            examples = request.input.example_list.examples
            a = np.array([e.features.feature["a"].float_list.value[0] for e in examples], np.float32)
            b = np.array([e.features.feature["b"].float_list.value[0] for e in examples], np.float32)
            assert len(examples) > 0
            if name == "regress":
                np.testing.assert_array_equal(outputs["outputs"], a + b)
            else:
                scores = np.stack([a < b, a == b, a > b], axis=-1).astype(np.float32)
                np.testing.assert_array_equal(outputs["scores"], scores)
