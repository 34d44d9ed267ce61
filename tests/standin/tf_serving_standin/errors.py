"""Errors carrying TF Serving's canonical status codes, and their gRPC/HTTP mappings."""

from __future__ import annotations

import grpc

#: HTTP status for each canonical code, as in TF Serving's model_servers/http_server.cc.
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

#: tensorflow.error.Code numbers (tensorflow_serving.util.StatusProto.error_code).
CODE_NUMBER: dict[str, int] = {name: code.value[0] for name, code in grpc.StatusCode.__members__.items()}


class ServingError(Exception):
    """A request or load failure with a canonical code name such as ``NOT_FOUND``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        self.code = code
        self.message = message

    @property
    def grpc_code(self) -> grpc.StatusCode:
        """The gRPC status code."""
        return grpc.StatusCode[self.code]

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers with."""
        return HTTP_STATUS[self.code]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    """Shorthand for the most common client error."""
    return ServingError("INVALID_ARGUMENT", message)


def from_exception(exc: BaseException, default: str = "UNKNOWN") -> ServingError:
    """Map a TensorFlow (or other) exception to a ServingError, keeping TF's code if it has one."""
    if isinstance(exc, ServingError):
        return exc
    code = default
    error_code = getattr(exc, "error_code", None)
    if isinstance(error_code, int):
        for name, number in CODE_NUMBER.items():
            if number == error_code:
                code = name
                break
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return ServingError(code, message)
