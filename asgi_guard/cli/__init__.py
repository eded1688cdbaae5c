"""The `asgi-guard` command (typer + rich): routes, check, demo, services, credits, worker.

`main(argv)` runs it and returns the exit code; `python -m asgi_guard.cli` does the same.
Each command lives in its own module here; nothing in this package is imported at run time by an app.
"""

from asgi_guard.cli.main import app, main

__all__ = ["app", "main"]
