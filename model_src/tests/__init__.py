"""Tests of the calculator export (run: pytest model_src)."""
