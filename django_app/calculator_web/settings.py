"""Django settings, read from the environment here and nowhere else.

Defaults are the safe production ones (DEBUG off, HTTPS redirect, secure cookies, HSTS); a missing
secret key is a start-up error outside DEBUG. The app is stateless: no database, sessions in signed
cookies, so any number of web hosts can sit behind the load balancer.

Environment: DJANGO_SECRET_KEY, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS, DJANGO_CSRF_TRUSTED_ORIGINS,
DJANGO_STATIC_ROOT, DJANGO_SECURE_SSL_REDIRECT, TFSP_TF_SERVING_TARGETS, TFSP_TF_SERVING_REST_TARGETS,
TFSP_TF_SERVING_PROTOCOL, TFSP_MODEL_NAME, TFSP_TF_SERVING_TIMEOUT_SECONDS,
TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS, TFSP_TF_SERVING_STATUS_TIMEOUT_SECONDS,
TFSP_TF_SERVING_CALLS_PER_HOST, TFSP_TF_SERVING_EJECT_AFTER_FAILURES, TFSP_TF_SERVING_EJECTION_SECONDS,
TFSP_TF_SERVING_TLS_CA_FILE, TFSP_TF_SERVING_TLS_CERT_FILE, TFSP_TF_SERVING_TLS_KEY_FILE (mutual TLS
on gRPC: all three or none; read and checked here, at start-up), TFSP_ROUTING_FILE (release routing,
read while running: see ``routing``).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from tfsp_client.config import ClientConfig, ConfigError
from tfsp_client.tls import TlsFiles

BASE_DIR = Path(__file__).resolve().parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean: 1/true/yes/on or 0/false/no/off (case-insensitive)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated list, dropping blanks."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    """Read a positive number."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be positive, not {raw!r}")
    return value


def env_int(name: str, default: int) -> int:
    """Read a positive whole number."""
    raw = os.environ.get(name, "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ImproperlyConfigured(f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw) if raw else default


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (or DJANGO_DEBUG=true for development)")
    SECRET_KEY = "development-only-key-never-used-in-production-0123456789abcdefghij"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "calculator_web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "calculator_web.metrics.MetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "calculator_web.urls"
WSGI_APPLICATION = "calculator_web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

# Stateless: no database at all; sessions (if ever used) live in signed cookies.
DATABASES: dict = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or None
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Request bodies: the API takes small JSON documents only.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100

# HTTPS terminates at nginx, which sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Probes and the metrics scraper talk to gunicorn directly over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = SECURE_SSL_REDIRECT
CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT
CSRF_FAILURE_VIEW = "calculator_web.views.csrf_failure"
SECURE_HSTS_SECONDS = 31536000 if SECURE_SSL_REDIRECT else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL_REDIRECT
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HSTS preload is a commitment to the browsers' preload list that the site owner makes by hand.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# TF Serving (see tfsp_client.ClientConfig).
TFSP_TF_SERVING_TARGETS = env_list("TFSP_TF_SERVING_TARGETS", "localhost:8500")
TFSP_TF_SERVING_REST_TARGETS = env_list("TFSP_TF_SERVING_REST_TARGETS", "localhost:8501")
TFSP_TF_SERVING_PROTOCOL = os.environ.get("TFSP_TF_SERVING_PROTOCOL", "grpc").strip().lower() or "grpc"
if TFSP_TF_SERVING_PROTOCOL not in {"grpc", "rest"}:
    raise ImproperlyConfigured(
        f"TFSP_TF_SERVING_PROTOCOL must be grpc or rest, not {TFSP_TF_SERVING_PROTOCOL!r}"
    )
TFSP_MODEL_NAME = os.environ.get("TFSP_MODEL_NAME", "").strip() or "calculator"
TFSP_TF_SERVING_TIMEOUT_SECONDS = env_float("TFSP_TF_SERVING_TIMEOUT_SECONDS", 2.0)
TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS = env_float("TFSP_TF_SERVING_ATTEMPT_TIMEOUT_SECONDS", 0.25)
TFSP_TF_SERVING_STATUS_TIMEOUT_SECONDS = env_float("TFSP_TF_SERVING_STATUS_TIMEOUT_SECONDS", 0.5)
TFSP_TF_SERVING_CALLS_PER_HOST = env_int("TFSP_TF_SERVING_CALLS_PER_HOST", 16)
TFSP_TF_SERVING_EJECT_AFTER_FAILURES = env_int("TFSP_TF_SERVING_EJECT_AFTER_FAILURES", 2)
TFSP_TF_SERVING_EJECTION_SECONDS = env_float("TFSP_TF_SERVING_EJECTION_SECONDS", 2.0)
# The client's own checks (host:port syntax, duplicates, TLS files readable and PEM), reported under
# the variable's name.
_CONFIG_FIELD_VARIABLES = {
    "targets": "TFSP_TF_SERVING_TARGETS",
    "rest_targets": "TFSP_TF_SERVING_REST_TARGETS",
    "protocol": "TFSP_TF_SERVING_PROTOCOL",
    "tls_ca_file": "TFSP_TF_SERVING_TLS_CA_FILE",
    "tls_cert_file": "TFSP_TF_SERVING_TLS_CERT_FILE",
    "tls_key_file": "TFSP_TF_SERVING_TLS_KEY_FILE",
}
try:
    TFSP_TF_SERVING_TLS = TlsFiles.from_paths(
        os.environ.get("TFSP_TF_SERVING_TLS_CA_FILE", "").strip(),
        os.environ.get("TFSP_TF_SERVING_TLS_CERT_FILE", "").strip(),
        os.environ.get("TFSP_TF_SERVING_TLS_KEY_FILE", "").strip(),
    )
    ClientConfig(
        targets=tuple(TFSP_TF_SERVING_TARGETS),
        rest_targets=tuple(TFSP_TF_SERVING_REST_TARGETS),
        protocol=TFSP_TF_SERVING_PROTOCOL,
        tls=TFSP_TF_SERVING_TLS,
    )
    if TFSP_TF_SERVING_TLS is not None:
        TFSP_TF_SERVING_TLS.read()
except ConfigError as _error:
    _variable = _CONFIG_FIELD_VARIABLES.get(_error.field, _error.field)
    raise ImproperlyConfigured(f"{_variable}: {_error}") from None
# Release routing (canary split, shadow traffic) by TF Serving version label: a JSON file that Ansible
# replaces during a release, re-checked by each process at most once a second (``routing``). Empty:
# no release routing, requests ask for no version label.
TFSP_ROUTING_FILE = os.environ.get("TFSP_ROUTING_FILE", "").strip()
# Largest list the calculator accepts per operand (keeps requests far below gRPC's 4 MiB limit).
TFSP_MAX_ELEMENTS = 1000

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"django.security.RequestDataTooBig": {"level": "WARNING"}},
}
