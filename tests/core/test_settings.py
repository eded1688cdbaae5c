"""GuardSettings reads ASGI_GUARD_* variables, nested with "__", and keeps secrets secret."""

from __future__ import annotations

import pytest

from asgi_guard import GuardSettings


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASGI_GUARD_VALKEY_URL", "valkey://127.0.0.1:6390/0")
    monkeypatch.setenv("ASGI_GUARD_JWT_SECRET", "s3cret")
    monkeypatch.setenv("ASGI_GUARD_JWT_ALGORITHMS", '["HS256", "RS256"]')
    monkeypatch.setenv("ASGI_GUARD_ENCRYPTION_KEYS", '{"k1": "AAAA"}')
    monkeypatch.setenv("ASGI_GUARD_POOLING__SOCKET_TIMEOUT", "0.1")
    monkeypatch.setenv("ASGI_GUARD_UNREGISTERED", "deny")
    settings = GuardSettings()
    assert settings.valkey_url == "valkey://127.0.0.1:6390/0"
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.jwt_algorithms == ["HS256", "RS256"]
    assert settings.encryption_keys["k1"].get_secret_value() == "AAAA"
    assert settings.pooling.socket_timeout == 0.1
    assert settings.unregistered == "deny"


def test_settings_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASGI_GUARD_VALKEY_URL", "ASGI_GUARD_PULSAR_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = GuardSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.valkey_url is None and settings.pulsar_url is None
    assert settings.metrics_path == "" and not settings.metrics_on  # metrics are opt-in
    assert settings.metrics_token is None and settings.metrics_labels == {}
    assert settings.unregistered == "allow"
