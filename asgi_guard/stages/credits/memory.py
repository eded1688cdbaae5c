"""Credits kept in this process (the embedded default): exact, but not shared across processes."""

from __future__ import annotations

from collections.abc import Callable

from asgi_guard.stages.credits.store import (
    DEFAULT_TYPE,
    CreditError,
    Reservation,
    ReserveStatus,
    Settlement,
    check_amount,
)
from asgi_guard.state.memory import MemoryBackend

_LEDGER_KEY = "__ledger__"
_Account = tuple[str, str]


class _Ledger:
    """Balances and pending reservations. Held as the single entry of the backend's "credits"
    namespace so every app and CLI call on one MemoryBackend sees the same balances (and the
    namespace's size bound can never evict a balance)."""

    __slots__ = ("balances", "pending")

    def __init__(self) -> None:
        self.balances: dict[_Account, int] = {}
        self.pending: dict[_Account, dict[str, tuple[int, float]]] = {}


class MemoryCreditStore:
    """Every method runs without awaiting, so each one is atomic on the event loop."""

    def __init__(self, backend: MemoryBackend) -> None:
        store = backend.namespace("credits")
        ledger = store.get(_LEDGER_KEY)
        if ledger is None:
            ledger = _Ledger()
            store.set(_LEDGER_KEY, ledger)
        self._ledger: _Ledger = ledger
        self._clock: Callable[[], float] = backend.clock

    def _sweep(self, account: _Account) -> int:
        """Refund the account's expired reservations; return the available balance."""
        ledger = self._ledger
        balance = ledger.balances.get(account, 0)
        pending = ledger.pending.get(account)
        if pending:
            now = self._clock()
            expired = [rid for rid, (_, deadline) in pending.items() if deadline <= now]
            for rid in expired:
                balance += pending.pop(rid)[0]
            if expired:
                ledger.balances[account] = balance
            if not pending:
                del ledger.pending[account]
        return balance

    async def reserve(
        self, user: str, amount: int, reservation_id: str, ttl: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        check_amount(amount)
        account = (credit_type, user)
        balance = self._sweep(account)
        pending = self._ledger.pending.get(account)
        if pending is not None and reservation_id in pending:
            return Reservation(ReserveStatus.DUPLICATE, balance)
        if balance < amount:
            return Reservation(ReserveStatus.SHORT, balance)
        balance -= amount
        self._ledger.balances[account] = balance
        self._ledger.pending.setdefault(account, {})[reservation_id] = (amount, self._clock() + ttl)
        return Reservation(ReserveStatus.RESERVED, balance)

    def _settle(self, account: _Account, reservation_id: str, refund: bool) -> Settlement:
        balance = self._sweep(account)
        pending = self._ledger.pending.get(account)
        if not pending or reservation_id not in pending:
            return Settlement(False, balance)
        amount, _ = pending.pop(reservation_id)
        if not pending:
            del self._ledger.pending[account]
        if refund:
            balance += amount
            self._ledger.balances[account] = balance
        return Settlement(True, balance)

    async def commit(self, user: str, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        return self._settle((credit_type, user), reservation_id, refund=False)

    async def refund(self, user: str, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        return self._settle((credit_type, user), reservation_id, refund=True)

    async def grant(self, user: str, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount, allow_negative=True)
        account = (credit_type, user)
        balance = self._sweep(account) + amount
        if balance < 0:
            raise CreditError(f"granting {amount} would make the balance negative")
        self._ledger.balances[account] = balance
        return balance

    async def set(self, user: str, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount)
        account = (credit_type, user)
        self._sweep(account)
        self._ledger.balances[account] = amount
        return amount

    async def balance(self, user: str, credit_type: str = DEFAULT_TYPE) -> int:
        return self._sweep((credit_type, user))
