"""A TensorFlow Serving STAND-IN: a test fixture, never production.

It imitates `tensorflow_model_server` (flags, model loading, version policies,
labels, gRPC and REST APIs, status codes) closely enough that a client working
against it works against the real server, for machines that cannot pull the
official tensorflow/serving image. See tests/standin/README.md for what it does
and does not implement.
"""

#: Reported by --version, so no one mistakes this for the real server.
VERSION = "2.21.0-standin"
