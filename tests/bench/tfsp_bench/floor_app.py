"""The floor of the web tier: the least any WSGI app under gunicorn can add to a TF Serving call.

Copied onto the vantage web host and run by its own gunicorn (the deployed virtualenv, the host's
gunicorn.conf.py) by ``tfsp_bench.floor``. Two apps, neither of them the calculator:

- ``hello``: reads the request body and answers a constant JSON document: nginx + gunicorn alone.
- ``call``: the same, plus one gRPC Predict to TF Serving with a request serialized once at start-up
  and the answer left as bytes: no Django, no validation, no protobuf work, no metrics. It is the
  cheapest way grpcio can make the web tier's call.

So ``call`` is a lower bound on what the calculator's web tier can cost in this process model: if it
misses a target, no change to the app alone can meet it. Needs only grpcio (the web hosts have it).
"""

from __future__ import annotations

import os

import grpc

PREDICT = "/tensorflow.serving.PredictionService/Predict"
ANSWER = b'{"result": 7.0}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]

_predict = None
_request = b""


def _read_body(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def hello(environ: dict, start_response) -> list[bytes]:
    """nginx and gunicorn only."""
    _read_body(environ)
    start_response("200 OK", HEADERS)
    return [ANSWER]


def call(environ: dict, start_response) -> list[bytes]:
    """One Predict per request, over a channel made on first use (after gunicorn's fork)."""
    global _predict, _request
    _read_body(environ)
    if _predict is None:
        channel = grpc.insecure_channel(os.environ["FLOOR_TARGET"])
        # No serializers: the request goes as the bytes made once, the answer comes back as bytes.
        _predict = channel.unary_unary(PREDICT)
        _request = bytes.fromhex(os.environ["FLOOR_REQUEST"])
    _predict(_request, timeout=2.0)
    start_response("200 OK", HEADERS)
    return [ANSWER]
