"""The IETF RateLimit header fields, draft-ietf-httpapi-ratelimit-headers-10 (syntax stable since -08):

    RateLimit-Policy: "burst";q=10;w=10, "daily";q=1000;w=86400     (fixed per route: built once)
    RateLimit: "burst";r=4;t=1, "daily";r=990;t=51234                 (per response)

`q` quota units per `w` seconds; `r` units remaining; `t` seconds during which no more than `r` will
be allowed. Policy names are sf-strings; no partition key (`pk`) is sent, so no identity leaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asgi_guard.stages.rate_limit.spec import Decision, LimitSpec

POLICY = b"ratelimit-policy"
RATELIMIT = b"ratelimit"
RETRY_AFTER = b"retry-after"


def policy_value(specs: Sequence[LimitSpec]) -> bytes:
    return ", ".join(f'"{s.name}";q={s.quota};w={s.window}' for s in specs).encode()


def item_prefixes(specs: Sequence[LimitSpec]) -> tuple[str, ...]:
    return tuple(f'"{s.name}";r=' for s in specs)


def ratelimit_value(prefixes: Sequence[str], decisions: Sequence[Decision]) -> bytes:
    return ", ".join(
        f"{prefix}{d.remaining};t={math.ceil(d.reset)}" for prefix, d in zip(prefixes, decisions, strict=True)
    ).encode()


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds, at least 1 (Retry-After is an integer; 0 would invite a hot loop)."""
    return max(1, math.ceil(seconds))


LEGACY_LIMIT = b"x-ratelimit-limit"
LEGACY_REMAINING = b"x-ratelimit-remaining"
LEGACY_RESET = b"x-ratelimit-reset"


def legacy_headers(specs: Sequence[LimitSpec], decisions: Sequence[Decision]) -> list[tuple[bytes, bytes]]:
    """`X-RateLimit-Limit/Remaining/Reset` (slowapi/Kong style, opt-in `legacy_headers`) for the limit
    nearest exhaustion (the least remaining; the first on a tie): its quota, the units left and the
    seconds until it resets (delta seconds, as the IETF `t`, not an epoch time)."""
    index = min(range(len(decisions)), key=lambda i: decisions[i].remaining)
    spec, decision = specs[index], decisions[index]
    return [
        (LEGACY_LIMIT, str(spec.quota).encode()),
        (LEGACY_REMAINING, str(decision.remaining).encode()),
        (LEGACY_RESET, str(math.ceil(decision.reset)).encode()),
    ]
