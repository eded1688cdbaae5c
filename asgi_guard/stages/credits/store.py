"""The credits ledger contract shared by the memory and Valkey forms.

A request reserves its price up front (the balance drops at once, so concurrent requests can never
overspend), then settles the reservation exactly once: commit keeps the charge, refund gives it back.
A reservation nobody settles before its deadline is refunded by the next operation on that balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

DEFAULT_TYPE = "default"


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
    """Per-user balances by credit type. All operations are atomic.

    Forms: `memory.MemoryCreditStore`, `valkey.ValkeyCreditStore`; their meaning:
    `reference.ReferenceLedger` (proven equal in tests/credits/test_credits_properties.py)."""

    async def reserve(
        self, user: str, amount: int, reservation_id: str, ttl: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        """Take `amount` now, pending settlement; refunded automatically `ttl` seconds from now."""

    async def commit(
        self, user: str, reservation_id: str, credit_type: str = DEFAULT_TYPE, amount: int | None = None
    ) -> Settlement:
        """Keep the reserved amount, or at most `amount` of it (the rest is refunded at once): a
        commit never charges more than was reserved."""

    async def refund(self, user: str, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        """Give the reserved amount back."""

    async def grant(self, user: str, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        """Add `amount` (negative debits, never below zero) and return the new balance."""

    async def set(self, user: str, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        """Set the available balance (pending reservations still settle on top of it)."""

    async def balance(self, user: str, credit_type: str = DEFAULT_TYPE) -> int:
        """The available balance (expired reservations refunded first)."""


def check_amount(amount: int, *, allow_negative: bool = False) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise CreditError(f"credit amounts are integers, got {amount!r}")
    if amount < 0 and not allow_negative:
        raise CreditError(f"credit amount must not be negative, got {amount}")
    return amount
