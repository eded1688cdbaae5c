"""The stages of the stack, one folder per concern; `STAGES` is their order, outermost first.

Rules this package keeps (tests/core/test_architecture.py checks the import ones):
1. A stage receives its own config section (`Stage.section`) and a small route info
   (`asgi_guard.core.stage.RouteInfo`), not the whole `JobConfig`; no stage reads another stage's
   section. The chain builder (`core.stage.build_chain`) hands both out; a stage that must run
   elsewhere on some routes says so (`Stage.runs_before`), never by importing another stage.
2. No stage imports another stage; what two share lives in `asgi_guard.core` or `asgi_guard.state`.
   Imports flow one way: `asgi_guard.stack` -> `asgi_guard.stages` -> `asgi_guard.core` / `.state`.
3. Each concern's store is one Protocol (`store.py`) with a `memory` and a `valkey` form, chosen in one
   place from the backend's kind (`asgi_guard.state.choose`).
4. Every stateful concern has a pure, clock-injected reference that memory and Lua are tested against.
5. One innermost place enforces the handler time-out; one place turns a `Problem` into a response
   and records which stage rejected (`core.problems.answer_problem`); stages record what they
   decided with `ctx.decide(stage, outcome, reason, **detail)`.

Each folder: `config.py` (its pydantic section), `stage.py` (the pure-ASGI middleware), `store.py`
(the Protocol), `memory.py` / `valkey.py` (its forms), `*.lua` (its scripts), `reference.py`.
Stage modules are imported on first use, so an app pays only for the stages its routes enable.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asgi_guard.core.stage import Stage

# (module, class), outermost first: the order of the stack in one tuple.
ORDER: tuple[tuple[str, str], ...] = (
    ("telemetry.stage", "TelemetryMiddleware"),  # 1: server span, metrics, access log
    ("security.stage", "SecurityMiddleware"),  # 2: 401 / 403
    ("rate_limit.stage", "RateLimitMiddleware"),  # 3: 429
    ("idempotency.stage", "IdempotencyMiddleware"),  # 4: 409 / 422, replay
    ("cache.stage", "CacheMiddleware"),  # 5: a hit answers
    ("credits.stage", "CreditsMiddleware"),  # 6: 402
    ("circuit_breaker.stage", "CircuitBreakerMiddleware"),  # 7: 503
    ("telemetry.job_span", "JobSpanMiddleware"),  # 8: the job span and histogram around the handler
    ("events.stage", "EventsMiddleware"),  # 9: publish / offload (202)
    ("encryption.stage", "EncryptionMiddleware"),  # 10: field encryption
    ("timeout.stage", "HandlerTimeoutMiddleware"),  # 11: innermost, handler_timeout around the app
)

_loaded: tuple[type[Stage[Any]], ...] | None = None


def load_stages() -> tuple[type[Stage[Any]], ...]:
    """The stage classes in stack order (imported once, on first use)."""
    global _loaded
    if _loaded is None:
        _loaded = tuple(
            getattr(importlib.import_module(f"{__name__}.{module}"), cls) for module, cls in ORDER
        )
    return _loaded


def __getattr__(name: str) -> Any:
    if name == "STAGES":
        return load_stages()
    raise AttributeError(name)


__all__ = ["ORDER", "STAGES", "load_stages"]
