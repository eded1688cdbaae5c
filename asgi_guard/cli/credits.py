"""`asgi-guard credits grant|set|show USER [N] [--type T] [--memory] [--ip]` (`--ip`: USER is an
anonymous client's IP address, not a JWT subject). The work is in asgi_guard.stages.credits.cli,
which also refuses the in-process store unless `--memory`."""

from __future__ import annotations

import argparse
from typing import Annotated

import typer

credits = typer.Typer(
    help="Grant, set or show a user's credit balance on the backend named by ASGI_GUARD_VALKEY_URL "
    "(prints the balance as a plain number).",
    no_args_is_help=True,
)

UserArg = Annotated[str, typer.Argument(help="the user (the JWT `sub`)", show_default=False)]
TypeOpt = Annotated[str, typer.Option("--type", help="credit type")]
MemoryOpt = Annotated[
    bool,
    typer.Option("--memory", help="allow the in-process store (the balance is gone when the command exits)"),
]
IpOpt = Annotated[
    bool, typer.Option("--ip", help="USER is an anonymous client's IP address, not a JWT subject")
]


def _run(
    action: str, user: str, amount: int | None, credit_type: str, memory: bool, ip: bool = False
) -> None:
    from asgi_guard.stages.credits.cli import handle

    args = argparse.Namespace(
        credits_action=action,
        user=user,
        amount=amount,
        credit_type=credit_type,
        memory=memory,
        anonymous=ip,
    )
    raise typer.Exit(handle(args))


@credits.command("grant", context_settings={"ignore_unknown_options": True})
def grant(
    user: UserArg,
    amount: Annotated[
        int, typer.Argument(metavar="N", help="credits to add (negative debits, never below 0)")
    ],
    credit_type: TypeOpt = "default",
    memory: MemoryOpt = False,
    ip: IpOpt = False,
) -> None:
    """Add N credits and print the new balance."""
    _run("grant", user, amount, credit_type, memory, ip)


@credits.command("set")
def set_(
    user: UserArg,
    amount: Annotated[int, typer.Argument(metavar="N", min=0, help="the new balance")],
    credit_type: TypeOpt = "default",
    memory: MemoryOpt = False,
    ip: IpOpt = False,
) -> None:
    """Set the balance to N and print it."""
    _run("set", user, amount, credit_type, memory, ip)


@credits.command("show")
def show(
    user: UserArg, credit_type: TypeOpt = "default", memory: MemoryOpt = False, ip: IpOpt = False
) -> None:
    """Print the balance."""
    _run("show", user, None, credit_type, memory, ip)
