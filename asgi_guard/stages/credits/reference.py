"""The ledger's meaning as a pure, clock-injected model: credits.lua must do the same (the memory form
runs this model on the backend's clock).

Per (credit type, user): an available balance (never negative) and pending reservations, each an
amount with a deadline. `reserve` takes the amount at once (or answers SHORT, or DUPLICATE for an id
already pending); `commit` keeps it, `refund` gives it back, each exactly once; a reservation still
pending at its deadline (`deadline <= now`) is refunded by the next operation on that balance.
`grant` adds (a negative amount debits, refused with CreditError below zero); `set` replaces the
available balance (pending reservations still settle on top of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgi_guard.stages.credits.store import (
    DEFAULT_TYPE,
    CreditError,
    Reservation,
    ReserveStatus,
    Settlement,
    check_amount,
)

Account = tuple[str, str]


@dataclass
class ReferenceLedger:
    balances: dict[Account, int] = field(default_factory=dict)
    pending: dict[Account, dict[str, tuple[int, float]]] = field(default_factory=dict)

    def _sweep(self, account: Account, now: float) -> int:
        """Refund the account's expired reservations; return its available balance."""
        pending = self.pending.get(account)
        if pending:
            for rid, (amount, deadline) in list(pending.items()):
                if deadline <= now:
                    del pending[rid]
                    self.balances[account] = self.balances.get(account, 0) + amount
            if not pending:
                del self.pending[account]
        return self.balances.get(account, 0)

    def reserve(
        self, user: str, amount: int, rid: str, ttl: float, now: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        check_amount(amount)
        account = (credit_type, user)
        balance = self._sweep(account, now)
        if rid in self.pending.get(account, ()):
            return Reservation(ReserveStatus.DUPLICATE, balance)
        if balance < amount:
            return Reservation(ReserveStatus.SHORT, balance)
        self.balances[account] = balance - amount
        self.pending.setdefault(account, {})[rid] = (amount, now + ttl)
        return Reservation(ReserveStatus.RESERVED, balance - amount)

    def settle(
        self,
        user: str,
        rid: str,
        refund: bool,
        now: float,
        credit_type: str = DEFAULT_TYPE,
        keep: int | None = None,
    ) -> Settlement:
        """Refund, or commit: all of the reservation, or at most `keep` of it (the rest goes back)."""
        account = (credit_type, user)
        balance = self._sweep(account, now)
        pending = self.pending.get(account)
        found = pending.pop(rid, None) if pending else None
        if found is None:
            return Settlement(False, balance)
        if not pending:
            del self.pending[account]
        if refund:
            balance = self.balances[account] = balance + found[0]
        elif keep is not None and keep < found[0]:
            balance = self.balances[account] = balance + found[0] - max(0, keep)
        return Settlement(True, balance)

    def grant(self, user: str, amount: int, now: float, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount, allow_negative=True)
        account = (credit_type, user)
        balance = self._sweep(account, now) + amount
        if balance < 0:
            raise CreditError(f"granting {amount} would make the balance negative")
        self.balances[account] = balance
        return balance

    def set(self, user: str, amount: int, now: float, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount)
        account = (credit_type, user)
        self._sweep(account, now)
        self.balances[account] = amount
        return amount

    def balance(self, user: str, now: float, credit_type: str = DEFAULT_TYPE) -> int:
        return self._sweep((credit_type, user), now)
