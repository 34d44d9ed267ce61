"""Stand-in for gunicorn in the nginx tests: answers every request on a unix
socket with the request line and headers it received, as JSON. Paths under
/slow/ answer after two seconds (requests in progress, for the connection limit)."""

import json
import os
import socketserver
import time
from http.server import BaseHTTPRequestHandler

SOCKET_PATH = "/run/calculator-web/gunicorn.sock"


class EchoHandler(BaseHTTPRequestHandler):
    """Echo the request back; also send a header nginx must replace."""

    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path.startswith("/slow/"):
            time.sleep(2)
        body = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.end_headers()
        self.wfile.write(body)

    do_GET = _echo
    do_POST = _echo

    def address_string(self) -> str:
        return "unix"


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    if os.path.exists(SOCKET_PATH):
        os.unlink(SOCKET_PATH)
    with Server(SOCKET_PATH, EchoHandler) as server:
        os.chmod(SOCKET_PATH, 0o660)
        server.serve_forever()
