"""``calculator-web-manage``: Django's manage.py as a console script of the installed wheel."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run a Django management command (check --deploy, collectstatic, ...)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calculator_web.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:  # a configuration mistake: one line, no traceback
        sys.exit(f"calculator-web-manage: configuration error: {error}")


if __name__ == "__main__":
    main()
