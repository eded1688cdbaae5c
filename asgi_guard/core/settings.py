"""GuardSettings: what is global and secret, read from the environment (ASGI_GUARD_*) and .env."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from asgi_guard.core.exemptions import ExemptConfig
from asgi_guard.core.pooling import PoolingConfig
from asgi_guard.core.proxies import parse_proxies

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = frozenset(
    {"route", "method", "status", "stage", "reason", "policy", "decision", "result", "credit_type",
     "action", "state", "topic", "outcome", "resource_id", "le", "quantile"}
)  # fmt: skip


class GuardSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASGI_GUARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    valkey_url: str | None = Field(
        default=None,
        description="unset or memory:// = embedded; valkey://, valkeys:// (TLS), valkey+cluster://h:p,h:p, "
        "valkey+sentinel://h:p[,h:p]/<service_name>[?db=N]",
    )
    pulsar_url: str | None = Field(default=None, description="unset = events stay in the local outbox")
    jwt_secret: SecretStr | None = Field(default=None, description="HS256/384/512 key")
    jwt_public_key: SecretStr | None = Field(
        default=None, description="PEM public key (or certificate, or JWK) for RS/PS/ES/EdDSA"
    )
    jwks_url: str | None = Field(
        default=None, description="JWKS endpoint; keys fetched off the event loop and cached"
    )
    jwt_algorithms: list[str] = Field(
        default=["HS256"], description="the only algorithms accepted (never `none`)"
    )
    jwt_audience: str | None = Field(default=None, description="required `aud`")
    jwt_issuer: str | None = Field(default=None, description="required `iss`")
    jwt_roles_claim: str = Field(default="roles", description="claim that holds the roles")
    jwt_leeway: float = Field(default=30.0, ge=0, description="seconds of clock skew allowed on exp/nbf/iat")
    jwt_cache_size: int = Field(
        default=100_000,
        ge=0,
        description=(
            "verified tokens kept (by SHA-256 digest) until their exp, at most 10 minutes: about 1 KB "
            "each for a small token (sub, exp, scope), so 100,000 distinct users cost ~100 MB at most; "
            "0 turns the cache off"
        ),
    )
    encryption_keys: dict[str, SecretStr] = Field(
        default={}, description="key id -> base64url 32-byte AES key (env: a JSON object)"
    )
    encryption_primary_key: str | None = Field(
        default=None, description="key id that encrypts (default: the first)"
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description='CIDRs (or addresses) of the proxies whose forwarding header is believed; "unix" '
        "trusts the peer on a unix socket (uvicorn --uds), which has no address",
    )
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for", description="the one header trusted proxies write the client into"
    )
    unregistered: Literal["allow", "deny"] = Field(
        default="allow",
        description='"allow" (pass through untouched) or "deny" app routes that have no declared policy',
    )
    unregistered_status: Literal[403, 404] = Field(
        default=404, description="status of a denied unregistered route"
    )
    websocket_token: list[Literal["header", "subprotocol", "query"]] = Field(
        default=["header"],
        description=(
            "where a WebSocket handshake may carry its bearer token: the Authorization header, a "
            "`Sec-WebSocket-Protocol: bearer.<jwt>` entry, or an `access_token` query parameter"
        ),
    )
    metrics_path: str = Field(
        default="",
        description="Prometheus exposition path, e.g. /metrics (default empty: no endpoint, metrics off)",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token the metrics endpoint requires"
    )
    health_path: str = Field(
        default="",
        description="health probe path, e.g. /_guard/health: GET pings the backend (200, or 503 "
        "problem+json), GET ?probe=live never touches it (default empty: no endpoint)",
    )
    console_path: str = Field(
        default="", description="operator console mount path (e.g. /_guard); empty turns it off"
    )
    console_token: SecretStr | None = Field(
        default=None, description="token the console wants (Bearer, or its login form); 16+ characters"
    )
    console_allow: list[str] = Field(
        default=[], description="CIDRs that may open the console (with a token set, both must pass)"
    )
    metrics_collect: bool = Field(
        default=False,
        description="count metrics without serving them (another exporter serves the default registry)",
    )
    metrics_labels: dict[str, str] = Field(
        default={},
        description="constant labels added to every sample the metrics endpoint serves (env: JSON object)",
    )
    max_body_size: int = Field(
        default=1_048_576, ge=0, description="bytes a buffered request body may have (413 past it)"
    )
    pooling: PoolingConfig = PoolingConfig()
    outbox_path: str | None = Field(default=None, description="sqlite outbox for unsent events")
    key_prefix: str = Field(default="ag", description="prefix of every backend key")
    redact_headers: list[str] = Field(
        default=[],
        description="request headers whose values are never logged, besides Authorization, "
        "Proxy-Authorization, Cookie, Set-Cookie, X-API-Key, API-Key and X-MFA-TOTP",
    )
    multi_worker_embedded: Literal["warn", "error"] = Field(
        default="warn",
        description="the embedded backend in a server with several worker processes (limits, credits "
        "and idempotency then hold per process): log a warning at start-up, or refuse to start",
    )
    exempt: ExemptConfig | None = Field(
        default=None, description="who skips rate limiting and/or credits on every route (env: JSON)"
    )
    gc_freeze: bool = Field(
        default=True,
        description="once the server's start-up is complete, move every object alive then out of the "
        "cyclic GC's reach (Python's gc.freeze; undone at shutdown): its full collections otherwise "
        "rescan the whole app on every pass and stall the requests in flight for tens of ms",
    )

    @field_validator("console_path")
    @classmethod
    def _console_path(cls, value: str) -> str:
        if value and (not value.startswith("/") or not value.strip("/")):
            raise ValueError('console_path is a path below the root, such as "/_guard" (or empty: off)')
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        parse_proxies(value)  # a typo must stop start-up, not quietly trust nobody
        return value

    @field_validator("metrics_path", "health_path")
    @classmethod
    def _check_metrics_path(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("metrics_path and health_path must be empty or start with '/'")
        return value

    @field_validator("metrics_labels")
    @classmethod
    def _check_metrics_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"metrics_labels: {name!r} is not a valid Prometheus label name")
            if name in RESERVED_LABELS:
                raise ValueError(f"metrics_labels: {name!r} is a label asgi-guard's metrics already use")
        return value

    @property
    def metrics_on(self) -> bool:
        """Whether metrics are counted: served at metrics_path, or collected for another exporter."""
        return bool(self.metrics_path) or self.metrics_collect

    @field_validator("unregistered", mode="before")
    @classmethod
    def _alias_pass(cls, value: object) -> object:
        return "allow" if value in ("pass", "pass-through", "passthrough") else value
