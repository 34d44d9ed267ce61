"""The load generators (wrk, h2load) in a container that shares a web host's network.

The firewall lets only the web hosts reach TF Serving, so the direct calls are made from a web
host's network namespace; the calls through the web tier go to that host's nginx on 443. All four
paths are measured from the same place.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import payloads
from .stats import BenchError, LoadResult, h2load_result, parse_h2load_summary, parse_wrk

HERE = Path(__file__).resolve().parent
IMAGE = "tfsp/bench:latest"


def run(cmd: list[str], *, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; BenchError with the output if it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass(frozen=True)
class Target:
    """One benchmarked path."""

    key: str
    label: str
    url: str


class LoadContainer:
    """A bench container in the network namespace of `host` (a running container)."""

    def __init__(self, host: str, name: str = "tfsp-bench") -> None:
        self.host = host
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix="tfsp-bench-"))
        self.runs = 0

    def __enter__(self) -> LoadContainer:
        shutil.copy(HERE / "wrk_json.lua", self.workdir / "wrk_json.lua")
        (self.workdir / "predict.grpc").write_bytes(payloads.grpc_predict_body())
        (self.workdir / "predict-rest.json").write_bytes(payloads.rest_predict_body())
        (self.workdir / "predict-api.json").write_bytes(payloads.django_api_body())
        run(["docker", "rm", "-f", self.name], check=False)
        run(
            [
                "docker", "run", "-d", "--name", self.name, "--network", f"container:{self.host}",
                "-v", f"{self.workdir}:/bench", IMAGE, "sleep", "infinity",
            ]
        )  # fmt: skip
        return self

    def __exit__(self, *exc) -> None:
        run(["docker", "rm", "-f", self.name], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def exec(
        self, *args: str, timeout: float | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        return run(["docker", "exec", self.name, *args], timeout=timeout, check=check)

    def read(self, name: str) -> bytes:
        return (self.workdir / name).read_bytes()

    # Single verified calls ------------------------------------------------------------------

    def grpc_call(self, base_url: str) -> tuple[float, int, int]:
        """One gRPC Predict with curl over HTTP/2: (result, model version, answer bytes).

        Fails unless the trailers carry grpc-status 0 and the answer decodes to the expected sum.
        """
        done = self.exec(
            "curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
            "-H", "te: trailers", "--data-binary", "@/bench/predict.grpc", "-D", "/bench/grpc.headers",
            "-o", "/bench/grpc.answer", "-w", "%{http_code}", base_url + payloads.GRPC_PATH,
            check=False,
        )  # fmt: skip
        headers = (self.workdir / "grpc.headers").read_text(errors="replace") if done.returncode == 0 else ""
        status = [
            line.split(":", 1)[1].strip()
            for line in headers.lower().splitlines()
            if line.startswith("grpc-status:")
        ]
        if done.returncode != 0 or done.stdout != "200" or status != ["0"]:
            raise BenchError(f"gRPC Predict to {base_url} failed: {done.stdout} {done.stderr} {headers}")
        answer = self.read("grpc.answer")
        value, version = payloads.grpc_predict_answer(answer)
        if value != payloads.EXPECTED:
            raise BenchError(f"gRPC Predict to {base_url} answered {value}, not {payloads.EXPECTED}")
        return value, version, len(answer)

    def http_call(self, url: str, body_file: str, host_header: str = "") -> bytes:
        """One POST with curl; the answer body (BenchError unless the status is 200)."""
        headers = ["-H", f"Host: {host_header}"] if host_header else []
        done = self.exec(
            "curl", "-sS", "-k", "-o", "/bench/http.answer", "-w", "%{http_code}",
            "-H", "Content-Type: application/json", *headers, "--data-binary", f"@/bench/{body_file}", url,
            check=False,
        )  # fmt: skip
        body = self.read("http.answer") if done.returncode == 0 else b""
        if done.stdout != "200":
            raise BenchError(f"POST {url} answered {done.stdout or done.stderr}: {body[:300]!r}")
        return body

    # Load runs --------------------------------------------------------------------------------

    def wrk(
        self, target: Target, concurrency: int, seconds: int, body_file: str, host_header: str = ""
    ) -> LoadResult:
        threads = str(min(concurrency, 2))
        args = [
            "wrk", "-t", threads, "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", "/bench/wrk_json.lua", target.url, "--", f"/bench/{body_file}", host_header,
        ]  # fmt: skip
        done = self.exec(*args, timeout=seconds + 60)
        return parse_wrk(done.stdout, target.key, concurrency)

    def h2load(self, target: Target, concurrency: int, seconds: int, answer_bytes: int) -> LoadResult:
        threads = str(min(concurrency, 2))
        self.runs += 1
        log = f"h2load-{self.runs}.log"
        args = [
            "h2load", "-c", str(concurrency), "-m", "1", "-t", threads, "-D", str(seconds),
            "-d", "/bench/predict.grpc", "-H", "content-type: application/grpc", "-H", "te: trailers",
            "--log-file", f"/bench/{log}", target.url + payloads.GRPC_PATH,
        ]  # fmt: skip
        done = self.exec(*args, timeout=seconds + 60)
        summary = parse_h2load_summary(done.stdout)
        result = h2load_result(summary, self.read(log).decode(), target.key, concurrency, answer_bytes)
        (self.workdir / log).unlink()
        return result
