"""The calculator web tier: Django project and app in one package (settings, URLs, views, API)."""
