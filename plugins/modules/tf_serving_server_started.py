#!/usr/bin/python
"""Wait until TF Serving answers on its REST port, or until its container exits.

Why a module: TF Serving opens its ports only after its first load of the
models, so a closed port may be a large model still loading (minutes) or a
server that failed at start-up, exited and is being restarted by Docker
(a version it cannot parse makes it exit). Only the container's state tells
the two apart, and ``uri``'s ``until`` cannot look at it: this module polls
both, the REST port and the container (Docker's API on its Unix socket), so a
crash ends the wait in seconds instead of at the availability timeout.

It changes nothing, and it never fails on the server's account: it reports
``answered`` or ``crashed`` (or neither, at the timeout) and the role decides.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: tf_serving_server_started
author: tfsp maintainers (@tfsp)
short_description: Wait until TF Serving answers on its REST port, or its container exits
description:
  - Polls C(url) and the container's state through the Docker engine's API.
  - Returns as soon as the URL answers with any HTTP status (the server is up),
    or the container has restarted or stopped since C(restarts_before) (the
    server crashed), or at C(timeout).
options:
  url:
    description: A URL of the server's REST API, for example its model status.
    type: str
    required: true
  container:
    description: The name of the server's container.
    type: str
    required: true
  restarts_before:
    description:
      - The container's RestartCount when it was (re)started; a higher count
        means the server exited since. Default, the count at the first look.
    type: int
  timeout:
    description: Seconds to wait at most.
    type: int
    default: 300
  interval:
    description: Seconds between two looks.
    type: float
    default: 1.0
  docker_socket:
    description: The Docker engine's API socket.
    type: path
    default: /var/run/docker.sock
"""

EXAMPLES = r"""
- name: Wait until TF Serving answers, or its container crashes
  tfsp.serving.tf_serving_server_started:
    url: http://127.0.0.1:8501/v1/models/calculator
    container: tf-serving
    restarts_before: 0
    timeout: 300
  register: started

- name: Stop when the server crashed while loading
  ansible.builtin.fail:
    msg: TF Serving exited while loading its models
  when: started.crashed
"""

RETURN = r"""
answered:
  returned: always
  description: Whether the REST port answered.
  type: bool
crashed:
  returned: always
  description: Whether the container restarted or stopped during the wait.
  type: bool
restart_count:
  returned: always
  description: The container's RestartCount at the last look.
  type: int
state:
  returned: always
  description: The container's state at the last look (Docker's State.Status).
  type: str
waited:
  returned: always
  description: Seconds waited.
  type: float
"""

import http.client  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the Docker engine's Unix socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def docker_inspect(socket_path: str, container: str, timeout: float = 5.0) -> dict | None:
    """``GET /containers/<name>/json``; None when there is no such container."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request("GET", f"/containers/{urllib.parse.quote(container)}/json")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status == 404:
        return None
    if response.status != 200:
        raise RuntimeError(f"Docker answered {response.status} for container {container}: {body[:200]!r}")
    return json.loads(body)


def rest_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the server answers the URL with any HTTP status."""
    try:
        with open_url(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, http.client.HTTPException, UrlsConnectionError):
        return False


def crashed(info: dict | None, restarts_before: int) -> bool:
    """Whether the container exited since it was started (Docker restarts it, or it stays down)."""
    if info is None:
        return True
    state = info.get("State", {})
    return (
        int(info.get("RestartCount", 0)) > restarts_before
        or bool(state.get("Restarting"))
        or state.get("Status") in ("exited", "dead")
    )


def watch(
    answers, inspect, restarts_before, timeout, interval, clock=time.monotonic, sleep=time.sleep
) -> dict:
    """The wait: ``answers()`` and ``inspect()`` are the two looks, injected for tests."""
    started = clock()
    info = inspect()
    if restarts_before is None:
        restarts_before = int((info or {}).get("RestartCount", 0))
    while True:
        if answers():
            outcome = {"answered": True, "crashed": False}
            break
        info = inspect()
        if crashed(info, restarts_before):
            outcome = {"answered": False, "crashed": True}
            break
        if clock() - started >= timeout:
            outcome = {"answered": False, "crashed": False}
            break
        sleep(interval)
    outcome["restart_count"] = int((info or {}).get("RestartCount", 0))
    outcome["state"] = (info or {}).get("State", {}).get("Status", "missing")
    outcome["waited"] = round(clock() - started, 1)
    return outcome


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "container": {"type": "str", "required": True},
            "restarts_before": {"type": "int"},
            "timeout": {"type": "int", "default": 300},
            "interval": {"type": "float", "default": 1.0},
            "docker_socket": {"type": "path", "default": "/var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        outcome = watch(
            answers=lambda: rest_answers(params["url"]),
            inspect=lambda: docker_inspect(params["docker_socket"], params["container"]),
            restarts_before=params["restarts_before"],
            timeout=params["timeout"],
            interval=params["interval"],
        )
    except (OSError, RuntimeError, ValueError) as error:
        module.fail_json(msg=f"Could not ask Docker about {params['container']}: {error}")
    module.exit_json(changed=False, **outcome)


if __name__ == "__main__":
    main()
