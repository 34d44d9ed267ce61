"""App configuration (templates and static files live in this package)."""

from django.apps import AppConfig


class CalculatorWebConfig(AppConfig):
    """The calculator app."""

    name = "calculator_web"
    verbose_name = "TFSP calculator"
