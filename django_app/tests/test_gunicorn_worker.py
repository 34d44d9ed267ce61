"""The app's gunicorn sync worker: one idle worker woken per connection, gunicorn's behaviour otherwise.

The first tests put idle workers (the class's own ``wait``, in forked processes) on one listening
socket and make one connection: the app's worker wakes one of them, gunicorn's own sync worker
(the control) wakes them all, which is what the app's worker is for. The others run real gunicorn
with the worker class on a unix socket: requests answered, workers busy in parallel, a reload and
a stop by signal.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from calculator_web.gunicorn_worker import SyncWorker
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

pytestmark = pytest.mark.skipif(not hasattr(select, "EPOLLEXCLUSIVE"), reason="Linux's EPOLLEXCLUSIVE")

IDLE_WORKERS = 4


def _wait_in_child(
    worker_class: type, listener: socket.socket, waiting: multiprocessing.Queue, woke: multiprocessing.Queue
) -> None:
    """An idle worker: the class's own wait() on the shared listener, as after gunicorn's fork."""
    worker = object.__new__(worker_class)
    worker.sockets = [listener]
    worker.PIPE = os.pipe()
    worker.wait_fds = [listener, worker.PIPE[0]]
    worker.nr = 0
    worker.notify = lambda: None
    waiting.put(os.getpid())
    ready = worker.wait(5.0)
    woke.put(os.getpid() if ready else None)


def _woken_by_one_connection(worker_class: type, tmp_path: Path) -> int:
    path = str(tmp_path / f"{worker_class.__module__}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.setblocking(False)
    context = multiprocessing.get_context("fork")
    waiting, woke = context.Queue(), context.Queue()
    args = (worker_class, listener, waiting, woke)
    children = [context.Process(target=_wait_in_child, args=args) for _ in range(IDLE_WORKERS)]
    for child in children:
        child.start()
    try:
        for _ in children:
            waiting.get(timeout=30)
        time.sleep(0.5)  # every child is in wait(), asleep in the kernel
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(path)  # one connection, which nobody accepts
        woken = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                woken.append(woke.get(timeout=max(0.0, deadline - time.monotonic())))
            except Exception:  # queue.Empty: the others are still asleep
                break
        client.close()
        return len([pid for pid in woken if pid])
    finally:
        for child in children:
            child.kill()
            child.join()
        listener.close()


def test_one_connection_wakes_one_idle_worker(tmp_path):
    assert _woken_by_one_connection(SyncWorker, tmp_path) == 1


def test_control_gunicorns_own_sync_worker_wakes_every_idle_worker(tmp_path):
    # What the app's worker fixes; also shows the test above can see a worker woken for nothing.
    assert _woken_by_one_connection(GunicornSyncWorker, tmp_path) == IDLE_WORKERS


APP = textwrap.dedent(
    """
    import os
    import time

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(1.0)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def _get(path: str, url: str = "/") -> str:
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def _workers(master: int) -> set[str]:
    """The worker processes of a gunicorn master, as the pids the app answers with."""
    return set(Path(f"/proc/{master}/task/{master}/children").read_text().split())


def _wait_answering(path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def gunicorn(tmp_path):
    (tmp_path / "tiny_app.py").write_text(APP)
    path = str(tmp_path / "gunicorn.sock")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", f"unix:{path}",
            "--worker-class", "calculator_web.gunicorn_worker.SyncWorker", "--chdir", str(tmp_path),
            "--graceful-timeout", "10", "tiny_app:app",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its workers go with it at the end (os.killpg)
    )  # fmt: skip
    try:
        _wait_answering(path)
        deadline = time.monotonic() + 20
        while len(_workers(process.pid)) < 3:  # the other workers may still be starting
            assert time.monotonic() < deadline, "gunicorn did not start its three workers"
            time.sleep(0.1)
        yield process, path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def test_real_gunicorn_answers_with_busy_workers_in_parallel(gunicorn):
    _, path = gunicorn
    assert all(_get(path).isdigit() for _ in range(20))
    answers: list[str] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: answers.append(_get(path, "/slow"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Three workers, each busy 1 s with one request: served side by side, not one after another.
    assert len(set(answers)) == 3
    assert time.monotonic() - started < 2.5


def test_real_gunicorn_reloads_and_stops_on_signals(gunicorn):
    process, path = gunicorn
    before = _workers(process.pid)
    process.send_signal(signal.SIGHUP)  # new workers, the old ones stopped gracefully
    deadline = time.monotonic() + 15
    while _workers(process.pid) & before:
        assert time.monotonic() < deadline, "the workers were not replaced after SIGHUP"
        time.sleep(0.2)
    assert all(_get(path) not in before for _ in range(10))
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    # Idle workers hear the signal at once (the wake-up pipe is not exclusive): no graceful timeout.
    assert time.monotonic() - started < 5, output
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
