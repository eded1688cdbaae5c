"""`asgi-guard credits grant|set|show USER [N] [--type T] [--memory]` (the work is in
asgi_guard.stages.credits.cli, which also refuses the in-process store unless `--memory`)."""

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


def _run(action: str, user: str, amount: int | None, credit_type: str, memory: bool) -> None:
    from asgi_guard.stages.credits.cli import handle

    args = argparse.Namespace(
        credits_action=action, user=user, amount=amount, credit_type=credit_type, memory=memory
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
) -> None:
    """Add N credits and print the new balance."""
    _run("grant", user, amount, credit_type, memory)


@credits.command("set")
def set_(
    user: UserArg,
    amount: Annotated[int, typer.Argument(metavar="N", min=0, help="the new balance")],
    credit_type: TypeOpt = "default",
    memory: MemoryOpt = False,
) -> None:
    """Set the balance to N and print it."""
    _run("set", user, amount, credit_type, memory)


@credits.command("show")
def show(user: UserArg, credit_type: TypeOpt = "default", memory: MemoryOpt = False) -> None:
    """Print the balance."""
    _run("show", user, None, credit_type, memory)
