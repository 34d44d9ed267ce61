"""The tf_serving role's start-up watch (plugins/modules/tf_serving_server_started.py).

The two looks are tested against real servers (an HTTP server on a TCP port for the REST API, one
on a Unix socket for Docker's API); the wait's decisions with a fake clock; and the module as
Ansible runs it, against both servers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "plugins/modules"
_spec = importlib.util.spec_from_file_location(
    "tf_serving_server_started", LIBRARY / "tf_serving_server_started.py"
)
started = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(started)


def container(restarts=0, status="running", restarting=False):
    return {"RestartCount": restarts, "State": {"Status": status, "Restarting": restarting}}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def run_watch(answers, inspections, restarts_before=None, timeout=30):
    """watch() with scripted looks: each list is consumed one item per look, the last repeats."""
    clock = FakeClock()
    answers, inspections = list(answers), list(inspections)

    def take(items):
        return items.pop(0) if len(items) > 1 else items[0]

    return started.watch(
        answers=lambda: take(answers),
        inspect=lambda: take(inspections),
        restarts_before=restarts_before,
        timeout=timeout,
        interval=1.0,
        clock=clock,
        sleep=clock.sleep,
    )


def test_a_server_that_answers_ends_the_wait_at_once():
    outcome = run_watch([True], [container()])
    assert outcome == {
        "answered": True,
        "crashed": False,
        "restart_count": 0,
        "state": "running",
        "waited": 0.0,
    }


def test_a_server_still_loading_is_waited_for():
    outcome = run_watch([False] * 5 + [True], [container()])
    assert outcome["answered"]
    assert not outcome["crashed"]
    assert outcome["waited"] == 5.0


def test_a_restart_since_the_start_is_a_crash():
    outcome = run_watch([False], [container(restarts=0)] * 3 + [container(restarts=1)], restarts_before=0)
    assert outcome["crashed"]
    assert not outcome["answered"]
    assert outcome["restart_count"] == 1
    assert outcome["waited"] == 2.0


def test_a_crash_before_the_first_look_counts_when_the_count_at_start_is_given():
    # The server exited once between docker_container's answer and the module's first look.
    outcome = run_watch([False], [container(restarts=1)], restarts_before=0)
    assert outcome["crashed"]
    assert outcome["waited"] == 0.0


def test_without_a_count_at_start_the_first_look_is_the_baseline():
    outcome = run_watch([False], [container(restarts=4)] * 3 + [container(restarts=5)])
    assert outcome["crashed"]
    assert outcome["restart_count"] == 5


@pytest.mark.parametrize(
    "info",
    [container(restarting=True), container(status="exited"), container(status="dead"), None],
    ids=["restarting", "exited", "dead", "no-container"],
)
def test_a_container_down_is_a_crash(info):
    outcome = run_watch([False], [container(), info], restarts_before=0)
    assert outcome["crashed"]


def test_the_timeout_ends_a_wait_with_neither():
    outcome = run_watch([False], [container()], timeout=30)
    assert outcome["answered"] is False
    assert outcome["crashed"] is False
    assert outcome["waited"] == 30.0


class _Rest(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404 if self.path.endswith("/missing") else 200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _Docker(BaseHTTPRequestHandler):
    containers: ClassVar[dict] = {"tf-serving": container(restarts=2)}

    def do_GET(self):
        name = self.path.split("/")[2]
        info = self.containers.get(name)
        self.send_response(200 if info else 404)
        self.end_headers()
        self.wfile.write(json.dumps(info or {"message": "No such container"}).encode())

    def log_message(self, *args):
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def unused_tcp_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def rest_url():
    server = HTTPServer(("127.0.0.1", 0), _Rest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1/models"
    server.shutdown()


@pytest.fixture
def docker_socket(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = _UnixHTTPServer(path, _Docker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()


def test_any_http_answer_is_an_answer(rest_url):
    assert started.rest_answers(rest_url + "/calculator")
    assert started.rest_answers(rest_url + "/missing")


def test_a_closed_port_is_no_answer(unused_tcp_port):
    assert not started.rest_answers(f"http://127.0.0.1:{unused_tcp_port}/v1/models/calculator", timeout=1)


def test_docker_inspect_reads_the_container(docker_socket):
    assert started.docker_inspect(docker_socket, "tf-serving")["RestartCount"] == 2
    assert started.docker_inspect(docker_socket, "absent") is None


def _module(*args):
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-c",
            "local",
            "-M",
            str(LIBRARY),
            "-m",
            "tf_serving_server_started",
            "-a",
            " ".join(args),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"},
        check=False,
    )


def _outcome(run):
    assert run.returncode in (0, 2), run.stderr
    # The json callback's document; lines of the profile_tasks callback come around it.
    document, _ = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{") :])
    return document["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_the_module_reports_an_answer(rest_url, docker_socket):
    result = _outcome(
        _module(f"url={rest_url}/calculator", "container=tf-serving", f"docker_socket={docker_socket}")
    )
    assert result["answered"] is True, result
    assert result["changed"] is False, result


def test_the_module_reports_a_crash(unused_tcp_port, docker_socket):
    url = f"http://127.0.0.1:{unused_tcp_port}/v1/models/calculator"
    args = [
        f"url={url}",
        "container=tf-serving",
        f"docker_socket={docker_socket}",
        "restarts_before=1",
        "timeout=20",
    ]
    result = _outcome(_module(*args))
    assert result["crashed"] is True, result
    assert result["restart_count"] == 2, result
    assert result["waited"] < 5


def test_the_module_fails_with_one_line_without_docker(rest_url, tmp_path):
    run = _module(
        f"url={rest_url}/calculator", "container=tf-serving", f"docker_socket={tmp_path}/absent.sock"
    )
    result = _outcome(run)
    assert result["failed"], result
    assert "Could not ask Docker about tf-serving" in result["msg"], result
