"""Template tags of the calculator pages."""
