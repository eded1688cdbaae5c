"""The `asgi-guard` typer app: every command registered in one place, `main(argv) -> exit code`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from asgi_guard.cli.credits import credits
from asgi_guard.cli.demo import demo
from asgi_guard.cli.routes import check, routes
from asgi_guard.cli.services import services
from asgi_guard.cli.worker import worker

app = typer.Typer(
    name="asgi-guard",
    help="Per-route policies for Starlette and FastAPI: inspect, check, run the demo and dev services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from asgi_guard import __version__

        typer.echo(f"asgi-guard {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """Per-route policies for Starlette and FastAPI: inspect, check, run the demo and dev services."""


app.command("routes")(routes)
app.command("check")(check)
app.command("demo")(demo)
app.command("worker")(worker)
app.add_typer(services, name="services")
app.add_typer(credits, name="credits")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="asgi-guard")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
