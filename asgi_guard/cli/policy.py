"""Each route's effective policy as plain data: what `asgi-guard routes` prints and `--json` emits."""

from __future__ import annotations

from typing import Any

from asgi_guard.config import JobConfig
from asgi_guard.registry import CompiledRoute, RouteRegistry


def limit_numbers(limit: Any) -> dict[str, Any]:
    """One rate limit's algorithm and numbers (a RateLimitConfig or one of its extra `limits`)."""
    algo = limit.algo.value
    data: dict[str, Any] = {"name": limit.policy_name, "algo": algo}
    if algo == "token_bucket":
        tb = limit.token_bucket
        data.update(
            capacity=tb.rate_limit, refill_per_second=tb.refill_rate, idle_expiry_seconds=tb.rate_window
        )
    elif algo in ("fixed_window", "sliding_window"):
        window = getattr(limit, algo)
        data.update(limit=window.limit, window_seconds=window.window)
        if algo == "sliding_window":
            data["precision"] = window.precision
    else:
        data["interval_seconds"] = getattr(limit, algo).interval
    return data


def describe_limit(numbers: dict[str, Any]) -> str:
    """`token_bucket 5 burst +1.0/s`, `fixed_window 100/1s`, `throttle 1 per 2.0s`, ..."""
    algo = numbers["algo"]
    if algo == "token_bucket":
        text = f"token_bucket {numbers['capacity']} burst +{numbers['refill_per_second']}/s"
    elif algo == "fixed_window":
        text = f"fixed_window {numbers['limit']}/{numbers['window_seconds']}s"
    elif algo == "sliding_window":
        text = f"sliding_window {numbers['limit']}/{numbers['window_seconds']}s {numbers['precision']}"
    elif algo == "throttle":
        text = f"throttle 1 per {numbers['interval_seconds']}s"
    else:
        text = f"debounce quiet {numbers['interval_seconds']}s"
    return text if numbers["name"] == algo else f"{numbers['name']}: {text}"


def stages_for(config: JobConfig) -> list[str]:
    from asgi_guard.core.stage import section_of
    from asgi_guard.stages import load_stages

    return [s.name for s in load_stages() if s.name != "telemetry" and s.enabled_for(section_of(config, s))]


def shown_methods(route: CompiledRoute) -> list[str]:
    methods = route.methods - {"HEAD"} if route.methods != {"HEAD"} else route.methods
    return sorted(methods)


def route_policy(route: CompiledRoute) -> dict[str, Any]:
    """The `--json` shape of one route (see `asgi-guard routes --help`)."""
    config = route.config
    rate_limit = config.rate_limit
    return {
        "name": route.name,
        "methods": shown_methods(route),
        "path": route.template,
        "stages": stages_for(config),
        "rate_limits": (
            [limit_numbers(limit) for limit in rate_limit.all_limits()] if rate_limit.enabled else []
        ),
        "rate_limit_mode": (
            ("shadow" if rate_limit.shadow else "enforce") + ("+fail_open" if rate_limit.fail_open else "")
            if rate_limit.enabled
            else None
        ),
        "cache": (
            {"algo": config.cache.algo.value, "ttl_seconds": config.cache.default.cache_ttl}
            if config.cache.enabled
            else None
        ),
        "credits": (
            {"amount": config.required_credits, "type": config.credit_type}
            if config.required_credits
            else None
        ),
        "auth": config.security.auth_type_required or None,
    }


def policy_text(policy: dict[str, Any]) -> str:
    """The human column: stages, then the numbers that matter."""
    details = [describe_limit(limit) for limit in policy["rate_limits"]]
    if policy["rate_limit_mode"] not in (None, "enforce"):
        details.append(f"rate_limit mode={policy['rate_limit_mode']}")
    if policy["cache"]:
        details.append(f"cache={policy['cache']['algo']}/{policy['cache']['ttl_seconds']}s")
    if policy["credits"]:
        details.append(f"credits={policy['credits']['amount']} {policy['credits']['type']}")
    if policy["auth"]:
        details.append(f"auth={policy['auth']}")
    return " ".join(policy["stages"]) + ("  " if details else "") + ", ".join(details)


def registry_policies(registry: RouteRegistry) -> list[dict[str, Any]]:
    return [route_policy(route) for route in registry]
