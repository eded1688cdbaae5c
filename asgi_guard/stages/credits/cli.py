"""`asgi-guard credits grant|set|show USER [N] [--type T] [--ip]` on the backend that
ASGI_GUARD_VALKEY_URL names.

USER is a JWT subject (`sub`) as the IdP writes it; with `--ip` it is the IP address of an anonymous
client instead (its own balance: `Anonymous(address)`, never the subject that reads the same).

Each command prints the resulting balance as a plain number, so scripts can read it. With no Valkey
configured (unset or memory://) the command refuses (exit 2): the in-process store would forget the
balance when the command exits, while the app runs in another process. `--memory` runs it anyway and
says so on stderr.

The lead wires it in with `add_parser(subparsers)`; `python -m asgi_guard.stages.credits.cli ...` also works.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from asgi_guard.core.errors import BackendUnavailable
from asgi_guard.core.settings import GuardSettings
from asgi_guard.stages.credits import credit_store
from asgi_guard.stages.credits.store import DEFAULT_TYPE, Anonymous, CreditError, User
from asgi_guard.state import Backend, backend_from_settings

MEMORY_REFUSAL = (
    "asgi-guard credits: no ASGI_GUARD_VALKEY_URL is set, so this would act on an in-process store that "
    "the app does not share and that is gone when this command exits. Set ASGI_GUARD_VALKEY_URL to the "
    "app's Valkey, or pass --memory to do it anyway."
)
MEMORY_NOTE = (
    "asgi-guard credits: --memory: the balance below lives only in this process; "
    "it is gone when the command exits."
)


def is_in_process(settings: GuardSettings) -> bool:
    url = settings.valkey_url
    return not url or url.startswith("memory:")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `credits` command (with grant / set / show) to an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "credits", help="grant, set or show a user's credit balance"
    )
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="credits_action", required=True, metavar="{grant,set,show}")
    grant = actions.add_parser("grant", help="add N credits (negative N debits, never below zero)")
    grant.add_argument("user")
    grant.add_argument("amount", type=int, metavar="N")
    set_ = actions.add_parser("set", help="set the balance to N")
    set_.add_argument("user")
    set_.add_argument("amount", type=_non_negative, metavar="N")
    show = actions.add_parser("show", help="print the balance")
    show.add_argument("user")
    for sub in (grant, set_, show):
        sub.add_argument(
            "--type", dest="credit_type", default=DEFAULT_TYPE, help="credit type (default: %(default)s)"
        )
        sub.add_argument(
            "--ip",
            dest="anonymous",
            action="store_true",
            help="USER is an anonymous client's IP address, not a JWT subject",
        )
        sub.add_argument(
            "--memory",
            action="store_true",
            help="allow the in-process store (the balance is gone when the command exits)",
        )
    parser.set_defaults(handler=handle)


async def run(args: argparse.Namespace, backend: Backend) -> int:
    """Apply the parsed command to `backend` and return the resulting balance."""
    store = credit_store(backend)
    action, credit_type = args.credits_action, args.credit_type
    user: User = Anonymous(args.user) if getattr(args, "anonymous", False) else args.user
    if action == "grant":
        return await store.grant(user, args.amount, credit_type)
    if action == "set":
        return await store.set(user, args.amount, credit_type)
    return await store.balance(user, credit_type)


def handle(args: argparse.Namespace, backend: Backend | None = None) -> int:
    """Run the command, print the balance; return the process exit code (2: refused, see above)."""
    settings = GuardSettings() if backend is None else None
    if settings is not None and is_in_process(settings):
        if not getattr(args, "memory", False):
            print(MEMORY_REFUSAL, file=sys.stderr)
            return 2
        print(MEMORY_NOTE, file=sys.stderr)

    async def go() -> int:
        used = backend or backend_from_settings(settings or GuardSettings())
        await used.start()
        try:
            return await run(args, used)
        finally:
            if backend is None:
                await used.close()

    try:
        balance = asyncio.run(go())
    except (CreditError, BackendUnavailable) as exc:
        print(f"asgi-guard credits: {exc}", file=sys.stderr)
        return 1
    print(balance)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asgi-guard credits")
    _fill(parser)
    args = parser.parse_args(argv)
    return handle(args)


if __name__ == "__main__":
    sys.exit(main())
