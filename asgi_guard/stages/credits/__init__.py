"""Per-user credit balances (stage 6): a Python API over the memory or Valkey backend.

```python
store = credit_store(runtime.backend)        # or credit_store(backend_from_settings(GuardSettings()))
await store.grant("alice", 100, "gpu")
await store.balance("alice", "gpu")          # -> 100
await store.set(Anonymous("203.0.113.7"), 5) # an anonymous client's balance, by its IP address
```
A plain string is always a JWT subject; an anonymous client's balance is `Anonymous(address)`, so
the two never share a balance (`store.account`).
The names below are imported on first use (`import asgi_guard` loads none of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_guard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from asgi_guard.stages.credits.memory import MemoryCreditStore
    from asgi_guard.stages.credits.store import (
        DEFAULT_TYPE,
        Anonymous,
        CreditError,
        CreditStore,
        Reservation,
        ReserveStatus,
        Settlement,
    )
    from asgi_guard.stages.credits.valkey import ValkeyCreditStore
    from asgi_guard.state import Backend


def credit_store(backend: Backend) -> CreditStore:
    """The credit store that matches `backend` (chosen once; keep the result)."""
    from asgi_guard.stages.credits.memory import MemoryCreditStore
    from asgi_guard.stages.credits.valkey import ValkeyCreditStore
    from asgi_guard.state import choose

    return choose(backend, memory=MemoryCreditStore, valkey=ValkeyCreditStore, concern="credits")


__getattr__ = lazy_exports(
    __name__,
    {
        "DEFAULT_TYPE": "store",
        "Anonymous": "store",
        "CreditError": "store",
        "CreditStore": "store",
        "Reservation": "store",
        "ReserveStatus": "store",
        "Settlement": "store",
        "MemoryCreditStore": "memory",
        "ValkeyCreditStore": "valkey",
    },
)

__all__ = [
    "DEFAULT_TYPE",
    "Anonymous",
    "CreditError",
    "CreditStore",
    "MemoryCreditStore",
    "Reservation",
    "ReserveStatus",
    "Settlement",
    "ValkeyCreditStore",
    "credit_store",
]
