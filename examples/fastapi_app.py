"""The original io_job endpoint, rebuilt with asgi-guard: the FastAPI demo.

Its source lives in the package, asgi_guard/demo/app.py, so that `asgi-guard demo` works from an
installed wheel; read it there. This file re-exports it so `uvicorn examples.fastapi_app:app` and
`python examples/fastapi_app.py` keep working (pip install "asgi-guard[demo]").
"""

from __future__ import annotations

import os

from asgi_guard.demo.app import IO_JOB, JOB_STATUS, app, dev_token, registry, runtime, serve, settings

__all__ = ["IO_JOB", "JOB_STATUS", "app", "dev_token", "registry", "runtime", "serve", "settings"]

if __name__ == "__main__":
    serve(
        os.environ.get("ASGI_GUARD_DEMO_HOST", "127.0.0.1"),
        int(os.environ.get("ASGI_GUARD_DEMO_PORT", "8000")),
    )
