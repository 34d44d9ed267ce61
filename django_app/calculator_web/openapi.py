"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations

NUMBERS = {
    "oneOf": [
        {"type": "number"},
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 1000},
    ],
    "description": "A number, or a list of numbers (a and b must both be numbers or equal-length lists). "
    "Values must be finite and fit float32.",
}
RESULT = {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]}
ANSWER_FIELDS = {
    "model_name": {"type": "string"},
    "model_version": {
        "type": ["integer", "null"],
        "description": "the model version that answered; null over the REST protocol",
    },
    "version_label": {
        "type": ["string", "null"],
        "description": "the TF Serving version label asked for during a release (such as stable or canary); "
        "null outside a release",
    },
    "served_by": {"type": "string", "description": "the TF Serving host:port that answered"},
    "elapsed_ms": {"type": "number", "description": "round trip to TF Serving, retries included"},
}
ERROR = {
    "description": "The error, in one line",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        }
    },
}
ERRORS = {
    "400": {**ERROR, "description": "Invalid input (not JSON, wrong types, lengths, range, size)"},
    "503": {**ERROR, "description": "TF Serving unavailable or too slow; try again"},
}


def _pair_body(extra: dict | None = None, required: tuple[str, ...] = ("a", "b")) -> dict:
    properties = {**(extra or {}), "a": NUMBERS, "b": NUMBERS}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": properties, "required": list(required)},
                "example": {"operation": "add", "a": 3, "b": 4} if extra else {"a": [1, 5], "b": [2, 5]},
            }
        },
    }


def _ok(properties: dict) -> dict:
    return {
        "description": "OK",
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {**properties, **ANSWER_FIELDS}}}
        },
    }


def openapi_document(server_url: str) -> dict:
    """The document, with this deployment's URL as the server."""
    operation = {"type": "string", "enum": ["add", "subtract", "multiply"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TFSP calculator API",
            "version": "1.0.0",
            "description": "Add, subtract and multiply float32 numbers with a model on TensorFlow Serving.",
        },
        "servers": [{"url": server_url.rstrip("/")}],
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "summary": "Calculate with the model's add, subtract or multiply signature",
                    "operationId": "predict",
                    "requestBody": _pair_body({"operation": operation}, ("operation", "a", "b")),
                    "responses": {
                        "200": _ok({"operation": operation, "a": NUMBERS, "b": NUMBERS, "result": RESULT}),
                        **ERRORS,
                    },
                }
            },
            "/api/v1/classify": {
                "post": {
                    "summary": "Classify each (a, b) pair with the model's classify signature",
                    "operationId": "classify",
                    "requestBody": _pair_body(),
                    "responses": {
                        "200": _ok(
                            {
                                "results": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "label": {"type": "string"},
                                            "classes": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "label": {"type": "string"},
                                                        "score": {"type": "number"},
                                                    },
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        ),
                        **ERRORS,
                    },
                }
            },
            "/api/v1/regress": {
                "post": {
                    "summary": "Regress each (a, b) pair with the model's regress signature (a + b)",
                    "operationId": "regress",
                    "requestBody": _pair_body(),
                    "responses": {"200": _ok({"result": RESULT}), **ERRORS},
                }
            },
            "/healthz": {
                "get": {"summary": "The process is alive", "responses": {"200": {"description": "OK"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "At least one TF Serving host reports the model AVAILABLE",
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
        },
    }
