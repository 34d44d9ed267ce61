"""Parsing of the load tools' output and the figures computed from it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass


class BenchError(RuntimeError):
    """A benchmark step failed: the message says which and why."""


@dataclass(frozen=True)
class LoadResult:
    """One load run: one target at one concurrency."""

    target: str
    concurrency: int
    tool: str
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def throughput(self) -> float:
        """Successful requests per second over the measured window."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "throughput_rps": round(self.throughput, 1)}


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (the value at rank ceil(pct/100 * n))."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile out of range: {pct}")
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[rank - 1]


_WRK_LINE = re.compile(r"^WRK_JSON (\{.*\})\s*$", re.MULTILINE)


def parse_wrk(output: str, target: str, concurrency: int) -> LoadResult:
    """The result of a wrk run made with wrk_json.lua (its `WRK_JSON {...}` line)."""
    match = _WRK_LINE.search(output)
    if not match:
        raise BenchError(f"wrk printed no WRK_JSON line for {target} at concurrency {concurrency}:\n{output}")
    data = json.loads(match.group(1))
    lat = data["latency_us"]
    errors = sum(data["errors"].values())
    return LoadResult(
        target=target,
        concurrency=concurrency,
        tool="wrk",
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=errors,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        mean_ms=lat["mean"] / 1000,
        max_ms=lat["max"] / 1000,
    )


_H2_FINISHED = re.compile(r"^finished in ([0-9.]+)(ms|s),", re.MULTILINE)
_H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_H2_DATA = re.compile(r"^traffic: .*\((\d+)\) data", re.MULTILINE)


@dataclass(frozen=True)
class H2Summary:
    """What h2load prints about a run."""

    seconds: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    data_bytes: int


def parse_h2load_summary(output: str) -> H2Summary:
    """The totals h2load prints at the end of a run."""
    finished = _H2_FINISHED.search(output)
    requests = _H2_REQUESTS.search(output)
    data = _H2_DATA.search(output)
    if not (finished and requests and data):
        raise BenchError(f"unexpected h2load output:\n{output}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    _, _, done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    return H2Summary(seconds, done, succeeded, failed, errored, timeout, int(data.group(1)))


def parse_h2load_log(log: str) -> list[tuple[int, float]]:
    """(HTTP status, latency in ms) of every request in an h2load --log-file.

    Columns: start time (µs since the epoch), HTTP status, µs until the end of the response.
    """
    rows = []
    for line in log.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise BenchError(f"unexpected h2load log line: {line!r}")
        rows.append((int(parts[1]), int(parts[2]) / 1000))
    return rows


def h2load_result(
    summary: H2Summary, log: str, target: str, concurrency: int, response_data_bytes: int
) -> LoadResult:
    """Combine h2load's totals and per-request log into a LoadResult.

    gRPC reports its status in trailers, which h2load does not read. Every correct answer to the
    benchmark's request is the same message, so the answers are checked by volume: the DATA bytes
    received must be exactly (requests answered with 200) x (bytes of the verified answer).
    Anything else (an error status carries no message) counts as errors.
    """
    rows = parse_h2load_log(log)
    if not rows:
        raise BenchError(f"h2load logged no request for {target} at concurrency {concurrency}")
    ok = [ms for status, ms in rows if status == 200]
    errors = len(rows) - len(ok) + summary.errored + summary.timeout
    received = summary.data_bytes
    if received < len(ok) * response_data_bytes:
        # Answers with status 200 but no message (a gRPC error in the trailers).
        errors += math.ceil((len(ok) * response_data_bytes - received) / max(response_data_bytes, 1))
    elif received > len(ok) * response_data_bytes:
        raise BenchError(
            f"h2load received {received} data bytes for {len(ok)} answers of {response_data_bytes} bytes:"
            " the answers are not the verified message"
        )
    latencies = sorted(ok or [ms for _, ms in rows])
    return LoadResult(
        target=target,
        concurrency=concurrency,
        tool="h2load",
        seconds=summary.seconds,
        requests=len(rows),
        errors=errors,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies),
        max_ms=latencies[-1],
    )


_RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
    r"(?:\s+skipped=(\d+))?(?:\s+rescued=(\d+))?(?:\s+ignored=(\d+))?",
    re.MULTILINE,
)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counts of the last PLAY RECAP in ansible-playbook's output."""
    recap_at = output.rfind("PLAY RECAP")
    if recap_at < 0:
        raise BenchError("ansible-playbook printed no PLAY RECAP")
    hosts = {}
    for m in _RECAP.finditer(output[recap_at:]):
        keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        hosts[m.group(1)] = {k: int(v or 0) for k, v in zip(keys, m.groups()[1:], strict=True)}
    if not hosts:
        raise BenchError("PLAY RECAP lists no host")
    return hosts


def added_latency(django: LoadResult, direct: LoadResult) -> dict[str, float]:
    """What the web tier adds over the direct call: difference (ms) and ratio, at p50 and p99."""
    return {
        "p50_diff_ms": django.p50_ms - direct.p50_ms,
        "p50_ratio": django.p50_ms / direct.p50_ms if direct.p50_ms else math.inf,
        "p99_diff_ms": django.p99_ms - direct.p99_ms,
        "p99_ratio": django.p99_ms / direct.p99_ms if direct.p99_ms else math.inf,
    }
