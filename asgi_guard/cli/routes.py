"""`asgi-guard routes FILE [--app MODULE:APP]` and `asgi-guard check FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from asgi_guard.cli.output import console, error, print_json
from asgi_guard.core.errors import ConfigError
from asgi_guard.registry import RouteRegistry, collect_errors

FileArg = Annotated[Path, typer.Argument(help="routes TOML file", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead of a table")]


def routes(
    file: FileArg,
    app: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="MODULE:APP",
            help="compare the policies with this app's real routes; exit 1 on unbound templates "
            "or unguarded routes",
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", metavar="GLOB", help="app paths that may stay unguarded (repeatable)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print each route's stages and limit numbers.

    JSON: {"file", "routes": [{"name", "methods", "path", "stages", "rate_limits": [{"name", "algo",
    numbers...}], "rate_limit_mode", "cache", "credits", "auth"}], "ok"} plus, with --app,
    "app": {"target", "unbound": [{"name", "path", "methods"}], "unguarded": [...]}.
    Exit 0, or 1 on a broken file or (with --app) a mismatch.
    """
    from asgi_guard.cli.policy import policy_text, registry_policies

    try:
        registry = RouteRegistry.from_file(file)
    except ConfigError as exc:
        if as_json:
            print_json({"file": str(file), "ok": False, "errors": [{"route": None, "message": str(exc)}]})
        else:
            error(f"{exc} (asgi-guard check lists every broken route)")
        raise typer.Exit(1) from None
    policies = registry_policies(registry)
    result: dict[str, Any] = {"file": str(file), "routes": policies, "ok": True}
    if app is not None:
        from asgi_guard.cli.app_routes import app_routes, compare, load_app

        try:
            found = app_routes(load_app(app))
        except (ImportError, AttributeError, ValueError, ConfigError) as exc:
            error(f"--app {app}: {type(exc).__name__}: {exc}")
            raise typer.Exit(2) from None
        mismatch = compare(registry, found, ignore or ())
        result["app"] = {"target": app, **mismatch}
        result["ok"] = not (mismatch["unbound"] or mismatch["unguarded"])
    if as_json:
        print_json(result)
    else:
        out = console()
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for column in ("NAME", "METHODS", "PATH", "STAGES / POLICY"):
            table.add_column(column, no_wrap=True)
        for policy in policies:
            table.add_row(policy["name"], ",".join(policy["methods"]), policy["path"], policy_text(policy))
        out.print(table)
        if app is not None:
            _print_mismatch(result["app"])
    raise typer.Exit(0 if result["ok"] else 1)


def _print_mismatch(report: dict[str, Any]) -> None:
    out = console()
    if not (report["unbound"] or report["unguarded"]):
        out.print(f"\nok: every policy is bound to a route of {report['target']} and every route is guarded")
        return
    for entry in report["unbound"]:
        out.print(
            f"unbound: {entry['name']} {','.join(entry['methods'])} {entry['path']}: "
            f"no route of {report['target']} serves it (start-up would fail)",
            markup=False,
        )
    for entry in report["unguarded"]:
        out.print(
            f"unguarded: {','.join(entry['methods'])} {entry['path']} ({entry['name']}): no policy",
            markup=False,
        )


def check(file: FileArg, as_json: JsonOpt = False) -> None:
    """Validate a routes TOML file and report every broken route (not just the first).

    JSON: {"file", "ok", "routes": <number loaded>, "errors": [{"route": name or null, "message"}]}.
    Exit 0 when valid, 1 otherwise.
    """
    registry, errors = collect_errors(file)
    if as_json:
        print_json(
            {
                "file": str(file),
                "ok": not errors,
                "routes": len(registry),
                "errors": [{"route": route, "message": message} for route, message in errors],
            }
        )
    elif errors:
        for _, message in errors:
            error(message)
        console(stderr=True).print(f"{len(errors)} error(s) in {file}", markup=False)
    else:
        console().print(f"ok: {len(registry)} routes in {file}", markup=False)
    raise typer.Exit(1 if errors else 0)
