"""`asgi-guard demo`: the FastAPI io_job demo shipped in the package (asgi_guard/demo/app.py)."""

from __future__ import annotations

import importlib
import os
from typing import Annotated

import typer

from asgi_guard.cli.output import error


def demo(
    host: Annotated[str, typer.Option(help="loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
) -> None:
    """Serve the FastAPI io_job demo on the embedded backend; prints a dev JWT and curl lines.

    Needs the `demo` extra (FastAPI, uvicorn): pip install "asgi-guard\\[demo]".
    """
    os.environ.setdefault("ASGI_GUARD_DEMO_HOST", host)
    os.environ["ASGI_GUARD_DEMO_PORT"] = str(port)
    try:
        demo_app = importlib.import_module("asgi_guard.demo.app")
    except ImportError as exc:
        error(f'the demo needs FastAPI and uvicorn ({exc}): pip install "asgi-guard[demo]"')
        raise typer.Exit(1) from None
    demo_app.serve(host, port)
