"""GuardSettings: what is global and secret, read from the environment (ASGI_GUARD_*) and .env."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .pooling import PoolingConfig


class GuardSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASGI_GUARD_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    valkey_url: str | None = Field(
        default=None,
        description="unset or memory:// = embedded; valkey://, valkeys:// (TLS), valkey+cluster://h:p,h:p",
    )
    pulsar_url: str | None = Field(default=None, description="unset = events stay in the local outbox")
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwks_url: str | None = None
    jwt_algorithms: list[str] = ["HS256"]
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_roles_claim: str = "roles"
    jwt_leeway: float = Field(default=30.0, ge=0)
    encryption_keys: dict[str, SecretStr] = {}
    encryption_primary_key: str | None = None
    trusted_proxies: list[str] = []
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        default="x-forwarded-for", description="the one header trusted proxies write the client into"
    )
    unregistered: Literal["allow", "deny"] = "allow"
    unregistered_status: Literal[403, 404] = 404
    metrics_path: str = "/metrics"
    metrics_token: SecretStr | None = None
    max_body_size: int = Field(default=1_048_576, ge=0)
    pooling: PoolingConfig = PoolingConfig()
    outbox_path: str | None = Field(default=None, description="sqlite outbox for unsent events")
    key_prefix: str = Field(default="ag", description="prefix of every backend key")

    @field_validator("unregistered", mode="before")
    @classmethod
    def _alias_pass(cls, value: object) -> object:
        return "allow" if value in ("pass", "pass-through", "passthrough") else value
