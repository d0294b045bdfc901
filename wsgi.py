"""Entry point for ``gunicorn wsgi:app``."""

import sys

from github_app.app import create_app
from github_app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"Configuration error: {exc}", file=sys.stderr)
    raise SystemExit(3) from None
