"""Credits in Valkey: one atomic Lua call (credits.lua) per operation, on the server's clock.

The balance, pending reservations and their deadlines of one (credit type, user) share a hash tag,
so they live in one cluster slot and one script sees all three.
"""

from __future__ import annotations

from asgi_guard.stages.credits.store import (
    DEFAULT_TYPE,
    CreditError,
    Reservation,
    ReserveStatus,
    Settlement,
    User,
    account,
    check_amount,
)
from asgi_guard.state.valkey import ValkeyBackend, lua

_SCRIPT = lua(__package__, "credits")
# Re-running these after a lost reply changes nothing (settlements are keyed by the reservation id;
# set writes the same value). Not reserve (a re-run reads as a duplicate request id: 409) nor grant.
_RETRY_SAFE_OPS = frozenset({"commit", "refund", "get", "set"})


class ValkeyCreditStore:
    def __init__(self, backend: ValkeyBackend) -> None:
        self._backend = backend

    def _keys(self, user: User, credit_type: str) -> tuple[str, str, str]:
        tag = (credit_type, account(user))  # escaped by the backend's one key rule
        key = self._backend.key
        return (
            key("credits", tag, "balance"),
            key("credits", tag, "pending"),
            key("credits", tag, "deadlines"),
        )

    async def _run(
        self, op: str, user: User, credit_type: str, amount: int | str = 0, rid: str = "", ttl: float = 0
    ) -> tuple[int, int]:
        args = [op, amount, rid, repr(float(ttl)), self._backend.script_now()]
        reply = await self._backend.run(
            _SCRIPT, self._keys(user, credit_type), args, retry=op in _RETRY_SAFE_OPS
        )
        return int(reply[0]), int(reply[1])

    async def reserve(
        self, user: User, amount: int, reservation_id: str, ttl: float, credit_type: str = DEFAULT_TYPE
    ) -> Reservation:
        check_amount(amount)
        code, balance = await self._run("reserve", user, credit_type, amount, reservation_id, ttl)
        return Reservation(ReserveStatus(code), balance)

    async def commit(
        self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE, amount: int | None = None
    ) -> Settlement:
        keep: int | str = "" if amount is None else check_amount(amount)
        code, balance = await self._run("commit", user, credit_type, keep, rid=reservation_id)
        return Settlement(code == 1, balance)

    async def refund(self, user: User, reservation_id: str, credit_type: str = DEFAULT_TYPE) -> Settlement:
        code, balance = await self._run("refund", user, credit_type, rid=reservation_id)
        return Settlement(code == 1, balance)

    async def grant(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount, allow_negative=True)
        code, balance = await self._run("grant", user, credit_type, amount)
        if code != 1:
            raise CreditError(f"granting {amount} would make the balance negative (it is {balance})")
        return balance

    async def set(self, user: User, amount: int, credit_type: str = DEFAULT_TYPE) -> int:
        check_amount(amount)
        return (await self._run("set", user, credit_type, amount))[1]

    async def balance(self, user: User, credit_type: str = DEFAULT_TYPE) -> int:
        return (await self._run("get", user, credit_type))[1]
