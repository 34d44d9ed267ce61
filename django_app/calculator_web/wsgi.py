"""WSGI entry point for gunicorn: ``calculator_web.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calculator_web.settings")

application = get_wsgi_application()
