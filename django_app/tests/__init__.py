"""Tests of the web tier (run from the repository root: .venv-web/bin/pytest django_app)."""
