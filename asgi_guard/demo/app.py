"""The original io_job endpoint, rebuilt: the handler holds only business logic; the JobConfig declares
security, rate limit, credits, circuit breaker, tracing, metrics, events and encryption.

Run it with `asgi-guard demo` (or `python -m asgi_guard.demo.app`): uvicorn on 127.0.0.1 with the
embedded backend, printing a development JWT and three curl lines to try. It ships inside the package
(so the command works from an installed wheel) and needs the `demo` extra: pip install "asgi-guard[demo]".
examples/fastapi_app.py re-exports it.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import jwt
from fastapi import FastAPI, Request
from pydantic import BaseModel, SecretStr

from asgi_guard import GuardRuntime, GuardSettings, JobConfig, RouteRegistry, get_guard, install
from asgi_guard.config import (
    CacheConfig,
    CircuitBreakerConfig,
    DefaultCacheConfig,
    EncryptionConfig,
    MetricsConfig,
    PulsarLabelingConfig,
    RateLimitAlgo,
    RateLimitConfig,
    SecurityConfig,
    TokenBucketConfig,
    TracingConfig,
)
from asgi_guard.stages.credits import credit_store

DEMO_USER = "demo-user"


class ExamplePayload(BaseModel):
    resource_id: str
    secret_value: str
    other_data: str = ""


# The original sketch's example values live here, on the io_job route, not in JobConfig's defaults.
IO_JOB = JobConfig(
    endpoint_name="io_job",
    endpoint_description="Run an IO job against one resource",
    required_credits=1,
    rate_limit=RateLimitConfig(
        enabled=True,
        algo=RateLimitAlgo.token_bucket,
        token_bucket=TokenBucketConfig(rate_limit=3, refill_rate=0.5, rate_window=60),
    ),
    circuit_breaker=CircuitBreakerConfig(
        enabled=True, circuit_breaker_threshold=5, circuit_breaker_timeout=30
    ),
    security=SecurityConfig(
        auth_type_required="jwt",
        user_permissions_required=["jobs:write"],
        permission_roles_required=["admin", "db_user"],
        mfa_required=True,
    ),
    encryption=EncryptionConfig(enable_encryption=True, enable_decryption=True, fields=["secret_value"]),
    tracing=TracingConfig(function_name="io_job", trace_label="io_job"),
    metrics=MetricsConfig(histogram_name="io_job_latency_seconds", threshold_ms=500),
    pulsar_labeling=PulsarLabelingConfig(
        enabled=True, job_topic="persistent://public/default/io-jobs", event_label="io_job.completed"
    ),
    redact_fields=["secret_value"],
)

JOB_STATUS = JobConfig(
    endpoint_name="job_status",
    security=SecurityConfig(auth_type_required="jwt"),
    cache=CacheConfig(enabled=True, default=DefaultCacheConfig(cache_ttl=30)),
)

STORE: dict[str, dict[str, Any]] = {}


def build_settings() -> GuardSettings:
    settings = GuardSettings()
    updates: dict[str, Any] = {}
    if not settings.metrics_path:  # metrics are opt-in; the demo shows them
        updates["metrics_path"] = "/metrics"
    if settings.jwt_secret is None and not (settings.jwt_public_key or settings.jwks_url):
        updates["jwt_secret"] = SecretStr(secrets.token_urlsafe(32))
    if not settings.encryption_keys:
        import base64

        updates["encryption_keys"] = {
            "demo-1": SecretStr(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
        }
    return settings.model_copy(update=updates) if updates else settings


settings = build_settings()
registry = RouteRegistry()
registry.register("/jobs/{resource_id}", IO_JOB, methods=["POST"])
registry.register("/jobs/{resource_id}", JOB_STATUS, methods=["GET"])

app = FastAPI(title="asgi-guard demo")


@app.post("/jobs/{resource_id}")
async def io_job(resource_id: str, payload: ExamplePayload) -> dict[str, Any]:
    """Business logic only: store the job (its secret_value arrives encrypted) and answer."""
    STORE[resource_id] = payload.model_dump()
    return {"status": "accepted", "resource_id": resource_id, "secret_value": payload.secret_value}


@app.get("/jobs/{resource_id}")
async def job_status(resource_id: str, request: Request) -> dict[str, Any]:
    guard = get_guard(request)
    job = STORE.get(resource_id)
    return {
        "resource_id": resource_id,
        "known": job is not None,
        "viewer": guard.principal.subject if guard and guard.principal else None,
        "generated_at": time.time(),
    }


runtime = GuardRuntime(settings)


async def grant_demo_credits() -> None:
    """Give the demo user 100 credits on start-up, so io_job can be called."""
    store = credit_store(runtime.backend)
    if await store.balance(DEMO_USER) == 0:
        await store.grant(DEMO_USER, 100)


runtime.on_startup(grant_demo_credits)
install(app, registry, runtime=runtime)


def dev_token(subject: str = DEMO_USER, ttl: int = 3600) -> str:
    """A development JWT that satisfies io_job: scope, roles and an MFA `amr`."""
    assert settings.jwt_secret is not None
    now = int(time.time())
    claims = {
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        "scope": "jobs:write jobs:read",
        "roles": ["admin", "db_user"],
        "amr": ["pwd", "mfa"],
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    token = dev_token()
    base = f"http://{host}:{port}"
    body = '{"resource_id": "42", "secret_value": "s3cr3t", "other_data": "hello"}'
    print("asgi-guard demo: FastAPI io_job example on the embedded backend\n")
    print(f"Development JWT (sub={DEMO_USER}, 1 h):\n  {token}\n")
    print("Try:")
    print(
        f"  curl -s -i -X POST {base}/jobs/42 -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    print(f"  curl -s -i -X POST {base}/jobs/42 -H 'Content-Type: application/json' -d '{body}'")
    print(f"  curl -s -i {base}/jobs/42 -H 'Authorization: Bearer {token}'")
    print(f"  (metrics: curl -s {base}/metrics)\n")
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    serve(
        os.environ.get("ASGI_GUARD_DEMO_HOST", "127.0.0.1"),
        int(os.environ.get("ASGI_GUARD_DEMO_PORT", "8000")),
    )
