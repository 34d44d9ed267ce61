"""Conformance of the stand-in image's model lifecycle: versions, labels, reloads, failures, SIGTERM.

One container runs with a model config file polled every second, the file
system polled every second and REST off (--rest_api_port=0, as in TF Serving).
The tests run in file order and build on each other's state.
"""

from __future__ import annotations

import re
import shutil
import threading
import time

import grpc
import pytest
import requests
import tensorflow as tf
from standin_support import add_version, calculator_model_base, docker, write_config
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

pytestmark = pytest.mark.docker

POLL_SECONDS = 1
#: A new version must serve within the poll interval plus the time a load and warmup take here.
LOAD_ALLOWANCE_SECONDS = 20

LATEST = """
model_config_list {
  config { name: "calculator" base_path: "/models/calculator" model_platform: "tensorflow" }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, calculator_version, container_factory):
    base = calculator_model_base(tmp_path_factory, "lifecycle-models", calculator_version)
    write_config(base / "models.config", LATEST)
    container = container_factory(
        base,
        "--model_config_file=/models/models.config",
        f"--model_config_file_poll_wait_seconds={POLL_SECONDS}",
        f"--file_system_poll_wait_seconds={POLL_SECONDS}",
        "--rest_api_port=0",
        env={"MODEL_NAME": "calculator"},
        label="lifecycle",
    )
    container.extra["source"] = calculator_version
    return container


@pytest.fixture(scope="module")
def stubs(server):
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(server.channel),
        model_service_pb2_grpc.ModelServiceStub(server.channel),
    )


def add_request(label: str | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "calculator"
    if label:
        request.model_spec.version_label = label
    request.inputs["a"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto([3.0], dtype=tf.float32))
    return request


def statuses(model_stub) -> dict[int, tuple[str, int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "calculator"
    response = model_stub.GetModelStatus(request, timeout=10)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return {
        s.version: (state_name(s.state), s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    }


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def wait_for_state(model_stub, version: int, state: str, timeout: float) -> dict[int, tuple[str, int, str]]:
    """Wait until GetModelStatus shows `version` in `state`; return all statuses."""

    def check():
        current = statuses(model_stub)
        return current if current.get(version, ("",))[0] == state else None

    return wait_for(check, timeout, f"version {version} to be {state}")


def reload(model_stub, text: str) -> model_management_pb2.ReloadConfigResponse:
    from google.protobuf import text_format

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return model_stub.HandleReloadConfigRequest(request, timeout=30)


def test_rest_port_zero_disables_rest(server, stubs):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.rest_url}/v1/models/calculator", timeout=5)
    assert stubs[0].Predict(add_request(), timeout=10).model_spec.version.value == 1


def test_new_version_under_load_serves_without_failures(server, stubs):
    predict_stub, model_stub = stubs
    results: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def load_loop():
        while not stop.is_set():
            try:
                response = predict_stub.Predict(add_request(), timeout=10)
                ok = list(response.outputs["result"].float_val) == [5.0]
                results.append(
                    (time.monotonic(), response.model_spec.version.value if ok else "wrong answer")
                )
            except grpc.RpcError as exc:
                results.append((time.monotonic(), f"{exc.code()}: {exc.details()}"))

    threads = [threading.Thread(target=load_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        published = time.monotonic()
        add_version(server.model_base / "calculator", server.extra["source"], 2)
        first_v2 = wait_for(
            lambda: next((t for t, v in list(results) if v == 2 and t > published), None),
            POLL_SECONDS + LOAD_ALLOWANCE_SECONDS,
            "version 2 to serve",
        )
        time.sleep(2.0)  # keep the load on while version 1 is unloaded
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failures = [v for _, v in results if not isinstance(v, int)]
    assert failures == [], failures[:5]
    assert len(results) > 20
    after = [v for t, v in results if t > first_v2 + 0.5]
    assert after
    assert set(after) == {2}
    # Within one poll interval, plus the load and warmup time the server itself reports.
    pattern = r"Successfully loaded servable version \{name: calculator version: 2\} in ([0-9.]+)s"
    load = re.search(pattern, server.logs())
    assert load, "the server did not log the load of version 2"
    delay = first_v2 - published
    assert delay <= POLL_SECONDS + float(load.group(1)) + 1.0
    print(f"version 2 served {delay:.2f}s after it appeared (load {load.group(1)}s), {len(results)} requests")
    status = wait_for_state(model_stub, 1, "END", 10)
    assert status[2][0] == "AVAILABLE"


def test_label_moved_by_config_reload(stubs):
    predict_stub, model_stub = stubs
    config = (
        'model_config_list { config { name: "calculator" base_path: "/models/calculator" '
        "model_version_policy { specific { versions: 1 versions: 2 } } {labels} } }"
    )
    assert reload(model_stub, config.replace("{labels}", "")).status.error_code == 0
    wait_for_state(model_stub, 1, "AVAILABLE", 30)

    response = reload(model_stub, config.replace("{labels}", 'version_labels { key: "stable" value: 1 }'))
    assert response.status.error_code == 0, response.status.error_message
    assert predict_stub.Predict(add_request("stable"), timeout=10).model_spec.version.value == 1

    response = reload(model_stub, config.replace("{labels}", 'version_labels { key: "stable" value: 2 }'))
    assert response.status.error_code == 0, response.status.error_message
    assert predict_stub.Predict(add_request("stable"), timeout=10).model_spec.version.value == 2

    # A label may only point at an available version (serving_config.md); the RPC fails.
    with pytest.raises(grpc.RpcError) as info:
        reload(model_stub, config.replace("{labels}", 'version_labels { key: "stable" value: 3 }'))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not currently available for inference" in info.value.details()
    assert predict_stub.Predict(add_request("stable"), timeout=10).model_spec.version.value == 2


def test_config_file_poll_applies_new_config(server, stubs):
    predict_stub, _ = stubs
    labelled = LATEST.replace(
        'model_platform: "tensorflow" }',
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 versions: 2 } } '
        'version_labels { key: "canary" value: 1 } }',
    )
    write_config(server.model_base / "models.config", labelled)
    response = wait_for(
        lambda: _try_predict(predict_stub, add_request("canary")),
        POLL_SECONDS + 10,
        "the polled config's label",
    )
    assert response.model_spec.version.value == 1


def _try_predict(stub, request):
    try:
        return stub.Predict(request, timeout=10)
    except grpc.RpcError:
        return None


def test_corrupt_version_keeps_previous_serving(server, stubs):
    predict_stub, model_stub = stubs
    write_config(server.model_base / "models.config", LATEST)  # latest { 1 } again
    wait_for_state(model_stub, 1, "END", 15)
    staging = server.model_base / "calculator" / ".staging-3"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    staging.rename(server.model_base / "calculator" / "3")
    status = wait_for_state(model_stub, 3, "END", 15)
    _, code, message = status[3]
    assert code != 0
    assert "saved_model.pb" in message
    assert status[2][0] == "AVAILABLE"
    assert predict_stub.Predict(add_request(), timeout=10).model_spec.version.value == 2


def test_failing_warmup_fails_the_load(server, stubs):
    predict_stub, model_stub = stubs
    version_dir = server.model_base / "calculator" / ".staging-4"
    shutil.copytree(server.extra["source"], version_dir)
    request = add_request()
    request.model_spec.signature_name = "no_such_signature"
    warmup = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(warmup)) as writer:
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
    version_dir.rename(server.model_base / "calculator" / "4")
    status = wait_for_state(model_stub, 4, "END", 20)
    assert 'Serving signature key "no_such_signature" not found.' in status[4][2]
    assert predict_stub.Predict(add_request(), timeout=10).model_spec.version.value == 2


#: How long each call to the slow test model takes at least (its dataset sleeps; see below).
SLOW_CALL_SECONDS = 2.0

SLOW_AND_LATEST = LATEST.replace(
    "\n}\n",
    '\n  config { name: "slow" base_path: "/models/slow" model_platform: "tensorflow" }\n}\n',
)


def export_slow_model(directory) -> None:
    """A test-fixture SavedModel whose one signature takes SLOW_CALL_SECONDS or more per call.

    It returns its input after a tf.data sleep: a call that stays inside the server's handler for
    seconds, which a server that dies on SIGTERM cuts. Made here, never by the production export.
    """
    from tensorflow.python.data.experimental.ops import testing

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            # get_single_element reads the dataset twice (the element, then the end): half each.
            sleep = testing.sleep(int(SLOW_CALL_SECONDS / 2 * 1_000_000))
            return {"y": tf.data.Dataset.from_tensors(x).apply(sleep).get_single_element()}

    module = Slow()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def slow_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([4.0, 5.0], dtype=tf.float32))
    return request


def test_sigterm_with_an_init_ends_the_server_at_once_cutting_its_calls(
    tmp_path_factory, calculator_version, container_factory, tmp_path
):
    """As TF Serving (no SIGTERM handler, tensorflow/serving#1853) under an init, as the role runs it.

    The init passes SIGTERM to the entrypoint's shell, which dies, and the server with the
    container: no drain. A call inside a handler ends UNAVAILABLE at its client.
    """
    base = calculator_model_base(tmp_path_factory, "sigterm-models", calculator_version)
    export_slow_model(tmp_path / "slow-1")
    (base / "slow").mkdir()
    add_version(base / "slow", tmp_path / "slow-1", 1)
    write_config(base / "models.config", SLOW_AND_LATEST)
    container = container_factory(
        base,
        "--model_config_file=/models/models.config",
        "--rest_api_port=0",
        env={"MODEL_NAME": "calculator"},
        label="sigterm",
        docker_args=["--init"],
    )
    predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(container.channel)
    wait_for(
        lambda: _try_predict(predict_stub, slow_request()),
        LOAD_ALLOWANCE_SECONDS + SLOW_CALL_SECONDS,
        "the slow test model",
    )
    slow: dict[str, object] = {}

    def slow_call():
        try:
            slow["response"] = predict_stub.Predict(slow_request(), timeout=30)
        except grpc.RpcError as exc:
            slow["error"] = exc.code()

    in_flight = threading.Thread(target=slow_call)
    in_flight.start()
    time.sleep(SLOW_CALL_SECONDS / 4)  # the slow call is in its handler now
    started = time.monotonic()
    docker("kill", "--signal", "TERM", container.name)
    exit_code = docker("wait", container.name, timeout=30).stdout.strip()
    exited = time.monotonic()
    in_flight.join(timeout=30)

    # The init's status: the process it ran was killed by SIGTERM (128 + 15).
    assert exit_code == "143", container.logs()[-2000:]
    # It did not wait for the call in its handler: the call was cut, not answered.
    assert exited - started < SLOW_CALL_SECONDS
    assert slow == {"error": grpc.StatusCode.UNAVAILABLE}, slow


def test_sigterm_without_an_init_is_ignored_until_docker_kills(server, stubs):
    """Last (it ends the module's server): the entrypoint's shell, PID 1, ignores SIGTERM.

    The official entrypoint does not `exec`, so without an init `docker stop` waits its whole stop
    timeout and then kills the server (exit 137): the reason the role runs it with an init.
    """
    predict_stub, _ = stubs
    docker("kill", "--signal", "TERM", server.name)
    time.sleep(2)
    assert server.running(), server.logs()[-2000:]
    response = predict_stub.Predict(add_request(), timeout=10)
    assert list(response.outputs["result"].float_val) == [5.0], response
    started = time.monotonic()
    docker("stop", "--time", "3", server.name, timeout=60)
    stopped = time.monotonic() - started
    assert docker("inspect", "--format", "{{.State.ExitCode}}", server.name).stdout.strip() == "137"
    assert 3 <= stopped < 15
