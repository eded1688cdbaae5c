"""Backend connection pooling and timeouts (the sketch used PoolingConfig without defining it)."""

from __future__ import annotations

from pydantic import Field

from asgi_guard.core.model import GuardModel


class PoolingConfig(GuardModel):
    max_connections: int = Field(default=50, ge=1, description="connections in the Valkey pool")
    connect_timeout: float = Field(default=0.5, gt=0, description="seconds to connect")
    socket_timeout: float = Field(default=0.25, gt=0, description="bound on one backend call")
