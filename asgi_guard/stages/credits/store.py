"""The credits ledger contract shared by the memory and Valkey forms.

A request reserves its price up front (the balance drops at once, so concurrent requests can never
overspend), then settles the reservation exactly once: commit keeps the charge, refund gives it back.
A reservation nobody settles before its deadline is refunded by the next operation on that balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from asgi_guard.state.keys import FALLBACK, key_part

DEFAULT_TYPE = "default"


@dataclass(frozen=True, slots=True)
class Anonymous:
    """The balance of an anonymous client, addressed by its IP address (the address the guard
    resolved: `trusted_proxies` applied): `await store.set(Anonymous("203.0.113.7"), 10)`.

    A plain string always names a JWT subject, so an anonymous client never reaches the balance of
    the user whose subject happens to read like its address (see `account`)."""

    address: str


User = str | Anonymous  # a JWT subject as is, or Anonymous(address)


def account(user: User) -> str:
    """The ledger's name for `user`: one rule, injective across both kinds.

    - a subject not starting with `~`: itself (the name operators and earlier versions used);
    - a subject starting with `~`: `~` + the subject (so it starts with `~~`);
    - `Anonymous(address)`: `~` + the escaped address (`asgi_guard.state.keys.key_part`, which never
      starts with a bare `~`), so it never starts with `~~` and never equals a subject's name.
    """
    if isinstance(user, Anonymous):
        return FALLBACK + key_part(user.address)
    return FALLBACK + user if user.startswith(FALLBACK) else user


class ReserveStatus(IntEnum):
    SHORT = 0
    RESERVED = 1
    DUPLICATE = 2


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of `reserve`: `balance` is what is left (or what there was, when short)."""

    status: ReserveStatus
    balance: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of `commit`/`refund`: `done` is False when nothing was pending under that id."""

    done: bool
    balance: int


class CreditError(ValueError):
    """A balance operation that would break an invariant (a negative balance or amount)."""


class CreditStore(Protocol):
    """Per-user balances by credit type. All operations are atomic. `user` is a JWT subject (a
    plain string) or `Anonymous(address)` for a client the guard knows only by its IP address.

    Forms: `memory.MemoryCreditStore`, `valkey.ValkeyCreditStore`; their meaning:
    `reference.ReferenceLedger` (proven equal in tests/credits/test_credits_properties.py)."""

    async def reserve(
        self, user: User, amount: int, reservation_id: str, ttl: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        """Take `amount` now, pending settlement; refunded automatically `ttl` seconds from now."""

    async def commit(
        self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE, amount: int | None = None
    ) -> Settlement:
        """Keep the reserved amount, or at most `amount` of it (the rest is refunded at once): a
        commit never charges more than was reserved."""

    async def refund(self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        """Give the reserved amount back."""

    async def grant(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        """Add `amount` (negative debits, never below zero) and return the new balance."""

    async def set(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        """Set the available balance (pending reservations still settle on top of it)."""

    async def balance(self, user: User, credit_type: str = DEFAULT_TYPE) -> int:
        """The available balance (expired reservations refunded first)."""


def check_amount(amount: int, *, allow_negative: bool = False) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise CreditError(f"credit amounts are integers, got {amount!r}")
    if amount < 0 and not allow_negative:
        raise CreditError(f"credit amount must not be negative, got {amount}")
    return amount
