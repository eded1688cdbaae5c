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
Stage modules are imported on first use, so an app pays only for the stages its routes enable:
`stages_for(config, runtime)` asks each stage's cheap gate (`GATES`: config fields only) before
importing its module, so a limit-only app never imports JWT, cryptography, OpenTelemetry, pybreaker or
Pulsar. A gate may say yes where the stage then declines (its own `enabled_for` / `enabled_in`
decide); it must never say no where the stage would run (tests/core/test_lazy_imports.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgi_guard.core.logging import access_log
from asgi_guard.core.otel_gate import tracing_possible

if TYPE_CHECKING:
    from asgi_guard.config import JobConfig
    from asgi_guard.core.runtime import GuardRuntime
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

Gate = Callable[["JobConfig", "GuardRuntime"], bool]


def _telemetry_gate(config: JobConfig, runtime: GuardRuntime) -> bool:
    return bool(
        runtime.settings.metrics_on
        or runtime.tally is not None
        or config.metrics.threshold_ms is not None
        or runtime.has_tracer_provider
        or tracing_possible()
        or access_log.isEnabledFor(logging.INFO)
    )


def _admit(config: JobConfig, runtime: GuardRuntime) -> bool:
    """The gate of a stage that has none yet: import it and let it decide."""
    return True


GATES: dict[str, Gate] = {
    "telemetry.stage": _telemetry_gate,
    "security.stage": lambda c, _: bool(c.security.auth_type_required) or c.security.ip_whitelist_enabled,
    "rate_limit.stage": lambda c, _: c.rate_limit.enabled,
    "idempotency.stage": lambda c, _: c.idempotency.enabled,
    "cache.stage": lambda c, _: c.cache.enabled,
    "credits.stage": lambda c, _: c.required_credits > 0 or c.credits_price is not None,
    "circuit_breaker.stage": lambda c, _: c.circuit_breaker.enabled,
    "telemetry.job_span": lambda c, _: bool(
        c.tracing.function_name or c.tracing.trace_label or c.metrics.histogram_name
    ),
    "events.stage": lambda c, _: c.pulsar_labeling.enabled,
    "encryption.stage": lambda c, _: c.encryption.enable_encryption or c.encryption.enable_decryption,
    "timeout.stage": lambda c, _: c.handler_timeout is not None,
}

_loaded: tuple[type[Stage[Any]], ...] | None = None
_classes: dict[str, type[Stage[Any]]] = {}


def _load(module: str, cls: str) -> type[Stage[Any]]:
    found = _classes.get(module)
    if found is None:
        found = _classes[module] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return found


def stages_for(config: JobConfig, runtime: GuardRuntime) -> list[type[Stage[Any]]]:
    """The stage classes, in stack order, whose gate admits `config` (only those modules are imported);
    the chain builder still asks each class's `enabled_for` / `enabled_in`."""
    return [_load(module, cls) for module, cls in ORDER if GATES.get(module, _admit)(config, runtime)]


def load_stages() -> tuple[type[Stage[Any]], ...]:
    """The stage classes in stack order (imported once, on first use)."""
    global _loaded
    if _loaded is None:
        _loaded = tuple(_load(module, cls) for module, cls in ORDER)
    return _loaded


def __getattr__(name: str) -> Any:
    if name == "STAGES":
        return load_stages()
    raise AttributeError(name)


__all__ = ["GATES", "ORDER", "STAGES", "load_stages", "stages_for"]
