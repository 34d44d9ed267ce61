"""Test configuration: production settings with a test secret, plain HTTP and a test host.

TF Serving targets default to closed local ports, so a test that forgets to point the client at a
stand-in fails with "unavailable" rather than reaching something by accident.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-for-the-web-tier-tests-only-0123456789abcdef")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("TFSP_TF_SERVING_TARGETS", "127.0.0.1:9")
os.environ.setdefault("TFSP_TF_SERVING_REST_TARGETS", "127.0.0.1:9")

from calculator_web.settings import *  # noqa: F403

# Templates need no collectstatic run in unit tests (the gunicorn tests use the real storage).
STORAGES = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
