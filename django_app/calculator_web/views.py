"""HTML pages (calculator, status) and the health endpoints. Thin: validation lives in ``forms`` /
``operands``, TF Serving calls in ``serving``."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from tfsp_client import ServingError, UpstreamRejected

from calculator_web import serving
from calculator_web.forms import CalculatorForm
from calculator_web.operands import OPERATIONS, OperandError


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The calculator: a GET form (results are shareable links, no cookies needed)."""
    submitted = any(key in request.GET for key in ("a", "b", "operation"))
    form = CalculatorForm(request.GET if submitted else None)
    context: dict = {"form": form, "symbols": OPERATIONS, "model_name": settings.TFSP_MODEL_NAME}
    status = 200
    if submitted:
        if form.is_valid():
            operation = form.cleaned_data["operation"]
            request.metrics_operation = operation
            try:
                context["calculation"] = serving.calculate(operation, form.operands)
                context["operands"] = form.operands
            except OperandError as error:
                context["error"], status = str(error), 400
            except UpstreamRejected as error:
                context["error"], status = error.user_message, 400
            except ServingError as error:
                context["error"], status = error.user_message, 503
        else:
            status = 400
    return render(request, "calculator_web/home.html", context, status=status)


@require_safe
def status(request: HttpRequest) -> HttpResponse:
    """Each TF Serving host's view of the model, and the model's signatures.

    A public page: hosts appear by label ("serving host 1") with generic states, never by their
    internal names or with TF Serving's own error messages (those are in the logs and /metrics).
    """
    client = serving.get_client()
    hosts = client.host_statuses()
    health = {h.host: h for h in client.host_health()}
    context: dict = {
        "hosts": [
            {
                "label": h.label,
                "answers": h.error is None,
                "error": h.error,
                "ejected": health[h.host].ejected,
                "versions": [
                    {"version": v.version, "state": v.state, "failed": v.error_code != "OK"}
                    for v in h.versions
                ],
            }
            for h in hosts
        ],
        "protocol": client.config.protocol,
        "model_name": settings.TFSP_MODEL_NAME,
        "ready": any(h.available for h in hosts),
    }
    try:
        context["metadata"] = serving.observed("metadata", client.metadata)
    except ServingError as error:
        context["metadata_error"] = error.user_message
    return render(request, "calculator_web/status.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and can answer (does not touch TF Serving)."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when at least one TF Serving host reports the model AVAILABLE (hosts asked concurrently)."""
    client = serving.get_client()
    hosts = client.host_statuses()
    health = {h.host: h for h in client.host_health()}
    ready = any(h.available for h in hosts)
    body = {
        "status": "ready" if ready else "not ready",
        "model_name": settings.TFSP_MODEL_NAME,
        "hosts": [
            {
                "host": h.host,
                "label": h.label,
                "available": h.available,
                "ejected": health[h.host].ejected,
                "versions": {str(v.version): v.state for v in h.versions},
                **({"error": h.error} if h.error else {}),
            }
            for h in hosts
        ],
    }
    return JsonResponse(body, status=200 if ready else 503)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def _error_page(request: HttpRequest, status_code: int, title: str, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status_code)
    context = {"title": title, "message": message}
    return render(request, "calculator_web/error.html", context, status=status_code)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400 handler (also reached for oversized bodies outside the API)."""
    return _error_page(request, 400, "Bad request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403 handler."""
    return _error_page(request, 403, "Forbidden", "This request is not allowed.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 handler."""
    return _error_page(request, 404, "Not found", "There is no page at this address.")


def server_error(request: HttpRequest) -> HttpResponse:
    """500 handler: a calm page, never a traceback (the error is logged)."""
    return _error_page(
        request, 500, "Something went wrong", "The server hit an unexpected error. Please try again."
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF failures (no form here posts, but keep the answer in the house style)."""
    return _error_page(request, 403, "Forbidden", "The request was refused (CSRF check failed).")
