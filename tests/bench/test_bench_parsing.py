"""Unit tests of the benchmark's parsing, figures and report (no stack needed)."""

from __future__ import annotations

import struct

import pytest
from tfsp_bench import payloads, report
from tfsp_bench.__main__ import parse_args
from tfsp_bench.stats import (
    BenchError,
    H2Summary,
    LoadResult,
    added_latency,
    h2load_result,
    parse_h2load_summary,
    parse_recap,
    parse_wrk,
    percentile,
)

WRK_OUTPUT = """Running 20s test @ https://127.0.0.1/api/v1/predict
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  30.00ms   90.00%
  3900 requests in 20.00s, 1.20MB read
Requests/sec:    195.00
WRK_JSON {"tool":"wrk","requests":3900,"duration_us":20000000,"bytes":1200000,\
"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":1},\
"latency_us":{"min":900,"mean":4100.5,"stdev":1200.0,"max":30000,"p50":3800,"p90":5500,"p99":9100}}
"""

H2LOAD_OUTPUT = """starting benchmark...
finished in 10.00s, 950.30 req/s, 120.00KB/s
requests: 9503 total, 9511 started, 9503 done, 9503 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 9503 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.20MB (1258000) total, 500.00KB (512000) headers (space savings 90.00%), 446.00KB (456144) data
"""

RECAP = """PLAY RECAP *********************************************************************
tfsp-demo-tfs1 : ok=80   changed=0    unreachable=0    failed=0    skipped=20   rescued=0    ignored=0
tfsp-demo-web1 : ok=70   changed=2    unreachable=0    failed=0    skipped=12   rescued=0    ignored=0
"""


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="out of range"):
        percentile(values, 0)


def test_wrk_line_gives_figures_in_ms_and_counts_every_error_kind():
    result = parse_wrk(WRK_OUTPUT, "django_grpc", 8)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (3.8, 5.5, 9.1)
    assert result.requests == 3900
    assert result.errors == 4
    assert result.seconds == 20.0
    assert result.throughput == pytest.approx((3900 - 4) / 20)


def test_wrk_without_its_json_line_is_an_error():
    with pytest.raises(BenchError, match="no WRK_JSON"):
        parse_wrk("Running 20s test\nunable to connect", "rest_direct", 1)


def _h2log(rows):
    return "".join(f"{1700000000000000 + i}\t{status}\t{us}\n" for i, (status, us) in enumerate(rows))


def test_h2load_summary_and_log_make_a_result():
    summary = parse_h2load_summary(H2LOAD_OUTPUT)
    assert summary == H2Summary(10.0, 9503, 9503, 0, 0, 0, 456144)
    answer = 48
    rows = [(200, 1000 + i) for i in range(100)]
    summary = H2Summary(10.0, 100, 100, 0, 0, 0, 100 * answer)
    result = h2load_result(summary, _h2log(rows), "grpc_direct", 1, answer)
    assert result.errors == 0
    assert result.requests == 100
    assert result.p50_ms == pytest.approx(1.049)
    assert result.p99_ms == pytest.approx(1.098)
    assert result.max_ms == pytest.approx(1.099)


def test_h2load_answers_without_the_message_count_as_errors():
    # gRPC errors come back as HTTP 200 with grpc-status in the trailers and no message.
    answer = 48
    rows = [(200, 1000)] * 10
    summary = H2Summary(1.0, 10, 10, 0, 0, 0, 7 * answer)
    assert h2load_result(summary, _h2log(rows), "grpc_direct", 1, answer).errors == 3
    # More bytes than verified answers can explain: not the benchmark's answer at all.
    with pytest.raises(BenchError, match="not the verified message"):
        h2load_result(H2Summary(1.0, 10, 10, 0, 0, 0, 11 * answer), _h2log(rows), "grpc_direct", 1, answer)


def test_h2load_http_errors_count():
    rows = [(200, 1000)] * 8 + [(503, 200)] * 2
    summary = H2Summary(1.0, 10, 8, 2, 0, 0, 8 * 10)
    assert h2load_result(summary, _h2log(rows), "grpc_direct", 1, 10).errors == 2


def test_unexpected_h2load_output_is_an_error():
    with pytest.raises(BenchError):
        parse_h2load_summary("connect to 10.0.0.1:8500 failed")


def test_recap_is_parsed_per_host():
    recap = parse_recap("TASK [x]\nok: [a]\n\n" + RECAP)
    assert recap["tfsp-demo-tfs1"]["changed"] == 0
    assert recap["tfsp-demo-web1"]["changed"] == 2
    assert recap["tfsp-demo-web1"]["skipped"] == 12
    with pytest.raises(BenchError):
        parse_recap("ERROR! the playbook could not be found")


def _result(target, c, p50, p99=None):
    return LoadResult(target, c, "wrk", 10.0, 1000, 0, p50, p50 * 1.2, p99 or p50 * 2, p50, p50 * 3)


def test_added_latency_is_difference_and_ratio():
    added = added_latency(_result("django_grpc", 1, 3.0, 6.0), _result("grpc_direct", 1, 1.5, 2.0))
    assert added == {"p50_diff_ms": 1.5, "p50_ratio": 2.0, "p99_diff_ms": 4.0, "p99_ratio": 3.0}


def test_grpc_body_is_a_framed_predict_request():
    from tensorflow_serving.apis import predict_pb2

    body = payloads.grpc_predict_body()
    assert body[0] == 0
    (length,) = struct.unpack(">I", body[1:5])
    assert length == len(body) - 5
    request = predict_pb2.PredictRequest.FromString(body[5:])
    assert request.model_spec.name == "calculator"
    assert request.model_spec.signature_name == "add"
    assert struct.unpack("<f", request.inputs["a"].tensor_content) == (3.0,)
    assert [d.size for d in request.inputs["b"].tensor_shape.dim] == [1]


def test_grpc_answer_is_decoded_and_checked():
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.version.value = 4
    response.outputs["result"].dtype = 1
    response.outputs["result"].float_val.append(7.0)
    message = response.SerializeToString()
    framed = b"\x00" + struct.pack(">I", len(message)) + message
    assert payloads.grpc_predict_answer(framed) == (7.0, 4)
    with pytest.raises(ValueError, match="announces"):
        payloads.grpc_predict_answer(framed[:-1])
    with pytest.raises(ValueError, match="not an uncompressed"):
        payloads.grpc_predict_answer(b"\x01" + framed[1:])


def test_rest_and_api_answers():
    assert payloads.rest_predict_answer(b'{"outputs": [7.0]}') == 7.0
    assert payloads.rest_predict_answer(b'{"outputs": {"result": [7.0]}}') == 7.0
    assert payloads.django_api_answer(b'{"operation": "add", "result": 7.0}') == 7.0


def test_report_compares_against_the_targets():
    results = [
        _result("grpc_direct", 1, 1.0),
        _result("django_grpc", 1, 2.5),
        _result("django_rest", 1, 4.0),
    ]
    data = {
        "finished": "2026-01-01T00:00:00+00:00",
        "seconds": 20,
        "warmup_seconds": 3,
        "vantage": "web1",
        "ansible_settings": "pipelining true",
        "machine": {
            "cpu": "cpu",
            "cpus": 2,
            "memory_gib": 24,
            "os": "Debian",
            "kernel": "6",
            "docker": "20",
            "storage_driver": "overlay2",
            "python": "3.11",
            "commit": "abc",
        },
        "deploy": {
            "first_run": {"seconds": 600.0, "hosts": 4, "recap": {"a": {"changed": 90}}},
            "rerun": {"seconds": 180.0, "recap": {"a": {"changed": 0}}},
            "rollout": {
                "version": 2,
                "serving_after_seconds": {"t1": 10.0, "t2": 25.5},
                "all_serving_seconds": 25.5,
                "playbook_seconds": 40.0,
            },
        },
        "footprint": {
            "web": {"host": "web1", "mib": 50.2, "distributions": ["Django"], "has_tensorflow": False},
            "naive": {"requirement": "tensorflow-serving-api==2.21.0", "mib": 1900.0, "distributions": 40},
            "standin_image": {"image": "tfsp/tf-serving-standin:latest", "bytes": 913_418_886},
        },
    }
    text = report.markdown(data, results)
    assert "| Django API via nginx, gRPC client | 1 | 2.50 |" in text
    assert "Django tier adds 1.50 ms at p50, concurrency 1 (target at most 2 ms): met." in text
    assert (
        "Idempotent re-run 30% of the first run, changed=0 (target at most 25%, changed=0): NOT met." in text
    )
    assert "Web venv 50.2 MiB (target under 80 MiB): met." in text
    assert "loads: 913,418,886 bytes." in text
    assert "#20 image: the stand-in image is 913,418,886 bytes, 49.3% of the 1,851,984,076" in text
    assert "| rest | 1 | 3.00 | 4.00x |" in text
    assert "AVAILABLE on every GPU host 25.5 s after the playbook started" in text


def test_plot_is_written(tmp_path):
    results = [_result(k, c, 1.0 + c / 10) for k in report.LABELS for c in (1, 8, 32)]
    path = tmp_path / "latency.png"
    report.plot(results, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_arguments_are_checked():
    assert parse_args(["--concurrency", "32,1,8"]).levels == [1, 8, 32]
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "a,b"])
    with pytest.raises(SystemExit):
        parse_args(["--seconds", "0"])
    assert parse_args(["--paths", "grpc_direct,django_grpc"]).paths == ["grpc_direct", "django_grpc"]
    with pytest.raises(SystemExit):
        parse_args(["--paths", "grpc_direct,carrier_pigeon"])


def _ab_run(target: str, concurrency: int, p50: float, requests: int, errors: int = 0) -> LoadResult:
    return LoadResult(target, concurrency, "wrk", 10.0, requests, errors, p50, p50, p50 * 2, p50, p50 * 3)


def test_ab_takes_the_medians_of_the_rounds_and_compares_them():
    from tfsp_bench import ab

    runs = {
        1: {
            "baseline": [_ab_run("ab_baseline", 1, p, 5000) for p in (2.0, 2.2, 9.0)],
            "candidate": [_ab_run("ab_candidate", 1, p, 4000, errors=1) for p in (2.1, 2.3, 2.4)],
        }
    }
    level = ab.summarize(runs)["1"]
    assert level["baseline"]["p50_ms"] == 2.2  # the outlier round does not move the median
    assert level["candidate"]["p50_ms"] == 2.3
    assert level["p50_change"] == pytest.approx(2.3 / 2.2 - 1)
    assert level["candidate"]["throughput"] == pytest.approx(399.9)
    assert level["throughput_change"] == pytest.approx(399.9 / 500 - 1)
    assert level["candidate"]["errors"] == 3
    assert len(level["baseline"]["rounds"]) == 3


def test_ab_section_of_the_report():
    from tfsp_bench import ab

    runs = {c: {arm: [_ab_run(arm, c, 2.0, 5000)] for arm in ab.ARMS} for c in (32, 1)}
    data = {"baseline": "8a23a0f", "host": "web1", "seconds": 10, "rounds": 1, "levels": ab.summarize(runs)}
    lines = report.ab_section(data)
    assert "## The web app against commit 8a23a0f, same run" in lines
    rows = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 32 ")]
    assert rows[0].startswith("| 1 | 2.00 | 2.00 | +0% | 500 | 500 | +0% | 0 |")
    assert rows[1].startswith("| 32 ")
    assert report.ab_section(None) == []


def test_ab_nginx_snippet_proxies_each_arm_like_the_site():
    from tfsp_bench import ab

    snippet = ab.nginx_snippet(ab.ARMS, ab.WORK, "tfsp_ab")
    for arm, port in ab.ARMS.items():
        assert f"listen 127.0.0.1:{port};" in snippet
        assert f"server unix:{ab.WORK}/{arm}.sock" in snippet
    # The site is HTTPS: without the header Django would redirect every request.
    assert snippet.count("proxy_set_header X-Forwarded-Proto https;") == len(ab.ARMS)
    assert snippet.count('proxy_set_header Connection "";') == len(ab.ARMS)


def test_ab_rounds_must_be_positive():
    assert parse_args(["--baseline", "HEAD~1"]).baseline == "HEAD~1"
    with pytest.raises(SystemExit):
        parse_args(["--baseline", "HEAD~1", "--ab-rounds", "0"])


def _load(target, c, p50, requests):
    return LoadResult(target, c, "wrk", 10.0, requests, 0, p50, p50, p50 * 2, p50, p50 * 3)


def test_issue20_targets_are_same_run_ratios_against_direct_grpc():
    # The issue's own figures (3.06x, 56%) miss both targets; 2.03x and 70% are the limits.
    def lines(web_p50, web_requests):
        results = [
            _load("grpc_direct", 1, 1.0, 1000),
            _load("grpc_direct", 32, 29.0, 11000),
            _load("django_grpc", 1, web_p50, 400),
            _load("django_grpc", 32, 40.0, web_requests),
        ]
        return report.issue20_verdicts(results)

    latency, throughput = lines(3.06, 6160)
    assert latency == (
        "#20 latency: the web tier adds 2.06 ms at p50, concurrency 1, 3.06x direct gRPC "
        "(target at most 2.03x: half of the 2.06 direct p50s it added at 3.06x): NOT met."
    )
    assert throughput == (
        "#20 throughput: the Django API serves 616 req/s at concurrency 32, 56% of direct gRPC's 1100 "
        "(target at least 70%): NOT met."
    )
    latency, throughput = lines(2.03, 7700)
    assert latency.endswith(
        "2.03x direct gRPC (target at most 2.03x: half of the 2.06 direct p50s it added at 3.06x): met."
    )
    assert throughput.endswith(
        "770 req/s at concurrency 32, 70% of direct gRPC's 1100 (target at least 70%): met."
    )
    assert lines(2.04, 7699)[0].endswith("NOT met.")
    assert lines(2.04, 7699)[1].endswith("NOT met.")
    # Without both paths at a level, no verdict for that target.
    assert report.issue20_verdicts([_load("grpc_direct", 1, 1.0, 1000)]) == []


def test_issue20_verdicts_are_in_the_report():
    results = [_load(k, c, 1.0 + c, 10000) for k in ("grpc_direct", "django_grpc") for c in (1, 32)]
    assert any(line.startswith("#20 latency") for line in report.verdicts({}, results))
    assert any(line.startswith("#20 throughput") for line in report.verdicts({}, results))


def test_issue20_image_target_is_half_the_image_of_the_issue():
    def line(size):
        (verdict,) = report.image_verdicts({"image": "tfsp/tf-serving-standin:latest", "bytes": size})
        return verdict

    assert line(970_548_882) == (
        "#20 image: the stand-in image is 970,548,882 bytes, 52.4% of the 1,851,984,076 when the issue "
        "was filed (target at most 50%): NOT met."
    )
    assert line(925_992_038).endswith("(target at most 50%): met.")  # exactly half
    assert line(925_992_039).endswith("NOT met.")
    assert report.image_verdicts(None) == []
