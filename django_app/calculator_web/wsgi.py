"""WSGI entry point for gunicorn: ``calculator_web.wsgi:application``.

A configuration mistake (a bad setting, a TF Serving name that does not resolve) stops the start
with one line naming the setting, and exit status 4, gunicorn's "App failed to load": its arbiter
then stops rather than restarting workers that would fail the same way.
"""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calculator_web.settings")

try:
    application = get_wsgi_application()
    from calculator_web.serving import check_targets_resolve

    check_targets_resolve()
except ImproperlyConfigured as error:
    print(f"calculator-web: configuration error: {error}", file=sys.stderr, flush=True)
    sys.exit(4)
