"""What the console shows, as JSON-ready dicts, read from the runtime (never from the /metrics text).

- `policies(registry, runtime)`: per route, once (policies are frozen at start-up);
- `summary(runtime, policies)`: live, once per poll: the runtime's decision tally, the circuit state
  gauges of the app's own metrics registry, the outbox (only when the events stage built one).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from asgi_guard.core.stage import section_of
from asgi_guard.stages import load_stages
from asgi_guard.stages.rate_limit.spec import specs_from_config

if TYPE_CHECKING:
    from asgi_guard.core.runtime import GuardRuntime
    from asgi_guard.registry import CompiledRoute
    from asgi_guard.stages.events.publisher import EventPublisher

_CIRCUIT = {0.0: "closed", 1.0: "half_open", 2.0: "open"}


def policies(routes: Iterable[CompiledRoute], runtime: GuardRuntime) -> list[dict[str, Any]]:
    """Each route's template, methods, enabled stages and limit numbers."""
    out = []
    stages = load_stages()
    for route in routes:
        config = route.config
        enabled = [
            stage.name
            for stage in stages
            if stage.enabled_for(section := section_of(config, stage)) and stage.enabled_in(section, runtime)
        ]
        row: dict[str, Any] = {
            "template": route.template,
            "methods": sorted(route.methods),
            "label": route.label,
            "stages": enabled,
        }
        if config.rate_limit.enabled:
            row["limits"] = [
                {
                    "name": s.name,
                    "algo": section.algo.value,
                    "quota": s.quota,
                    "window_s": s.window,
                    "summary": s.summary,
                }
                for section, s in zip(
                    config.rate_limit.all_limits(), specs_from_config(config.rate_limit), strict=True
                )
            ]
            row["shadow"] = config.rate_limit.shadow
        if config.cache.enabled:
            row["cache"] = {
                "algo": config.cache.algo.value,
                "ttl_s": config.cache.default.cache_ttl,
                "shared": config.cache.shared,
            }
        if config.required_credits:
            row["credits"] = {"cost": config.required_credits, "type": config.credit_type}
        if config.circuit_breaker.enabled:
            cb = config.circuit_breaker
            row["circuit_breaker"] = {
                "threshold": cb.circuit_breaker_threshold,
                "timeout_s": cb.circuit_breaker_timeout,
            }
        if config.pulsar_labeling.enabled:
            events = config.pulsar_labeling
            row["events"] = {"mode": events.mode, "topic": events.job_topic}
        if config.security.auth_type_required:
            row["auth"] = config.security.auth_type_required
        out.append(row)
    return out


def circuit_states(runtime: GuardRuntime) -> dict[str, str]:
    """route label -> closed / half_open / open, from the app's `asgi_guard_circuit_state` gauge
    (a route whose circuit never changed state has no sample: closed)."""
    states: dict[str, str] = {}
    collect = getattr(runtime.metrics.circuit_state, "collect", None)
    if collect is None:  # metrics off: the runtime counts into a no-op sink
        return states
    for metric in collect():
        for sample in metric.samples:
            states[sample.labels.get("route", "")] = _CIRCUIT.get(sample.value, "unknown")
    return states


async def outbox_stats(runtime: GuardRuntime) -> dict[str, Any] | None:
    """Depth and oldest age (seconds) of the local outbox, if the events stage made a publisher."""
    from asgi_guard.stages.events.stage import PUBLISHER_SERVICE  # only when asked: pulls the events code

    publisher: EventPublisher | None = runtime.existing_service(PUBLISHER_SERVICE)
    if publisher is None:
        return None
    try:
        depth, age = await publisher.outbox.stats()
    except Exception as exc:  # noqa: BLE001 - a broken outbox file is shown, never fatal to the console
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"depth": depth, "oldest_age_s": round(age, 3)}


async def summary(runtime: GuardRuntime, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The live page's data: tally snapshot, circuit state per route, outbox, backend."""
    tally = runtime.tally
    counts = tally.snapshot() if tally is not None else None
    states = circuit_states(runtime)
    circuits = {
        row["label"]: states.get(row["label"], "closed") for row in routes if "circuit_breaker" in row
    }
    return {
        "now": time.time(),
        "backend": type(runtime.backend).__name__,
        "counts": counts,
        "circuits": circuits,
        "outbox": await outbox_stats(runtime),
    }
