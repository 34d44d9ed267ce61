"""Unit tests of the stand-in's pieces that need no container: flags, config, JSON mapping, policies."""

from __future__ import annotations

import gc
import math
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2, model_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2
from tf_serving_standin import config, core, errors, flags, rest
from tf_serving_standin.servable import Servable


def test_flags_defaults_match_tf_serving() -> None:
    options = flags.parse(["--model_base_path=/models/m"])
    assert (options.port, options.rest_api_port, options.model_name) == (8500, 0, "default")
    assert options.file_system_poll_wait_seconds == 1
    assert options.model_config_file_poll_wait_seconds == 0
    assert options.enable_model_warmup is True


def test_flags_last_value_wins_and_bools() -> None:
    options = flags.parse(
        ["--rest_api_port=8501", "--model_name=a", "--model_base_path=/m", "--rest_api_port=0"]
    )
    assert options.rest_api_port == 0
    assert flags.parse(["--model_base_path=/m", "--enable_model_warmup=false"]).enable_model_warmup is False
    assert flags.parse(["--model_base_path=/m", "--enable_batching"]).enable_batching is True


def test_gpu_memory_fraction_flag_is_tf_servings() -> None:
    """--per_process_gpu_memory_fraction (main.cc: float, default 0, TF decides) is accepted as the real
    server accepts it, also without a GPU (where TensorFlow has no GPU memory to bound), and ignored."""
    assert flags.parse(["--model_base_path=/m"]).per_process_gpu_memory_fraction == 0.0
    options = flags.parse(["--model_base_path=/m", "--per_process_gpu_memory_fraction=0.45"])
    assert options.per_process_gpu_memory_fraction == 0.45
    assert "per_process_gpu_memory_fraction" not in flags.IMPLEMENTED
    with pytest.raises(flags.FlagError, match="Illegal value 'half'"):
        flags.parse(["--model_base_path=/m", "--per_process_gpu_memory_fraction=half"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--model_base_path=/m", "--no_such_flag=1"],
        ["--model_base_path=/m", "positional"],
        ["--port=abc"],
        [],
    ],
)
def test_flags_reject_unknown_or_bad(argv: list[str]) -> None:
    with pytest.raises(flags.FlagError):
        flags.parse(argv)


def test_model_config_text_format_and_validation() -> None:
    parsed = config.parse_model_config(
        'model_config_list { config { name: "calculator" base_path: "/models/calculator" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 versions: 2 } } '
        'version_labels { key: "stable" value: 1 } } }'
    )
    config.validate_model_config(parsed)
    assert list(parsed.model_config_list.config[0].model_version_policy.specific.versions) == [1, 2]
    with pytest.raises(errors.ServingError) as info:
        config.parse_model_config("model_config_list { config { nme: 'x' } }")
    assert info.value.code == "INVALID_ARGUMENT"
    duplicate = config.parse_model_config(
        "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }"
    )
    with pytest.raises(errors.ServingError):
        config.validate_model_config(duplicate)
    bad_label = config.parse_model_config(
        "model_config_list { config { name: 'a' base_path: '/a' "
        "version_labels { key: 'no-dash' value: 1 } } }"
    )
    with pytest.raises(errors.ServingError, match="Invalid label name"):
        config.validate_model_config(bad_label)


def test_monitoring_config_defaults_path(tmp_path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }")
    assert config.read_monitoring_config(str(path)).prometheus_config.path == "/monitoring/prometheus/metrics"


def _policy(text: str) -> model_server_config_pb2.ModelConfig:
    model = model_server_config_pb2.ModelConfig(name="m", base_path="/m")
    if text:
        from google.protobuf import text_format

        text_format.Parse(text, model.model_version_policy)
    return model


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", {7}),
        ("latest { num_versions: 2 }", {3, 7}),
        ("all {}", {1, 3, 7}),
        ("specific { versions: 1 versions: 5 }", {1}),
    ],
)
def test_version_policies(policy: str, expected: set[int]) -> None:
    assert core.aspired_versions(_policy(policy), [1, 3, 7]) == expected


def test_disk_versions_ignores_non_integer_names(tmp_path) -> None:
    for name in ("1", "10", "2", "tmp", ".staging-3", "4x"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    assert core.disk_versions(str(tmp_path)) == [1, 2, 10]
    with pytest.raises(errors.ServingError) as info:
        core.disk_versions(str(tmp_path / "missing"))
    assert info.value.code == "NOT_FOUND"


def test_http_status_mapping_follows_http_server_cc() -> None:
    expected = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503}
    for code, status in expected.items():
        assert errors.ServingError(code, "x").http_status == status


def test_json_row_format_named_inputs() -> None:
    request = predict_pb2.PredictRequest()
    infos = {"a": types_pb2.DT_FLOAT, "b": types_pb2.DT_FLOAT}
    doc = {"instances": [{"a": 1, "b": 2.5}, {"a": 3, "b": float("nan")}]}
    assert rest.fill_predict_request(doc, infos, request) == "row"
    a, b = (tf.make_ndarray(request.inputs[key]) for key in ("a", "b"))
    assert a.dtype == np.float32
    assert a.tolist() == [1.0, 3.0]
    assert b[0] == 2.5
    assert math.isnan(b[1])


def test_json_types_are_checked() -> None:
    with pytest.raises(errors.ServingError, match="is not of expected type: float"):
        rest.json_to_ndarray([1.0, "x"], types_pb2.DT_FLOAT)
    with pytest.raises(errors.ServingError, match="is not of expected type: int32"):
        rest.json_to_ndarray([1.5], types_pb2.DT_INT32)
    with pytest.raises(errors.ServingError):
        rest.json_to_ndarray([[1.0], [1.0, 2.0]], types_pb2.DT_FLOAT)
    nan = rest.json_to_ndarray([float("nan"), float("inf")], types_pb2.DT_FLOAT)
    assert math.isnan(nan[0])
    assert math.isinf(nan[1])
    data = rest.json_to_ndarray([{"b64": "aGVsbG8="}, "plain"], types_pb2.DT_STRING)
    assert list(data) == [b"hello", b"plain"]


def test_json_both_or_neither_format_is_an_error() -> None:
    infos = {"x": types_pb2.DT_FLOAT}
    with pytest.raises(errors.ServingError, match="only one of 'inputs' or 'instances'"):
        rest.fill_predict_request({"instances": [1.0], "inputs": [1.0]}, infos, predict_pb2.PredictRequest())
    with pytest.raises(errors.ServingError, match="Missing 'inputs' or 'instances' key"):
        rest.fill_predict_request({}, infos, predict_pb2.PredictRequest())


def test_predict_response_json_shapes() -> None:
    one = {"y": np.array([1.5, 2.0], dtype=np.float32)}
    assert rest.predict_response_json(one, "row") == {"predictions": [1.5, 2.0]}
    assert rest.predict_response_json(one, "columnar") == {"outputs": [1.5, 2.0]}
    two = {"y": np.array([1.0, 2.0], dtype=np.float32), "z_bytes": np.array([b"\x00", b"a"], dtype=object)}
    assert rest.predict_response_json(two, "row") == {
        "predictions": [{"y": 1.0, "z_bytes": {"b64": "AA=="}}, {"y": 2.0, "z_bytes": {"b64": "YQ=="}}]
    }
    with pytest.raises(errors.ServingError, match="inconsistent batch size"):
        rest.predict_response_json({"y": np.zeros(2), "z": np.zeros(3)}, "row")


def test_examples_json_to_tf_example_types() -> None:
    request_input = input_pb2.Input()
    rest.fill_example_input(
        {"context": {"c": "ctx"}, "examples": [{"a": 1, "b": 2.0, "s": {"b64": "AA=="}}]}, request_input
    )
    example = request_input.example_list_with_context.examples[0]
    assert list(example.features.feature["a"].int64_list.value) == [1]  # whole JSON numbers are int64
    assert list(example.features.feature["b"].float_list.value) == [2.0]
    assert list(example.features.feature["s"].bytes_list.value) == [b"\x00"]
    context = request_input.example_list_with_context.context
    assert list(context.features.feature["c"].bytes_list.value) == [b"ctx"]


def _server_core(**options) -> core.ServerCore:
    """A server core with the server's defaults, no warmup (``options`` override)."""
    settings = {
        "poll_wait_seconds": 1,
        "enable_warmup": False,
        "warmup_iterations": 1,
        "saved_model_tags": ["serve"],
        "allow_labels_for_unavailable": False,
    }
    return core.ServerCore(**(settings | options))


def test_test_delay_flag_slows_only_the_marked_version(calculator_version, tmp_path) -> None:
    """--standin_test_delay_file (test-only, not TF Serving's): a marked version answers late; others
    and a server without the flag answer at once. The release drills' "slow version" is made so."""
    for version in (1, 2):
        shutil.copytree(calculator_version, tmp_path / str(version))
    (tmp_path / "2" / "standin-delay-ms").write_text("300\n")
    marked = _server_core(test_delay_file="standin-delay-ms")
    assert marked._test_delay(tmp_path / "1") == 0
    assert marked._test_delay(tmp_path / "2") == pytest.approx(0.3)
    unflagged = _server_core()
    assert unflagged._test_delay(tmp_path / "2") == 0
    assert "standin_test_delay_file" in flags.IMPLEMENTED
    assert flags.parse(["--model_base_path=/m", "--standin_test_delay_file=x"]).standin_test_delay_file == "x"

    inputs = {"a": np.array([1.0], np.float32), "b": np.array([2.0], np.float32)}
    for version, slowest in ((1, 0.25), (2, None)):
        path = tmp_path / str(version)
        servable = Servable("calculator", version, path, delay_seconds=marked._test_delay(path))
        started = time.monotonic()
        _, outputs = servable.predict("add", inputs)
        took = time.monotonic() - started
        assert outputs["result"].tolist() == [3.0]
        if slowest is None:
            assert took >= 0.3
        else:
            assert took < slowest


def test_grpc_channel_arguments_as_server_cc_reads_them() -> None:
    from tf_serving_standin.grpc_service import parse_channel_arguments

    assert parse_channel_arguments("") == []
    assert parse_channel_arguments(
        "grpc.keepalive_permit_without_calls=1,grpc.http2.min_ping_interval_without_data_ms=4000"
    ) == [("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_ping_interval_without_data_ms", 4000)]
    # Not a 32-bit integer: a string, as safe_strto32 fails; a third "=" part is dropped.
    assert parse_channel_arguments("a=2147483648,b=text,c=1=2,d=-5") == [
        ("a", "2147483648"), ("b", "text"), ("c", 1), ("d", -5),
    ]  # fmt: skip
    with pytest.raises(errors.ServingError, match="entry 'nokey' is not key=value"):
        parse_channel_arguments("a=1,nokey")


def test_a_loaded_version_is_out_of_the_collectors_reach(calculator_version, tmp_path) -> None:
    """TF Serving (C++) has no collector pauses: the stand-in freezes what a load leaves alive, so
    a full collection does not walk TensorFlow's and the model's objects (tf_serving_standin.heap)."""
    shutil.copytree(calculator_version, tmp_path / "1")
    server = _server_core()
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    server.load_initial(config.single_model_config("calculator", str(tmp_path)))
    try:
        servable = server.servable(model_pb2.ModelSpec(name="calculator"))
        assert servable.version == 1
        assert gc.get_freeze_count() > 10_000
        tracked = {id(obj) for obj in gc.get_objects()}
        assert id(servable) not in tracked
        assert len(tracked) < gc.get_freeze_count()
    finally:
        server.stop()
        gc.unfreeze()
