"""Backend connection pooling, time-outs and the retry of a lost connection (Valkey)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel


class PoolingConfig(GuardModel):
    """How the Valkey client holds connections and bounds every call.

    The pool blocks (valkey-py's `BlockingConnectionPool`): when all `max_connections` are busy a call
    waits up to `pool_timeout` for one, then fails fast (503 or fail-open), instead of failing at
    once. Every call, the wait included, is bounded by `socket_timeout`.

    Defaults (1 s each) from `benchmarks/valkey_burst.py`: 150 concurrent requests in one process
    (rate limit + cache on a real valkey-server, 50 connections). The time a call waits is mostly
    the event loop serving the other requests, not the server: its slowest call took 0.10-0.15 s
    on an idle 2-core machine and 0.5-1.1 s with three busy processes beside it. The former
    defaults (0.25 s call, 0.2 s pool wait, 0.5 s connect) turned 36-75% of such a loaded burst
    into 503s (no pooled connection in time; then the call bound, then connecting); 1 s keeps an
    idle machine's burst 7x inside the bound and a hung server still costs a request at most ~1 s.
    """

    max_connections: int = Field(default=50, ge=1, description="connections in the Valkey pool (per process)")
    pool_timeout: float = Field(
        default=1.0,
        gt=0,
        description="seconds a call waits for a free pooled connection before failing (socket_timeout "
        "bounds the wait too)",
    )
    connect_timeout: float = Field(default=1.0, gt=0, description="seconds to connect")
    socket_timeout: float = Field(default=1.0, gt=0, description="bound on one backend call (seconds)")
    health_check_interval: float = Field(
        default=5.0,
        ge=0,
        description="a connection idle longer than this (seconds) is PINGed before use, so a stale one "
        "(the server restarted) is replaced before a command is lost on it; 0 turns checks off",
    )
    auto_pipeline: bool = Field(
        default=True,
        description="script calls made while another is in flight go out together, one pipeline per "
        "event-loop turn (standalone and Sentinel; as ioredis's enableAutoPipelining): fewer writes, "
        "reads and pool turns under load, no wait when idle",
    )
    retry_backoff: float = Field(
        default=0.02,
        ge=0,
        description="base of the jittered exponential backoff (seconds) before the one retry of a "
        "retry-safe script whose connection failed",
    )
