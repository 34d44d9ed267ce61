"""The JSON API (``/api/v1/...``): thin views over ``operands`` (validation) and ``serving`` (calls).

Every answer is JSON, errors included: ``{"error": "<one line>"}`` with 400 for bad input, 405 for a
wrong method and 503 when TF Serving cannot answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from tfsp_client import ServingError, UpstreamRejected

from calculator_web import serving
from calculator_web.openapi import openapi_document
from calculator_web.operands import OperandError, Operands, check_operation, from_json


class ApiError(Exception):
    """An error answer: HTTP status and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JsonResponse:
    """The API's error body."""
    return JsonResponse({"error": message}, status=status)


def _reject_constant(token: str) -> float:
    raise OperandError(f"{token} is not a number: the values must be finite numbers.")


def json_object(request: HttpRequest) -> dict:
    """The request body as a JSON object, or ApiError(400) saying what is wrong with it."""
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            400, f"The request body is too large: the limit is {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        ) from None
    if not body.strip():
        raise ApiError(
            400, 'The request body is empty: send a JSON object such as {"operation": "add", "a": 3, "b": 4}.'
        )
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except OperandError as error:
        raise ApiError(400, str(error)) from None
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ApiError(400, f"The request body must be a JSON object, not a JSON {type(document).__name__}.")
    return document


def api_endpoint(method: str) -> Callable:
    """Decorate a view: allowed method, CSRF-exempt (no cookies are used), errors as JSON."""

    def decorate(view: Callable[[HttpRequest], JsonResponse]) -> Callable[[HttpRequest], JsonResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest) -> JsonResponse:
            if request.method != method:
                response = error_response(405, f"Use {method} for this endpoint.")
                response["Allow"] = method
                return response
            try:
                return view(request)
            except ApiError as error:
                return error_response(error.status, error.message)
            except OperandError as error:
                return error_response(400, str(error))
            except UpstreamRejected as error:
                return error_response(400, error.user_message)
            except ServingError as error:
                return error_response(503, error.user_message)

        return wrapper

    return decorate


def _operands(document: dict) -> Operands:
    return from_json(document.get("a"), document.get("b"), settings.TFSP_MAX_ELEMENTS)


def _shown_operand(values: list[float], operands: Operands) -> float | list[float]:
    return values[0] if operands.scalar else values


@api_endpoint("POST")
def predict(request: HttpRequest) -> JsonResponse:
    """``{operation, a, b}`` -> ``{result, model_version, ...}``."""
    document = json_object(request)
    operation = check_operation(document.get("operation"))
    request.metrics_operation = operation
    operands = _operands(document)
    calculation = serving.calculate(operation, operands)
    return JsonResponse(
        {
            "operation": operation,
            "a": _shown_operand(operands.a, operands),
            "b": _shown_operand(operands.b, operands),
            "result": calculation.result,
            "model_name": settings.TFSP_MODEL_NAME,
            "model_version": calculation.model_version,
            "version_label": calculation.version_label,
            "served_by": calculation.host,
            "elapsed_ms": round(calculation.elapsed_ms, 3),
        }
    )


@api_endpoint("POST")
def classify(request: HttpRequest) -> JsonResponse:
    """``{a, b}`` -> for each pair, the model's classes and scores."""
    request.metrics_operation = "classify"
    operands = _operands(json_object(request))
    classification = serving.classify(operands)
    results = []
    for classes in classification.results:
        ranked = sorted(classes, key=lambda item: item[1], reverse=True)
        results.append(
            {
                "label": ranked[0][0] if ranked else None,
                "classes": [{"label": label, "score": score} for label, score in classes],
            }
        )
    return JsonResponse(
        {
            "a": _shown_operand(operands.a, operands),
            "b": _shown_operand(operands.b, operands),
            "results": results,
            "model_name": settings.TFSP_MODEL_NAME,
            "model_version": classification.model_version,
            "version_label": classification.version_label,
            "served_by": classification.host,
            "elapsed_ms": round(classification.elapsed_ms, 3),
        }
    )


@api_endpoint("POST")
def regress(request: HttpRequest) -> JsonResponse:
    """``{a, b}`` -> the regress signature's value for each pair."""
    request.metrics_operation = "regress"
    operands = _operands(json_object(request))
    calculation = serving.regress(operands)
    return JsonResponse(
        {
            "a": _shown_operand(operands.a, operands),
            "b": _shown_operand(operands.b, operands),
            "result": calculation.result,
            "model_name": settings.TFSP_MODEL_NAME,
            "model_version": calculation.model_version,
            "version_label": calculation.version_label,
            "served_by": calculation.host,
            "elapsed_ms": round(calculation.elapsed_ms, 3),
        }
    )


@api_endpoint("GET")
def openapi(request: HttpRequest) -> JsonResponse:
    """The OpenAPI 3.1 description of this API."""
    return JsonResponse(openapi_document(request.build_absolute_uri("/")))
