"""A webhook receiver for Alertmanager in the Molecule scenario: appends every notification, with
the Authorization header it came with, as one JSON line to the file given as first argument."""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

LOG = sys.argv[1]


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"authorization": self.headers.get("Authorization", ""), "body": json.loads(body)}
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(200)
        self.end_headers()


HTTPServer(("127.0.0.1", 9099), Receiver).serve_forever()
