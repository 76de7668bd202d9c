"""``python -m knowgate``."""

from knowgate.cli import app

app()
