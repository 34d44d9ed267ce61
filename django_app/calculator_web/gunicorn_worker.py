"""gunicorn's sync worker, woken one at a time for a new connection (the web hosts' default).

The Ansible role uses it with ``calculator_web_gunicorn_wake_one`` (on by default). With it, idle
workers' gRPC channels keep pinging connections without calls, which TF Serving must accept (the
tf_serving role's ``tf_serving_grpc_channel_arguments``; README, "What was tried").

gunicorn's sync workers wait for a connection with ``select()`` on the listening socket they all
share, so every connection wakes every idle worker; all but one find nothing to accept and go back
to sleep. With five workers on a two-CPU web host that is four needless wake-ups per request,
which delay the one that matters: measured on the local stack at concurrency 1 (wrk through nginx),
a constant answer took 0.50 ms with five workers against 0.34 ms with one, and the calculator's API
3.03 against 2.07 ms.

This worker waits with epoll instead, the listening sockets registered with ``EPOLLEXCLUSIVE``
(Linux 4.5 and later: the kernel wakes one of the workers waiting on the socket, as nginx's own
workers are woken). Everything else is gunicorn's sync worker: the same accept loop, heartbeat,
timeout and signal handling; the wake-up pipe is registered without the flag, so a signal still
wakes the worker it is meant for. Where ``EPOLLEXCLUSIVE`` is missing (not Linux), it is gunicorn's
worker unchanged.
"""

from __future__ import annotations

import errno
import os
import select

from gunicorn.workers.sync import StopWaiting
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


class SyncWorker(GunicornSyncWorker):
    """gunicorn's sync worker, waiting in epoll with exclusive wake-ups on the listening sockets."""

    _epoll: select.epoll | None = None  # with the fds it watches, in _ready (both set on first use)
    _ready: dict[int, object]

    def _poller(self) -> select.epoll:
        """The worker's epoll set, made on first use (after the fork: each worker has its own)."""
        if self._epoll is None:
            epoll = select.epoll()
            ready: dict[int, object] = {}
            for item in self.wait_fds:
                fd = item if isinstance(item, int) else item.fileno()
                exclusive = 0 if isinstance(item, int) else EXCLUSIVE  # the pipe: every worker hears it
                epoll.register(fd, select.EPOLLIN | exclusive)
                ready[fd] = item
            self._epoll, self._ready = epoll, ready
        return self._epoll

    def wait(self, timeout):
        if not EXCLUSIVE:
            return super().wait(timeout)
        try:
            self.notify()
            events = self._poller().poll(timeout)
        except OSError as error:  # as gunicorn's wait(): a closed socket ends the worker
            if error.errno == errno.EBADF:
                if self.nr < 0:
                    return self.sockets
                raise StopWaiting from None
            raise
        ready = [self._ready[fd] for fd, _ in events]
        if self.PIPE[0] in ready:
            os.read(self.PIPE[0], 1)
        return ready or None
