"""Unit tests of the web tier's floor (`make bench BENCH_ARGS=--floor`): its apps, figures and report."""

from __future__ import annotations

import io
from concurrent import futures

import grpc
import pytest
from tfsp_bench import floor, floor_app, payloads, report
from tfsp_bench.__main__ import parse_args
from tfsp_bench.stats import LoadResult


def _run(target: str, c: int, p50: float, requests: int, errors: int = 0) -> LoadResult:
    return LoadResult(target, c, "wrk", 10.0, requests, errors, p50, p50, p50 * 2, p50, p50 * 3)


def _wsgi(app, body: bytes = b'{"operation": "add", "a": 3, "b": 4}') -> tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    answer = b"".join(app(environ, start_response))
    assert environ["wsgi.input"].read() == b"", "the app must read the whole body, as a real one does"
    return seen["status"], seen["headers"], answer


def test_hello_answers_a_constant_json_document():
    status, headers, body = _wsgi(floor_app.hello)
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body) == len(floor_app.ANSWER)


@pytest.fixture
def predict_server():
    """A gRPC server whose Predict records the raw request bytes and answers fixed bytes."""
    seen: list[bytes] = []

    def predict(request: bytes, context) -> bytes:
        seen.append(request)
        return b"\x0a\x00"

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": grpc.unary_unary_rpc_method_handler(predict)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", seen
    server.stop(None)


def test_call_makes_one_predict_with_the_bench_request_per_request(predict_server, monkeypatch):
    target, seen = predict_server
    request = payloads.grpc_predict_body()[5:]
    monkeypatch.setenv("FLOOR_TARGET", target)
    monkeypatch.setenv("FLOOR_REQUEST", request.hex())
    monkeypatch.setattr(floor_app, "_predict", None)
    for _ in range(3):
        status, _, body = _wsgi(floor_app.call)
        assert (status, body) == ("200 OK", floor_app.ANSWER)
    assert seen == [request] * 3


def test_call_fails_loudly_when_tf_serving_does_not_answer(monkeypatch):
    monkeypatch.setenv("FLOOR_TARGET", "127.0.0.1:1")
    monkeypatch.setenv("FLOOR_REQUEST", "00")
    monkeypatch.setattr(floor_app, "_predict", None)
    with pytest.raises(grpc.RpcError):  # gunicorn answers 500: wrk counts it as an error
        _wsgi(floor_app.call)


def test_each_arm_but_the_app_runs_a_floor_app_with_the_bench_request():
    assert floor._app_args("app", "tfs1:8500") == []
    args = floor._app_args("call", "tfs1:8500")
    assert f"--setenv=PYTHONPATH={floor.WORK}" in args
    assert "--setenv=FLOOR_TARGET=tfs1:8500" in args
    assert f"--setenv=FLOOR_REQUEST={payloads.grpc_predict_body()[5:].hex()}" in args


def test_summary_takes_medians_and_ratios_to_the_direct_call():
    runs = {
        1: {
            "direct": [_run("direct", 1, p, 10000) for p in (0.7, 0.8, 0.9)],
            "hello": [_run("hello", 1, p, 20000) for p in (0.5, 0.6, 0.4)],
            "call": [_run("call", 1, p, 8000, errors=1) for p in (1.2, 1.6, 1.4)],
            "app": [_run("app", 1, p, 5000) for p in (2.4, 2.0, 2.2)],
        }
    }
    level = floor.summarize(runs)["1"]
    assert level["call"]["p50_ms"] == 1.4
    assert level["call"]["p50_ratio"] == pytest.approx(1.4 / 0.8)
    assert level["call"]["throughput_share"] == pytest.approx(799.9 / 1000)
    assert level["call"]["errors"] == 3
    assert level["direct"]["p50_ratio"] == 1.0
    assert level["app"]["p50_ratio"] == pytest.approx(2.2 / 0.8)


def _floor_data(call_p50: float, call_requests: int) -> dict:
    runs = {
        c: {
            "direct": [_run("direct", c, 1.0, 10000)],
            "hello": [_run("hello", c, 0.5, 20000)],
            "call": [_run("call", c, call_p50, call_requests)],
            "app": [_run("app", c, 3.0, 4000)],
        }
        for c in (32, 1)
    }
    return {"host": "web1", "seconds": 10, "rounds": 1, "levels": floor.summarize(runs)}


def test_floor_section_gives_the_room_the_limits_leave_the_app():
    out_of_reach = "\n".join(report.floor_section(_floor_data(call_p50=2.5, call_requests=6000)))
    assert "## The floor: gunicorn and grpcio alone, same run" in out_of_reach
    assert (
        "Floor at concurrency 1: 2.50x direct at p50 against #20's limit of 2.03x: out of reach of any app"
        in out_of_reach
    )
    assert "Floor at concurrency 32: 60% of direct throughput against #20's limit of 70%; this app 40%." in (
        out_of_reach
    )
    within = "\n".join(report.floor_section(_floor_data(call_p50=1.5, call_requests=8000)))
    # direct p50 1.0 ms: the limit is 2.03 ms, the floor 1.5 ms, the app 3.0 ms
    assert "an app may add at most 0.53 ms over the floor; this one adds 1.50 ms." in within
    rows = [line for line in within.splitlines() if line.startswith("| 1 |")]
    assert [row.split(" | ")[1] for row in rows] == list(report.FLOOR_ARMS.values())
    assert report.floor_section(None) == []


def test_floor_is_an_option_of_the_bench():
    assert parse_args([]).floor is False
    assert parse_args(["--floor"]).floor is True
