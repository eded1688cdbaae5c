"""The fuzz target: a FastAPI app whose routes together enable every stage, on the memory backend.

POST /fuzz/{resource_id}: JWT + MFA (amr or step-up TOTP), scopes, token bucket keyed by route, user
and X-API-Key, idempotency, credits, breaker, handler_timeout, events (to a temporary outbox) and
field encryption with a typed body model. GET /fuzz/{resource_id}: JWT, IP allowlist, sliding
window, cache. The handlers never fail on their own, so any 5xx is the guard's.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
from fastapi import FastAPI, Request
from pydantic import BaseModel, SecretStr

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, install
from asgi_guard.config import (
    CacheConfig,
    CircuitBreakerConfig,
    DefaultCacheConfig,
    EncryptionConfig,
    PulsarLabelingConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SecurityConfig,
    SlidingWindowConfig,
    TokenBucketConfig,
)
from asgi_guard.stages.idempotency.config import IdempotencyConfig

SECRET = "fuzz-secret-" * 4
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
TOTP_SECRETS = {"alice": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}
USERS = ("alice", "bob")


async def totp_secret(subject: str) -> str | None:
    return TOTP_SECRETS.get(subject)


class Payload(BaseModel):
    resource_id: str
    secret_value: str
    other_data: str = ""


WRITE = JobConfig(
    endpoint_name="fuzz_write",
    required_credits=1,
    handler_timeout=2.0,
    rate_limit=RateLimitConfig(
        enabled=True,
        algo=RateLimitAlgo.token_bucket,
        token_bucket=TokenBucketConfig(rate_limit=1000, refill_rate=1000),
        key_by=["route", "user", "header:X-API-Key"],
    ),
    idempotency=IdempotencyConfig(enabled=True),
    circuit_breaker=CircuitBreakerConfig(enabled=True, circuit_breaker_threshold=3),
    security=SecurityConfig(
        auth_type_required="jwt",
        user_permissions_required=["jobs:write"],
        mfa_required=True,
        mfa_totp_resolver="fuzz_app:totp_secret",
        mfa_totp_max_failures=0,
    ),
    encryption=EncryptionConfig(enable_encryption=True, enable_decryption=True, fields=["secret_value"]),
    pulsar_labeling=PulsarLabelingConfig(enabled=True),
    redact_fields=["secret_value"],
)

READ = JobConfig(
    endpoint_name="fuzz_read",
    rate_limit=RateLimitConfig(
        enabled=True,
        algo=RateLimitAlgo.sliding_window,
        sliding_window=SlidingWindowConfig(limit=1000, window=1),
        key_by=["route", "ip"],
    ),
    security=SecurityConfig(
        auth_type_required="jwt", ip_whitelist_enabled=True, ip_allowlist=["127.0.0.0/8", "::1", "10.0.0.0/8"]
    ),
    cache=CacheConfig(enabled=True, default=DefaultCacheConfig(cache_ttl=30)),
)


BOOM = JobConfig(endpoint_name="fuzz_boom")


def build_app(outbox: Path, forwarded_header: str = "x-forwarded-for") -> tuple[FastAPI, GuardRuntime]:
    settings = GuardSettings(
        jwt_secret=SecretStr(SECRET),
        encryption_keys={"fuzz-1": SecretStr(ENCRYPTION_KEY)},
        trusted_proxies=["127.0.0.0/8"],
        forwarded_header=forwarded_header,  # type: ignore[arg-type]
        outbox_path=str(outbox),
        metrics_path="",
        valkey_url=None,
        pulsar_url=None,
    )
    registry = RouteRegistry()
    registry.register("/fuzz/{resource_id}", WRITE, methods=["POST"])
    registry.register("/fuzz/{resource_id}", READ, methods=["GET"])
    registry.register("/boom/{resource_id}", BOOM, methods=["POST"])
    app = FastAPI()

    @app.post("/fuzz/{resource_id}")
    async def write(resource_id: str, payload: Payload) -> dict[str, Any]:
        return {"resource_id": resource_id, "secret_value": payload.secret_value}

    @app.get("/fuzz/{resource_id}")
    async def read(resource_id: str, request: Request) -> dict[str, Any]:
        return {"resource_id": resource_id, "at": time.time()}

    @app.post("/boom/{resource_id}")
    async def boom(resource_id: str, request: Request) -> dict[str, Any]:
        """The app's own failure, with the request's headers in the exception message (as careless
        code does): the guard must still add the request id and keep the secrets out of its logs."""
        raise RuntimeError(f"boom: {dict(request.headers)}")

    runtime = GuardRuntime(settings)
    install(app, registry, runtime=runtime)
    return app, runtime


def token(subject: str = "alice", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "exp": now + 3600,
        "scope": "jobs:write jobs:read",
        "amr": ["pwd", "mfa"],
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")
