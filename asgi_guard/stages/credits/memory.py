"""Credits kept in this process (the embedded default): exact, but not shared across processes.

The ledger is the reference model itself (`reference.ReferenceLedger`), driven by the backend's
clock, as the rate limiter's memory form runs the reference steps: one logic, not two copies.
"""

from __future__ import annotations

from asgi_guard.stages.credits.reference import ReferenceLedger
from asgi_guard.stages.credits.store import (
    DEFAULT_TYPE,
    Reservation,
    Settlement,
    User,
    account,
    check_amount,
)
from asgi_guard.state.memory import MemoryBackend

_LEDGER_KEY = "__ledger__"


class MemoryCreditStore:
    """Every method runs without awaiting, so each one is atomic on the event loop.

    The ledger is the single entry of the backend's "credits" namespace, so every app and CLI call
    on one MemoryBackend sees the same balances (and the namespace's size bound never evicts one)."""

    def __init__(self, backend: MemoryBackend) -> None:
        store = backend.namespace("credits")
        ledger = store.get(_LEDGER_KEY)
        if ledger is None:
            ledger = ReferenceLedger()
            store.set(_LEDGER_KEY, ledger)
        self._ledger: ReferenceLedger = ledger
        self._clock = backend.clock

    async def reserve(
        self, user: User, amount: int, reservation_id: str, ttl: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        return self._ledger.reserve(account(user), amount, reservation_id, ttl, self._clock(), credit_type)

    async def commit(
        self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE, amount: int | None = None
    ) -> Settlement:
        keep = None if amount is None else check_amount(amount)
        return self._ledger.settle(account(user), reservation_id, False, self._clock(), credit_type, keep)

    async def refund(self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        return self._ledger.settle(account(user), reservation_id, True, self._clock(), credit_type)

    async def grant(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        return self._ledger.grant(account(user), amount, self._clock(), credit_type)

    async def set(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        return self._ledger.set(account(user), amount, self._clock(), credit_type)

    async def balance(self, user: User, credit_type: str = DEFAULT_TYPE) -> int:
        return self._ledger.balance(account(user), self._clock(), credit_type)
