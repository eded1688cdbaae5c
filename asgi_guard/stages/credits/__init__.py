"""Per-user credit balances (stage 6): a Python API over the memory or Valkey backend.

```python
store = credit_store(runtime.backend)        # or credit_store(backend_from_settings(GuardSettings()))
await store.grant("alice", 100, "gpu")
await store.balance("alice", "gpu")          # -> 100
```
"""

from __future__ import annotations

from asgi_guard.stages.credits.memory import MemoryCreditStore
from asgi_guard.stages.credits.store import (
    DEFAULT_TYPE,
    CreditError,
    CreditStore,
    Reservation,
    ReserveStatus,
    Settlement,
)
from asgi_guard.stages.credits.valkey import ValkeyCreditStore
from asgi_guard.state import Backend, choose


def credit_store(backend: Backend) -> CreditStore:
    """The credit store that matches `backend` (chosen once; keep the result)."""
    return choose(backend, memory=MemoryCreditStore, valkey=ValkeyCreditStore, concern="credits")


__all__ = [
    "DEFAULT_TYPE",
    "CreditError",
    "CreditStore",
    "MemoryCreditStore",
    "Reservation",
    "ReserveStatus",
    "Settlement",
    "ValkeyCreditStore",
    "credit_store",
]
